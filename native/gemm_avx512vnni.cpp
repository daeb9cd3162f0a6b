// AVX512-VNNI int16 GEMM (vpdpwssd: pairs of int16 products summed into int32, exact): 12 rows x 32
// columns (2 zmm) per register block, 24 int32 accumulators; B comes packed in k-pairs (the layout of
// the bf16 kernels, kernels.h, holding int16 values), A rows are broadcast one k-pair (32 bits) at a
// time. The exact int32 sums are rounded once to float32 and multiplied by the row and column scales
// (powers of two: exact within the exponent range the wrapper checks). Compiled with -mavx512f
// -mavx512bw -mavx512vl -mavx512vnni (CMakeLists.txt); only called where CPUID and the OS report
// AVX512-VNNI (module.cpp). On Intel Xeon family 6 model 207 vpdpwssd zmm delivers 2.8-4.3x the
// multiply-adds of vdpbf16ps (1 per 2 cycles; docs/exact.md).
#include "kernels.h"

#if defined(LK_HAVE_AVX512VNNI)
#include <immintrin.h>

#include <cmath>

#include "gemm_common.h"

namespace lk {
namespace {

constexpr int MR = 12;     // rows per register block
constexpr int64_t MC = 96;  // rows of A packed together and kept in L2 while all panels of B stream by

// C rows [r, r + nr) x columns [col0, col0 + 32) from packed A (ap) and the panel pair p0/p1; the 24
// accumulators are named variables (GCC spills an array of them)
inline void micro(const GemmI16& g, int64_t r, int nr, const int32_t* ap, const int16_t* p0, const int16_t* p1,
                  int64_t col0) {
    __m512i x0 = _mm512_setzero_si512(), y0 = _mm512_setzero_si512();
    __m512i x1 = _mm512_setzero_si512(), y1 = _mm512_setzero_si512();
    __m512i x2 = _mm512_setzero_si512(), y2 = _mm512_setzero_si512();
    __m512i x3 = _mm512_setzero_si512(), y3 = _mm512_setzero_si512();
    __m512i x4 = _mm512_setzero_si512(), y4 = _mm512_setzero_si512();
    __m512i x5 = _mm512_setzero_si512(), y5 = _mm512_setzero_si512();
    __m512i x6 = _mm512_setzero_si512(), y6 = _mm512_setzero_si512();
    __m512i x7 = _mm512_setzero_si512(), y7 = _mm512_setzero_si512();
    __m512i x8 = _mm512_setzero_si512(), y8 = _mm512_setzero_si512();
    __m512i x9 = _mm512_setzero_si512(), y9 = _mm512_setzero_si512();
    __m512i x10 = _mm512_setzero_si512(), y10 = _mm512_setzero_si512();
    __m512i x11 = _mm512_setzero_si512(), y11 = _mm512_setzero_si512();
    const int64_t d2 = g.dp / 2;
    for (int64_t p = 0; p < d2; ++p) {
        const __m512i b0 = _mm512_loadu_si512(p0 + p * 32);
        const __m512i b1 = _mm512_loadu_si512(p1 + p * 32);
        const int32_t* a = ap + p * MR;
        __m512i av;
        av = _mm512_set1_epi32(a[0]);
        x0 = _mm512_dpwssd_epi32(x0, b0, av);
        y0 = _mm512_dpwssd_epi32(y0, b1, av);
        av = _mm512_set1_epi32(a[1]);
        x1 = _mm512_dpwssd_epi32(x1, b0, av);
        y1 = _mm512_dpwssd_epi32(y1, b1, av);
        av = _mm512_set1_epi32(a[2]);
        x2 = _mm512_dpwssd_epi32(x2, b0, av);
        y2 = _mm512_dpwssd_epi32(y2, b1, av);
        av = _mm512_set1_epi32(a[3]);
        x3 = _mm512_dpwssd_epi32(x3, b0, av);
        y3 = _mm512_dpwssd_epi32(y3, b1, av);
        av = _mm512_set1_epi32(a[4]);
        x4 = _mm512_dpwssd_epi32(x4, b0, av);
        y4 = _mm512_dpwssd_epi32(y4, b1, av);
        av = _mm512_set1_epi32(a[5]);
        x5 = _mm512_dpwssd_epi32(x5, b0, av);
        y5 = _mm512_dpwssd_epi32(y5, b1, av);
        av = _mm512_set1_epi32(a[6]);
        x6 = _mm512_dpwssd_epi32(x6, b0, av);
        y6 = _mm512_dpwssd_epi32(y6, b1, av);
        av = _mm512_set1_epi32(a[7]);
        x7 = _mm512_dpwssd_epi32(x7, b0, av);
        y7 = _mm512_dpwssd_epi32(y7, b1, av);
        av = _mm512_set1_epi32(a[8]);
        x8 = _mm512_dpwssd_epi32(x8, b0, av);
        y8 = _mm512_dpwssd_epi32(y8, b1, av);
        av = _mm512_set1_epi32(a[9]);
        x9 = _mm512_dpwssd_epi32(x9, b0, av);
        y9 = _mm512_dpwssd_epi32(y9, b1, av);
        av = _mm512_set1_epi32(a[10]);
        x10 = _mm512_dpwssd_epi32(x10, b0, av);
        y10 = _mm512_dpwssd_epi32(y10, b1, av);
        av = _mm512_set1_epi32(a[11]);
        x11 = _mm512_dpwssd_epi32(x11, b0, av);
        y11 = _mm512_dpwssd_epi32(y11, b1, av);
    }
    const int64_t left = g.ncols - col0;
    const __mmask16 m0 = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __mmask16 m1 = left >= 32 ? __mmask16(0xFFFF) : left <= 16 ? __mmask16(0) : __mmask16((1u << (left - 16)) - 1);
    const __m512 c0 = _mm512_maskz_loadu_ps(m0, g.cs + col0);
    const __m512 c1 = _mm512_maskz_loadu_ps(m1, g.cs + col0 + 16);
    auto put = [&](int i, __m512i u, __m512i v) {
        const __m512 rs = _mm512_set1_ps(g.rs[r + i]);
        float* cr = g.c + (r + i) * g.ldc + col0;
        _mm512_mask_storeu_ps(cr, m0, _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(u), c0), rs));
        _mm512_mask_storeu_ps(cr + 16, m1, _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v), c1), rs));
    };
    if (nr > 0) { put(0, x0, y0); }
    if (nr > 1) { put(1, x1, y1); }
    if (nr > 2) { put(2, x2, y2); }
    if (nr > 3) { put(3, x3, y3); }
    if (nr > 4) { put(4, x4, y4); }
    if (nr > 5) { put(5, x5, y5); }
    if (nr > 6) { put(6, x6, y6); }
    if (nr > 7) { put(7, x7, y7); }
    if (nr > 8) { put(8, x8, y8); }
    if (nr > 9) { put(9, x9, y9); }
    if (nr > 10) { put(10, x10, y10); }
    if (nr > 11) { put(11, x11, y11); }
    if (g.cmax) {  // the fused part of the selection: each row's maximum over these 32 columns, read back
                   // from L1 (computing it on the accumulators made GCC spill them in the main loop)
        const __m512 ninf = _mm512_set1_ps(-HUGE_VALF);
        for (int i = 0; i < nr; ++i) {
            const float* cr = g.c + (r + i) * g.ldc + col0;
            const __m512 s0 = _mm512_mask_loadu_ps(ninf, m0, cr), s1 = _mm512_mask_loadu_ps(ninf, m1, cr + 16);
            g.cmax[(r + i) * g.ldm + col0 / 32] = _mm512_reduce_max_ps(_mm512_max_ps(s0, s1));
        }
    }
}

}  // namespace

bool have_avx512vnni_build() { return true; }

void gemm_avx512vnni(const GemmI16& g, int64_t r0, int64_t r1) {
    i16_blocks<MR, MC>(g, r0, r1, [&](int64_t r, int nr, const int32_t* ap, const int16_t* p0, const int16_t* p1,
                                      int64_t col0) { micro(g, r, nr, ap, p0, p1, col0); });
}

}  // namespace lk

#else

namespace lk {
bool have_avx512vnni_build() { return false; }
void gemm_avx512vnni(const GemmI16& g, int64_t r0, int64_t r1) { gemm_i16_portable(g, r0, r1); }
}  // namespace lk

#endif
