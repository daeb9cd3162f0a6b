// Kernels of laionknn's own index (laionknn-ivfgemm): fused IVF list scoring with per-query top-C
// selection, and the exact float16 re-rank. Three builds of each: ivf_portable.cpp (plain C++),
// ivf_avx2.cpp (AVX2 + FMA + F16C) and ivf_avx512.cpp (AVX-512 F/BW/VL + VNNI), chosen at run time
// (ivf_module.cpp).
//
// Code layout ("panels", as the bf16 GEMM's but for bytes): the rows of each inverted list are cut in
// panels of 16 rows (the last one zero padded) and every list starts on a new panel.
//  * 8-bit codes, dq dims (a multiple of 4): panel = [dq/4][16 rows][4 bytes]: one 64-byte step holds
//    4 consecutive dims of all 16 rows (the operand of one vpdpbusd).
//  * 4-bit codes, dq dims (a multiple of 8): panel = [dq/8][16 rows][4 bytes]: the low nibbles of a step
//    hold dims 8s..8s+3, the high nibbles dims 8s+4..8s+7.
// A panel is `steps` * 64 bytes (steps = dq/4 or dq/8). The code array ends with 4 zero panels (the
// kernel reads 4 panels at a time).
//
// Estimate of row x (list l) for query q: base[pair] + qscale[q] * sum_t qcode[q][t] * code[x][t]
// (qcode int8, code u8); the integer sum is exact.
#pragma once
#include <cstddef>
#include <cstdint>

namespace nanobind { class module_; }

namespace lk {

struct IvfScan {
    const uint8_t* codes;       // panels, see above
    int64_t steps;              // 64-byte steps per panel
    bool four_bit;
    const int64_t* list_panel;  // (nlist,) first panel of each list
    const int64_t* list_row;    // (nlist + 1,) first row position of each list, then n
    const int8_t* qcodes;       // (nq, qstride) query codes, dims in order
    int64_t qstride;
    const float* qscale;        // (nq,)
    int64_t nvisit;             // lists to visit
    const int64_t* visit_list;  // (nvisit,) list of each visit
    const int64_t* visit_ptr;   // (nvisit + 1,) its pairs: pair_q/pair_base[visit_ptr[v] .. visit_ptr[v+1])
    const int32_t* pair_q;      // queries of the visit, ascending
    const float* pair_base;     // exact part of the estimate of the pair (query . centroid + constant)
    int64_t nq;
    int64_t cands;              // C: candidates kept per query
    int64_t* out_pos;           // (nq, C) row positions, -1 where fewer were seen
    float* out_est;             // (nq, C) their estimates (-inf where none)
};

struct IvfRerank {
    const uint16_t* orig;   // (n, dim) float16 bit patterns, index order
    const float* inv_norm;  // (n,) factor per row
    const float* queries;   // (nq, dim) float32
    int64_t dim;
    const int64_t* cand;    // (nq, C) positions, -1: none
    int64_t cands;
    int64_t k;
    int64_t* out_pos;       // (nq, k) best first, -1 where missing
    float* out_sim;         // (nq, k), -inf where missing
};

// queries [q0, q1) of the batch
void ivf_scan_portable(const IvfScan& s, int64_t q0, int64_t q1);
void ivf_rerank_portable(const IvfRerank& r, int64_t q0, int64_t q1);
bool have_ivf_avx512_build();
void ivf_scan_avx512(const IvfScan& s, int64_t q0, int64_t q1);
void ivf_rerank_avx512(const IvfRerank& r, int64_t q0, int64_t q1);
bool have_ivf_avx2_build();
void ivf_scan_avx2(const IvfScan& s, int64_t q0, int64_t q1);
void ivf_rerank_avx2(const IvfRerank& r, int64_t q0, int64_t q1);

void register_ivf(nanobind::module_& m);

}  // namespace lk
