// AVX2 build of the ivf kernels (ivf.h), compiled with -mavx2 -mfma -mf16c (CMakeLists.txt) and called
// only where CPUID and the OS report them (ivf_module.cpp): the kernel of CPUs without AVX-512 VNNI
// (AMD Zen 2/3, Intel before Ice Lake).
//
// Scan: AVX2 has no u8 x s8 dot product into int32 that cannot saturate (vpmaddubsw saturates at
// int16), so the codes are widened: each 16-byte quarter of a 64-byte panel step (4 rows x 4 dims) is
// zero-extended to int16 (vpmovzxbw) and multiplied with the query's 4 int16 codes broadcast
// (vpmaddwd: 8 exact int32 pair sums, 2 per row), up to 3 queries (2 for 4-bit codes) sharing each
// widened quarter; 4 accumulators per query cover the panel's 16 rows. At the end of the panel the
// pair sums are folded (vphaddd + a lane permute) into 16 row sums in row order, turned into estimates
// (one fma) and compared with the query's threshold; the few hits are appended in row order, so the
// candidates and the selection are those of the portable and AVX-512 builds (same integer sums).
// Re-rank: float16 rows widened by vcvtph2ps (F16C), 4 accumulators, the next rows prefetched.
#include "ivf.h"

#if defined(LK_HAVE_IVF_AVX2)
#include <immintrin.h>

#include <cstring>

#include "ivf_common.h"

namespace lk {
namespace {

constexpr int PREFETCH = 3;  // candidates ahead

struct NthSelect {
    static float kth(const float* v, int64_t n, int64_t C, float* scratch) {
        std::copy(v, v + n, scratch);
        std::nth_element(scratch, scratch + (C - 1), scratch + n, [](float a, float b) { return a > b; });
        return scratch[C - 1];
    }
};

inline __m256i bcast4(const int16_t* q) {  // 4 int16 codes repeated over the 16 lanes
    int64_t v;
    std::memcpy(&v, q, 8);
    return _mm256_set1_epi64x(v);
}

inline __m256i widen(const uint8_t* p) {
    return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// the 16 row sums of one panel for NQ queries: out[q] = 2 ymm (rows 0-7, 8-15) of int32.
// qc[q] points to the query's int16 codes (dims in order).
template <int NQ, bool FOUR>
inline void panel_sums(const uint8_t* pan, int64_t steps, const int16_t* const* qc, __m256i (*out)[2]) {
    __m256i acc[NQ][4];
#pragma GCC unroll 4
    for (int q = 0; q < NQ; ++q)
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) acc[q][c] = _mm256_setzero_si256();
    const __m256i low = _mm256_set1_epi16(15);
    for (int64_t st = 0; st < steps; ++st) {
        const uint8_t* s = pan + st * 64;
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
            const __m256i v = widen(s + 16 * c);
            if constexpr (FOUR) {
                const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_srli_epi16(v, 4);
#pragma GCC unroll 4
                for (int q = 0; q < NQ; ++q) {
                    acc[q][c] = _mm256_add_epi32(acc[q][c], _mm256_madd_epi16(lo, bcast4(qc[q] + st * 8)));
                    acc[q][c] = _mm256_add_epi32(acc[q][c], _mm256_madd_epi16(hi, bcast4(qc[q] + st * 8 + 4)));
                }
            } else {
#pragma GCC unroll 4
                for (int q = 0; q < NQ; ++q)
                    acc[q][c] = _mm256_add_epi32(acc[q][c], _mm256_madd_epi16(v, bcast4(qc[q] + st * 4)));
            }
        }
    }
    // acc[q][c] = [r0a r0b r1a r1b | r2a r2b r3a r3b] for rows 4c..4c+3; hadd(c0, c1) = [r0 r1 r4 r5 | r2 r3 r6 r7]
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
#pragma GCC unroll 4
    for (int q = 0; q < NQ; ++q) {
        out[q][0] = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(acc[q][0], acc[q][1]), order);
        out[q][1] = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(acc[q][2], acc[q][3]), order);
    }
}

