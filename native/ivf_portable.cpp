// Portable (plain C++) build of the ivf kernels (ivf.h): the reference the AVX-512 build is tested
// against, and the kernel on CPUs without AVX-512 VNNI when asked for by name.
#include <cstring>

#include "ivf_common.h"

namespace lk {
namespace {

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t ex = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ffu, u;
    if (ex == 0) {
        if (mant == 0) {
            u = sign;
        } else {
            uint32_t sh = 0;
            while (!(mant & 0x400u)) {
                mant <<= 1;
                ++sh;
            }
            u = sign | ((113u - sh) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (ex == 31) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((ex + 112u) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

struct NthSelect {
    static float kth(const float* v, int64_t n, int64_t C, float* scratch) {
        std::copy(v, v + n, scratch);
        std::nth_element(scratch, scratch + (C - 1), scratch + n, [](float a, float b) { return a > b; });
        return scratch[C - 1];
    }
};

}  // namespace

void ivf_scan_portable(const IvfScan& s, int64_t q0, int64_t q1) {
    Candidates<NthSelect> cand(q0, q1, s.cands);
    const int64_t panel_bytes = s.steps * 64;
    for (int64_t v = 0; v < s.nvisit; ++v) {
        const int64_t l = s.visit_list[v];
        const int64_t row0 = s.list_row[l], nr = s.list_row[l + 1] - row0;
        const uint8_t* base = s.codes + s.list_panel[l] * panel_bytes;
        auto [a, b] = pairs_in(s, v, q0, q1);
        for (int64_t pi = a; pi < b; ++pi) {
            const int64_t q = s.pair_q[pi], i = q - q0;
            const int8_t* qc = s.qcodes + q * s.qstride;
            const float sc = s.qscale[q], bs = s.pair_base[pi];
            for (int64_t j = 0; j < nr; ++j) {
                const uint8_t* panel = base + (j / 16) * panel_bytes + (j % 16) * 4;
                int32_t acc = 0;
                for (int64_t st = 0; st < s.steps; ++st) {
                    const uint8_t* c = panel + st * 64;
                    if (s.four_bit) {
                        for (int t = 0; t < 4; ++t)
                            acc += int32_t(qc[st * 8 + t]) * int32_t(c[t] & 15) +
                                   int32_t(qc[st * 8 + 4 + t]) * int32_t(c[t] >> 4);
                    } else {
                        for (int t = 0; t < 4; ++t) acc += int32_t(qc[st * 4 + t]) * int32_t(c[t]);
                    }
                }
                const float est = std::fma(float(acc), sc, bs);
                if (est > cand.thr[i]) cand.push(i, est, int32_t(row0 + j));
            }
        }
    }
    cand.write(s);
}

void ivf_rerank_portable(const IvfRerank& r, int64_t q0, int64_t q1) {
    Vec<int64_t> mine;
    for (int64_t q = q0; q < q1; ++q) {
        TopK top(r.k, r.out_sim + q * r.k, r.out_pos + q * r.k);
        const float* qv = r.queries + q * r.dim;
        const int64_t nc = sorted_cands(r, q, mine);
        for (int64_t c = 0; c < nc; ++c) {
            const uint16_t* x = r.orig + mine[c] * r.dim;
            float acc = 0.0f;
            for (int64_t t = 0; t < r.dim; ++t) acc += qv[t] * f16_to_f32(x[t]);
            top.add(acc * r.inv_norm[mine[c]], mine[c]);
        }
        top.finish();
    }
}

}  // namespace lk
