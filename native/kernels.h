// Shared declarations of the bf16 kernels of laionknn._native.
//
// Layouts (all bf16 values are uint16 bit patterns):
//  * A (queries): row-major (m, dp), dp = d rounded up to a multiple of 32, zero padded.
//  * packed B (database rows): panels of 16 rows, each panel [dp/2][16][2]: for k-pair p and panel
//    column c the two values (x[c][2p], x[c][2p+1]). This is the operand layout of AVX512-BF16's
//    vdpbf16ps (one zmm = 16 columns x one k-pair) and, 16 k-pairs at a time, of an AMX B tile.
//    The number of panels is rounded up to an even count (kernels work on 32 columns at a time).
// C = A . B^T is float32 (m, ncols) with row stride ldc.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lk {

struct Gemm {
    const uint16_t* a;   // first row of A used
    int64_t lda;         // elements per A row (dp)
    int64_t m;           // rows of A (and C)
    const uint16_t* b;   // first packed panel used (a multiple of 32 columns into the block)
    int64_t ncols;       // columns of C
    int64_t dp;          // padded depth (multiple of 32)
    float* c;
    int64_t ldc;
};

// int16 GEMM (the certified int16 filter): A and packed B as above with int16 values; C = float32(A . B^T)
// (exact int32 sums, rounded once) times rs[row] times cs[column] (powers of two).
struct GemmI16 {
    const int16_t* a;
    int64_t lda;
    int64_t m;
    const int16_t* b;
    int64_t ncols;
    int64_t dp;
    float* c;
    int64_t ldc;
    const float* rs;  // per row of A (m)
    const float* cs;  // per column of C (ncols)
    float* cmax = nullptr;  // optional: max of each row over each 32 columns, (m, ldm)
    int64_t ldm = 0;
};

inline int64_t panel_elems(int64_t dp) { return dp * 16; }  // uint16 per panel of 16 columns

// rows [r0, r1) of C, all columns
void gemm_portable(const Gemm& g, int64_t r0, int64_t r1);
bool have_avx512bf16_build();
void gemm_avx512bf16(const Gemm& g, int64_t r0, int64_t r1);
bool have_amx_build();
void gemm_amx(const Gemm& g, int64_t r0, int64_t r1);
void gemm_i16_portable(const GemmI16& g, int64_t r0, int64_t r1);
bool have_avx512vnni_build();
void gemm_avx512vnni(const GemmI16& g, int64_t r0, int64_t r1);
bool have_avx2_build();
void gemm_i16_avx2(const GemmI16& g, int64_t r0, int64_t r1);

}  // namespace lk
