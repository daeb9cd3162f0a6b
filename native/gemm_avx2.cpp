// AVX2 int16 GEMM (vpmaddwd: pairs of int16 products summed into int32, exact, then vpaddd): the
// int16 filter's kernel on CPUs with AVX2 but without AVX512-VNNI (AMD Zen 2/3, Intel before Ice
// Lake). 6 rows x 16 columns (one packed panel, 2 ymm) per register block: 12 int32 accumulators, the
// panel's k-pair read as 2 ymm, one broadcast A k-pair (32 bits). Same layouts as the AVX512-VNNI
// kernel (kernels.h) and the same rounding: the exact int32 sum converted once to float32, times the
// column scale, times the row scale, so every kernel writes bit-identical scores. vpmaddwd delivers 16
// multiply-adds per instruction against vfmadd231ps's 8, which is where the gain over float32 sgemm
// comes from. Compiled with -mavx2 -mfma (CMakeLists.txt); only called where CPUID and the OS report
// AVX2 (module.cpp).
#include "kernels.h"

#if defined(LK_HAVE_AVX2)
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "gemm_common.h"

namespace lk {
namespace {

constexpr int MR = 6;       // rows per register block
constexpr int64_t MC = 96;  // rows of A packed together and kept in L2 while all panels of B stream by

// C rows [r, r + nr) x the 16 columns [col0, col0 + 16) of one packed panel; accumulators are named
// variables so that GCC keeps all 12 in registers
inline void micro(const GemmI16& g, int64_t r, int nr, const int32_t* ap, const int16_t* pan, int64_t col0) {
    __m256i x0 = _mm256_setzero_si256(), y0 = _mm256_setzero_si256();
    __m256i x1 = _mm256_setzero_si256(), y1 = _mm256_setzero_si256();
    __m256i x2 = _mm256_setzero_si256(), y2 = _mm256_setzero_si256();
    __m256i x3 = _mm256_setzero_si256(), y3 = _mm256_setzero_si256();
    __m256i x4 = _mm256_setzero_si256(), y4 = _mm256_setzero_si256();
    __m256i x5 = _mm256_setzero_si256(), y5 = _mm256_setzero_si256();
    const int64_t d2 = g.dp / 2;
    for (int64_t p = 0; p < d2; ++p) {
        const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pan + p * 32));
        const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pan + p * 32 + 16));
        const int32_t* a = ap + p * MR;
        __m256i av;
        av = _mm256_set1_epi32(a[0]);
        x0 = _mm256_add_epi32(x0, _mm256_madd_epi16(b0, av));
        y0 = _mm256_add_epi32(y0, _mm256_madd_epi16(b1, av));
        av = _mm256_set1_epi32(a[1]);
        x1 = _mm256_add_epi32(x1, _mm256_madd_epi16(b0, av));
        y1 = _mm256_add_epi32(y1, _mm256_madd_epi16(b1, av));
        av = _mm256_set1_epi32(a[2]);
        x2 = _mm256_add_epi32(x2, _mm256_madd_epi16(b0, av));
        y2 = _mm256_add_epi32(y2, _mm256_madd_epi16(b1, av));
        av = _mm256_set1_epi32(a[3]);
        x3 = _mm256_add_epi32(x3, _mm256_madd_epi16(b0, av));
        y3 = _mm256_add_epi32(y3, _mm256_madd_epi16(b1, av));
        av = _mm256_set1_epi32(a[4]);
        x4 = _mm256_add_epi32(x4, _mm256_madd_epi16(b0, av));
        y4 = _mm256_add_epi32(y4, _mm256_madd_epi16(b1, av));
        av = _mm256_set1_epi32(a[5]);
        x5 = _mm256_add_epi32(x5, _mm256_madd_epi16(b0, av));
        y5 = _mm256_add_epi32(y5, _mm256_madd_epi16(b1, av));
    }
    const int64_t left = g.ncols - col0;
    if (left <= 0) return;
    alignas(32) float c[16];
    for (int j = 0; j < 16; ++j) c[j] = j < left ? g.cs[col0 + j] : 0.0f;
    const __m256 c0 = _mm256_load_ps(c), c1 = _mm256_load_ps(c + 8);
    auto put = [&](int i, __m256i u, __m256i v) {
        const __m256 rs = _mm256_set1_ps(g.rs[r + i]);
        const __m256 s0 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(u), c0), rs);
        const __m256 s1 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), c1), rs);
        float* cr = g.c + (r + i) * g.ldc + col0;
        if (left >= 16) {
            _mm256_storeu_ps(cr, s0);
            _mm256_storeu_ps(cr + 8, s1);
        } else {
            alignas(32) float t[16];
            _mm256_store_ps(t, s0);
            _mm256_store_ps(t + 8, s1);
            std::memcpy(cr, t, size_t(left) * sizeof(float));
        }
    };
    if (nr > 0) { put(0, x0, y0); }
    if (nr > 1) { put(1, x1, y1); }
    if (nr > 2) { put(2, x2, y2); }
    if (nr > 3) { put(3, x3, y3); }
    if (nr > 4) { put(4, x4, y4); }
    if (nr > 5) { put(5, x5, y5); }
}

// each row's maximum over the (up to) 32 columns [col0, col0 + 32) of C, read back from L1
inline void row_max(const GemmI16& g, int64_t r, int nr, int64_t col0) {
    const int64_t left = g.ncols - col0;
    for (int i = 0; i < nr; ++i) {
        const float* cr = g.c + (r + i) * g.ldc + col0;
        float m = -HUGE_VALF;
        if (left >= 32) {
            __m256 v = _mm256_max_ps(_mm256_max_ps(_mm256_loadu_ps(cr), _mm256_loadu_ps(cr + 8)),
                                     _mm256_max_ps(_mm256_loadu_ps(cr + 16), _mm256_loadu_ps(cr + 24)));
            __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            h = _mm_max_ps(h, _mm_movehl_ps(h, h));
            h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
            m = _mm_cvtss_f32(h);
        } else {
            for (int64_t j = 0; j < left; ++j) m = cr[j] > m ? cr[j] : m;
        }
        g.cmax[(r + i) * g.ldm + col0 / 32] = m;
    }
}

}  // namespace

bool have_avx2_build() { return true; }

void gemm_i16_avx2(const GemmI16& g, int64_t r0, int64_t r1) {
    i16_blocks<MR, MC>(g, r0, r1, [&](int64_t r, int nr, const int32_t* ap, const int16_t* p0, const int16_t* p1,
                                      int64_t col0) {
        micro(g, r, nr, ap, p0, col0);
        micro(g, r, nr, ap, p1, col0 + 16);
        if (g.cmax) row_max(g, r, nr, col0);
    });
}

}  // namespace lk

#else

namespace lk {
bool have_avx2_build() { return false; }
void gemm_i16_avx2(const GemmI16& g, int64_t r0, int64_t r1) { gemm_i16_portable(g, r0, r1); }
}  // namespace lk

#endif