template <bool FOUR>
void scan(const IvfScan& s, int64_t q0, int64_t q1) {
    constexpr int NQMAX = FOUR ? 2 : 3;
    Candidates<NthSelect> cand(q0, q1, s.cands);
    const int64_t panel_bytes = s.steps * 64;
    const int64_t dims = FOUR ? s.steps * 8 : s.steps * 4;
    // the queries' codes widened to int16 once (the kernel broadcasts 4 of them at a time)
    Vec<int16_t> q16(size_t((q1 - q0) * dims));
    for (int64_t q = q0; q < q1; ++q)
        for (int64_t t = 0; t < dims; ++t) q16[(q - q0) * dims + t] = s.qcodes[q * s.qstride + t];
    Vec<const int16_t*> qc;
    Vec<float> sc, bs;
    Vec<int64_t> slot;
    __m256i sums[NQMAX][2];
    alignas(32) float est[16];
    for (int64_t v = 0; v < s.nvisit; ++v) {
        const int64_t l = s.visit_list[v];
        const int64_t row0 = s.list_row[l], nr = s.list_row[l + 1] - row0;
        if (nr == 0) continue;
        const int64_t npan = (nr + 15) / 16;
        const uint8_t* base = s.codes + s.list_panel[l] * panel_bytes;
        auto [a, b] = pairs_in(s, v, q0, q1);
        if (a == b) continue;
        qc.clear(), sc.clear(), bs.clear(), slot.clear();
        for (int64_t pi = a; pi < b; ++pi) {
            const int64_t q = s.pair_q[pi];
            qc.push_back(q16.data() + (q - q0) * dims);
            sc.push_back(s.qscale[q]);
            bs.push_back(s.pair_base[pi]);
            slot.push_back(q - q0);
        }
        const int64_t m = b - a;
        for (int64_t pn = 0; pn < npan; ++pn) {
            const uint8_t* pan = base + pn * panel_bytes;
            const int64_t left = nr - pn * 16;
            const uint32_t valid = left >= 16 ? 0xFFFFu : (1u << left) - 1;
            for (int64_t qb = 0; qb < m; qb += NQMAX) {
                const int nq = int(std::min<int64_t>(NQMAX, m - qb));
                const int16_t* const* qp = qc.data() + qb;
                if (nq == 1)
                    panel_sums<1, FOUR>(pan, s.steps, qp, sums);
                else if (NQMAX == 3 && nq == 2)
                    panel_sums<2, FOUR>(pan, s.steps, qp, sums);
                else
                    panel_sums<NQMAX, FOUR>(pan, s.steps, qp, sums);
                for (int q = 0; q < nq; ++q) {
                    const int64_t i = slot[qb + q];
                    const __m256 vs = _mm256_set1_ps(sc[qb + q]), vb = _mm256_set1_ps(bs[qb + q]);
                    const __m256 t = _mm256_set1_ps(cand.thr[i]);
                    const __m256 e0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[q][0]), vs, vb);
                    const __m256 e1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[q][1]), vs, vb);
                    uint32_t hit = uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(e0, t, _CMP_GT_OQ))) |
                                   (uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(e1, t, _CMP_GT_OQ))) << 8);
                    hit &= valid;
                    if (!hit) continue;
                    _mm256_store_ps(est, e0);
                    _mm256_store_ps(est + 8, e1);
                    const int64_t at = i * cand.cap + cand.cnt[i];
                    int64_t w = 0;
                    while (hit) {
                        const int j = __builtin_ctz(hit);
                        hit &= hit - 1;
                        cand.v[at + w] = est[j];
                        cand.p[at + w] = int32_t(row0 + pn * 16 + j);
                        ++w;
                    }
                    cand.cnt[i] += w;
                    cand.room(i);
                }
            }
        }
    }
    cand.write(s);
}

inline float dot_f16(const float* q, const uint16_t* x, int64_t dim) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t t = 0;
    for (; t + 32 <= dim; t += 32) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(x + t))), _mm256_loadu_ps(q + t), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(x + t + 8))), _mm256_loadu_ps(q + t + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(x + t + 16))),
                             _mm256_loadu_ps(q + t + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(x + t + 24))),
                             _mm256_loadu_ps(q + t + 24), a3);
    }
    for (; t + 8 <= dim; t += 8)
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(x + t))), _mm256_loadu_ps(q + t), a0);
    const __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float acc = _mm_cvtss_f32(h);
    for (; t < dim; ++t) acc += q[t] * _cvtsh_ss(x[t]);
    return acc;
}

}  // namespace

bool have_ivf_avx2_build() { return true; }

void ivf_scan_avx2(const IvfScan& s, int64_t q0, int64_t q1) {
    if (s.four_bit)
        scan<true>(s, q0, q1);
    else
        scan<false>(s, q0, q1);
}

void ivf_rerank_avx2(const IvfRerank& r, int64_t q0, int64_t q1) {
    rerank_rows(r, q0, q1, PREFETCH, dot_f16, prefetch_row);
}

}  // namespace lk

#else

namespace lk {
bool have_ivf_avx2_build() { return false; }
void ivf_scan_avx2(const IvfScan& s, int64_t q0, int64_t q1) { ivf_scan_portable(s, q0, q1); }
void ivf_rerank_avx2(const IvfRerank& r, int64_t q0, int64_t q1) { ivf_rerank_portable(r, q0, q1); }
}  // namespace lk

#endif
