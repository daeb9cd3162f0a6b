// AVX-512 build of the ivf kernels (ivf.h), compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512vnni (CMakeLists.txt) and called only where CPUID and the OS report them (ivf_module.cpp).
//
// Scan: for each visited list, 4 panels (64 rows) at a time x up to 6 queries (5 for 4-bit codes) in
// registers: 24 int32 accumulators of vpdpbusd (u8 codes x int8 query codes, the query's 4 bytes
// broadcast from memory). The 64 x NQ integer sums become estimates (one fma), are compared with each
// query's threshold under the mask of real rows, and the few above it are compress-stored into the
// query's candidate buffer: no score matrix, no heap.
// Re-rank: float16 rows widened by vcvtph2ps, 4 accumulators, the rows of the next candidates
// prefetched while the current one is scored.
#include "ivf.h"

#if defined(LK_HAVE_IVF_AVX512)
#include <immintrin.h>

#include <cstring>

#include "ivf_common.h"

namespace lk {
namespace {

constexpr int PANELS = 4;
constexpr int PREFETCH = 3;  // candidates ahead

inline int32_t load4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// The C-th largest of n floats without a branch per element: floats mapped to order-preserving u32 keys,
// then a bisection on the key, each step one vectorised count (compare + popcount) of keys >= t.
struct BisectSelect {
    static float kth(const float* v, int64_t n, int64_t C, float* scratch) {
        uint32_t* key = reinterpret_cast<uint32_t*>(scratch);
        const __m512i sign = _mm512_set1_epi32(int32_t(0x80000000u));
        __m512i kmin = _mm512_set1_epi32(-1), kmax = _mm512_setzero_si512();
        for (int64_t j = 0; j < n; j += 16) {
            const __mmask16 m = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
            const __m512i b = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, v + j));
            // negative: all bits flipped; positive: the sign bit set
            const __m512i k = _mm512_xor_si512(b, _mm512_or_si512(_mm512_srai_epi32(b, 31), sign));
            _mm512_mask_storeu_epi32(key + j, m, k);
            kmin = _mm512_mask_min_epu32(kmin, m, kmin, k);
            kmax = _mm512_mask_max_epu32(kmax, m, kmax, k);
        }
        // largest t with count(key >= t) >= C, in [lo, hi]
        uint32_t lo = _mm512_reduce_min_epu32(kmin), hi = _mm512_reduce_max_epu32(kmax);
        while (lo < hi) {
            const uint32_t mid = lo + (hi - lo + 1) / 2;
            const __m512i t = _mm512_set1_epi32(int32_t(mid));
            int64_t c = 0;
            for (int64_t j = 0; j < n; j += 16) {
                const __mmask16 m = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
                c += _mm_popcnt_u32(_mm512_mask_cmp_epu32_mask(m, _mm512_loadu_si512(key + j), t, _MM_CMPINT_NLT));
            }
            if (c >= C)
                lo = mid;
            else
                hi = mid - 1;
        }
        const uint32_t u = (lo & 0x80000000u) ? (lo ^ 0x80000000u) : ~lo;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
};

// the NQ x 64 integer sums of NQ queries against 4 panels, written to tile[q][p] (16 int32 each); the
// accumulators stay in registers (local, loops fully unrolled) and go to memory once at the end
template <int NQ, bool FOUR>
inline void block(const uint8_t* pan, int64_t panel_bytes, int64_t steps, const int8_t* const* qc,
                  __m512i* tile) {
    __m512i acc[NQ][PANELS];
#pragma GCC unroll 8
    for (int q = 0; q < NQ; ++q)
#pragma GCC unroll 4
        for (int p = 0; p < PANELS; ++p) acc[q][p] = _mm512_setzero_si512();
    const __m512i low = _mm512_set1_epi8(15);
    for (int64_t st = 0; st < steps; ++st) {
        if constexpr (FOUR) {
            __m512i lo[PANELS], hi[PANELS];
#pragma GCC unroll 4
            for (int p = 0; p < PANELS; ++p) {
                const __m512i v = _mm512_loadu_si512(pan + p * panel_bytes + st * 64);
                lo[p] = _mm512_and_si512(v, low);
                hi[p] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            }
#pragma GCC unroll 8
            for (int q = 0; q < NQ; ++q) {
                const __m512i wl = _mm512_set1_epi32(load4(qc[q] + st * 8));
                const __m512i wh = _mm512_set1_epi32(load4(qc[q] + st * 8 + 4));
#pragma GCC unroll 4
                for (int p = 0; p < PANELS; ++p) {
                    acc[q][p] = _mm512_dpbusd_epi32(acc[q][p], lo[p], wl);
                    acc[q][p] = _mm512_dpbusd_epi32(acc[q][p], hi[p], wh);
                }
            }
        } else {
            __m512i b[PANELS];
#pragma GCC unroll 4
            for (int p = 0; p < PANELS; ++p) b[p] = _mm512_loadu_si512(pan + p * panel_bytes + st * 64);
#pragma GCC unroll 8
            for (int q = 0; q < NQ; ++q) {
                const __m512i w = _mm512_set1_epi32(load4(qc[q] + st * 4));
#pragma GCC unroll 4
                for (int p = 0; p < PANELS; ++p) acc[q][p] = _mm512_dpbusd_epi32(acc[q][p], b[p], w);
            }
        }
    }
#pragma GCC unroll 8
    for (int q = 0; q < NQ; ++q)
#pragma GCC unroll 4
        for (int p = 0; p < PANELS; ++p) _mm512_store_si512(tile + q * PANELS + p, acc[q][p]);
}

template <bool FOUR>
void scan(const IvfScan& s, int64_t q0, int64_t q1) {
    constexpr int NQMAX = FOUR ? 5 : 6;
    Candidates<BisectSelect> cand(q0, q1, s.cands);
    const int64_t panel_bytes = s.steps * 64;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    Vec<const int8_t*> qc;
    Vec<float> sc, bs;
    Vec<int64_t> slot;
    alignas(64) __m512i tile[6 * PANELS];
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
            qc.push_back(s.qcodes + q * s.qstride);
            sc.push_back(s.qscale[q]);
            bs.push_back(s.pair_base[pi]);
            slot.push_back(q - q0);
        }
        // the write positions of the queries' candidate buffers (spread over nq * cap entries, cold
        // by now): fetched while the first panels are scored instead of missing at the first hit
        for (int64_t i : slot) {
            const int64_t at = i * cand.cap + cand.cnt[i];
            _mm_prefetch(reinterpret_cast<const char*>(cand.v.data() + at), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(cand.p.data() + at), _MM_HINT_T0);
        }
        const int64_t m = b - a;
        for (int64_t pb = 0; pb < npan; pb += PANELS) {
            const uint8_t* pan = base + pb * panel_bytes;
            const int np = int(std::min<int64_t>(PANELS, npan - pb));
            __mmask16 valid[PANELS];
            for (int p = 0; p < PANELS; ++p) {
                const int64_t left = nr - (pb + p) * 16;
                valid[p] = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
            }
            for (int64_t qb = 0; qb < m; qb += NQMAX) {
                const int nq = int(std::min<int64_t>(NQMAX, m - qb));
                const int8_t* const* qp = qc.data() + qb;
                switch (nq) {
                    case 1: block<1, FOUR>(pan, panel_bytes, s.steps, qp, tile); break;
                    case 2: block<2, FOUR>(pan, panel_bytes, s.steps, qp, tile); break;
                    case 3: block<3, FOUR>(pan, panel_bytes, s.steps, qp, tile); break;
                    case 4: block<4, FOUR>(pan, panel_bytes, s.steps, qp, tile); break;
                    case 5: block<5, FOUR>(pan, panel_bytes, s.steps, qp, tile); break;
                    default: block<NQMAX, FOUR>(pan, panel_bytes, s.steps, qp, tile); break;
                }
                for (int q = 0; q < nq; ++q) {
                    const int64_t i = slot[qb + q];
                    const __m512 vs = _mm512_set1_ps(sc[qb + q]), vb = _mm512_set1_ps(bs[qb + q]);
                    for (int p = 0; p < np; ++p) {
                        const __m512 est = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tile[q * PANELS + p]), vs, vb);
                        const __mmask16 hit =
                            _mm512_mask_cmp_ps_mask(valid[p], est, _mm512_set1_ps(cand.thr[i]), _CMP_GT_OQ);
                        if (!hit) continue;
                        const int64_t at = i * cand.cap + cand.cnt[i];
                        _mm512_mask_compressstoreu_ps(cand.v.data() + at, hit, est);
                        const __m512i pos = _mm512_add_epi32(_mm512_set1_epi32(int32_t(row0 + (pb + p) * 16)), iota);
                        _mm512_mask_compressstoreu_epi32(cand.p.data() + at, hit, pos);
                        cand.cnt[i] += _mm_popcnt_u32(hit);
                        cand.room(i);
                    }
                }
            }
        }
    }
    cand.write(s);
}

