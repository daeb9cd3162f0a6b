// Portable bf16 x bf16 -> float32 GEMM (no instruction-set flags beyond the compiler's default).
// Each product of two bf16 values is exact in float32; the sums are float32 roundings, d per entry,
// so the float32 error bound of docs/exact.md holds as for the vector kernels.
#include <cmath>
#include <cstring>

#include "kernels.h"

namespace lk {
namespace {

inline float bf(uint16_t v) {
    uint32_t u = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// MR rows x 16 columns of one panel
template <int MR>
void micro(const Gemm& g, int64_t r, const uint16_t* panel, int64_t col0, int64_t nvalid) {
    float acc[MR][16] = {};
    const int64_t d2 = g.dp / 2;
    for (int64_t p = 0; p < d2; ++p) {
        float b0[16], b1[16];
        const uint16_t* bp = panel + p * 32;
        for (int c = 0; c < 16; ++c) {
            b0[c] = bf(bp[2 * c]);
            b1[c] = bf(bp[2 * c + 1]);
        }
        for (int i = 0; i < MR; ++i) {
            const uint16_t* ar = g.a + (r + i) * g.lda + 2 * p;
            const float a0 = bf(ar[0]), a1 = bf(ar[1]);
            for (int c = 0; c < 16; ++c) {
                acc[i][c] += a0 * b0[c];
                acc[i][c] += a1 * b1[c];
            }
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int64_t c = 0; c < nvalid; ++c) g.c[(r + i) * g.ldc + col0 + c] = acc[i][c];
}

}  // namespace

void gemm_portable(const Gemm& g, int64_t r0, int64_t r1) {
    const int64_t npan = (g.ncols + 15) / 16;
    constexpr int64_t MC = 64;  // rows kept in cache while every panel streams by
    for (int64_t rb = r0; rb < r1; rb += MC) {
        const int64_t re = rb + MC < r1 ? rb + MC : r1;
        for (int64_t pn = 0; pn < npan; ++pn) {
            const uint16_t* panel = g.b + pn * panel_elems(g.dp);
            const int64_t col0 = pn * 16;
            const int64_t nvalid = g.ncols - col0 < 16 ? g.ncols - col0 : 16;
            int64_t r = rb;
            for (; r + 4 <= re; r += 4) micro<4>(g, r, panel, col0, nvalid);
            for (; r < re; ++r) micro<1>(g, r, panel, col0, nvalid);
        }
    }
}

void gemm_i16_portable(const GemmI16& g, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
        const int16_t* ar = g.a + r * g.lda;
        for (int64_t j = 0; j < g.ncols; ++j) {
            const int16_t* panel = g.b + (j / 16) * panel_elems(g.dp);
            const int64_t c = j % 16;
            int64_t acc = 0;  // exact: |sum| < 2^31 (the conversion bounds the norms)
            for (int64_t p = 0; p < g.dp / 2; ++p)
                acc += int32_t(ar[2 * p]) * panel[p * 32 + 2 * c] + int32_t(ar[2 * p + 1]) * panel[p * 32 + 2 * c + 1];
            g.c[r * g.ldc + j] = (float(acc) * g.cs[j]) * g.rs[r];
        }
        if (g.cmax)
            for (int64_t j0 = 0; j0 < g.ncols; j0 += 32) {
                float m = -HUGE_VALF;
                for (int64_t j = j0; j < j0 + 32 && j < g.ncols; ++j) m = g.c[r * g.ldc + j] > m ? g.c[r * g.ldc + j] : m;
                g.cmax[r * g.ldm + j0 / 32] = m;
            }
    }
}

}  // namespace lk
