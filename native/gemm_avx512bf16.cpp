// AVX512-BF16 GEMM micro-kernel (vdpbf16ps): 12 rows x 32 columns (2 zmm) per register block,
// 24 float32 accumulators; B comes packed in k-pairs (kernels.h), A rows are broadcast one k-pair
// (32 bits) at a time. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512bf16 (CMakeLists.txt)
// and only called when the CPU and OS report AVX512-BF16 (module.cpp).
#include "kernels.h"

#if defined(LK_HAVE_AVX512BF16)
#include <immintrin.h>

#include <cstring>

namespace lk {
namespace {

inline __m512bh as_bh(__m512i v) {
    __m512bh r;
    std::memcpy(&r, &v, sizeof(r));
    return r;
}

template <int MR>
inline void micro(const Gemm& g, int64_t r, const uint16_t* p0, const uint16_t* p1, int64_t col0) {
    __m512 acc0[MR], acc1[MR];
    for (int i = 0; i < MR; ++i) {
        acc0[i] = _mm512_setzero_ps();
        acc1[i] = _mm512_setzero_ps();
    }
    const int64_t d2 = g.dp / 2;
    const uint16_t* arow = g.a + r * g.lda;
    for (int64_t p = 0; p < d2; ++p) {
        const __m512bh b0 = as_bh(_mm512_loadu_si512(p0 + p * 32));
        const __m512bh b1 = as_bh(_mm512_loadu_si512(p1 + p * 32));
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) {
            int32_t pair;
            std::memcpy(&pair, arow + i * g.lda + 2 * p, 4);
            const __m512bh a = as_bh(_mm512_set1_epi32(pair));
            acc0[i] = _mm512_dpbf16_ps(acc0[i], a, b0);
            acc1[i] = _mm512_dpbf16_ps(acc1[i], a, b1);
        }
    }
    const int64_t left = g.ncols - col0;
    const __mmask16 m0 = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __mmask16 m1 = left >= 32 ? __mmask16(0xFFFF) : left <= 16 ? __mmask16(0) : __mmask16((1u << (left - 16)) - 1);
    for (int i = 0; i < MR; ++i) {
        float* cr = g.c + (r + i) * g.ldc + col0;
        _mm512_mask_storeu_ps(cr, m0, acc0[i]);
        _mm512_mask_storeu_ps(cr + 16, m1, acc1[i]);
    }
}

}  // namespace

bool have_avx512bf16_build() { return true; }

void gemm_avx512bf16(const Gemm& g, int64_t r0, int64_t r1) {
    const int64_t npair = (g.ncols + 31) / 32;
    constexpr int64_t MC = 96;  // rows of A kept in L2 while all panels of B stream by
    for (int64_t rb = r0; rb < r1; rb += MC) {
        const int64_t re = rb + MC < r1 ? rb + MC : r1;
        for (int64_t q = 0; q < npair; ++q) {
            const uint16_t* p0 = g.b + (2 * q) * panel_elems(g.dp);
            const uint16_t* p1 = p0 + panel_elems(g.dp);
            int64_t r = rb;
            for (; r + 12 <= re; r += 12) micro<12>(g, r, p0, p1, q * 32);
            switch (re - r) {
                case 11: micro<11>(g, r, p0, p1, q * 32); break;
                case 10: micro<10>(g, r, p0, p1, q * 32); break;
                case 9: micro<9>(g, r, p0, p1, q * 32); break;
                case 8: micro<8>(g, r, p0, p1, q * 32); break;
                case 7: micro<7>(g, r, p0, p1, q * 32); break;
                case 6: micro<6>(g, r, p0, p1, q * 32); break;
                case 5: micro<5>(g, r, p0, p1, q * 32); break;
                case 4: micro<4>(g, r, p0, p1, q * 32); break;
                case 3: micro<3>(g, r, p0, p1, q * 32); break;
                case 2: micro<2>(g, r, p0, p1, q * 32); break;
                case 1: micro<1>(g, r, p0, p1, q * 32); break;
                default: break;
            }
        }
    }
}

}  // namespace lk

#else

namespace lk {
bool have_avx512bf16_build() { return false; }
void gemm_avx512bf16(const Gemm& g, int64_t r0, int64_t r1) { gemm_portable(g, r0, r1); }
}  // namespace lk

#endif