inline float dot_f16(const float* q, const uint16_t* x, int64_t dim) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t t = 0;
    for (; t + 64 <= dim; t += 64) {
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(x + t))), _mm512_loadu_ps(q + t), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(x + t + 16))),
                             _mm512_loadu_ps(q + t + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(x + t + 32))),
                             _mm512_loadu_ps(q + t + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(x + t + 48))),
                             _mm512_loadu_ps(q + t + 48), a3);
    }
    for (; t < dim; t += 16) {
        const int64_t left = dim - t;
        const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + t)), _mm512_maskz_loadu_ps(m, q + t), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

}  // namespace

bool have_ivf_avx512_build() { return true; }

void ivf_scan_avx512(const IvfScan& s, int64_t q0, int64_t q1) {
    if (s.four_bit)
        scan<true>(s, q0, q1);
    else
        scan<false>(s, q0, q1);
}

void ivf_rerank_avx512(const IvfRerank& r, int64_t q0, int64_t q1) {
    rerank_rows(r, q0, q1, PREFETCH, dot_f16, prefetch_row);
}

}  // namespace lk

#else

namespace lk {
bool have_ivf_avx512_build() { return false; }
void ivf_scan_avx512(const IvfScan& s, int64_t q0, int64_t q1) { ivf_scan_portable(s, q0, q1); }
void ivf_rerank_avx512(const IvfRerank& r, int64_t q0, int64_t q1) { ivf_rerank_portable(r, q0, q1); }
}  // namespace lk

#endif
