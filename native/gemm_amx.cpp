// AMX-BF16 GEMM: 32 rows x 32 columns of C per step in four 16x16 float32 tiles (tmm0-3), A in two
// 16x32 bf16 tiles (tmm4-5) read straight from the row-major query block, B in two 16x(16 pairs)
// tiles (tmm6-7) read from the packed panels (kernels.h: a panel's 16 k-pairs x 16 columns x 2 are
// one 1 KiB tile). Compiled with -mamx-tile -mamx-bf16 (CMakeLists.txt); called only where CPUID
// reports AMX-BF16 and Linux granted the tile state (arch_prctl ARCH_REQ_XCOMP_PERM, module.cpp).
#include "kernels.h"

#if defined(LK_HAVE_AMX)
#include <immintrin.h>

#include <cstring>
#include <vector>

namespace lk {
namespace {

struct alignas(64) TileConfig {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

void configure() {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int t = 0; t < 8; ++t) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

// C rows [r, r + 32) (a, lda: that A block, possibly a zero-padded copy), column pair q
inline void step(const Gemm& g, const uint16_t* a, int64_t lda, int64_t q, float* out, int64_t ldo) {
    const uint16_t* p0 = g.b + (2 * q) * panel_elems(g.dp);
    const uint16_t* p1 = p0 + panel_elems(g.dp);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const int64_t sa = lda * 2;
    for (int64_t kb = 0; kb < g.dp / 32; ++kb) {
        _tile_loadd(4, a + kb * 32, sa);
        _tile_loadd(5, a + 16 * lda + kb * 32, sa);
        _tile_loadd(6, p0 + kb * 512, 64);
        _tile_loadd(7, p1 + kb * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    const int64_t so = ldo * 4;
    _tile_stored(0, out, so);
    _tile_stored(1, out + 16, so);
    _tile_stored(2, out + 16 * ldo, so);
    _tile_stored(3, out + 16 * ldo + 16, so);
}

}  // namespace

bool have_amx_build() { return true; }

void gemm_amx(const Gemm& g, int64_t r0, int64_t r1) {
    configure();
    const int64_t npair = (g.ncols + 31) / 32;
    alignas(64) float tmp[32 * 32];
    std::vector<uint16_t> apad;
    for (int64_t r = r0; r < r1; r += 32) {
        const int64_t nr = r1 - r < 32 ? r1 - r : 32;
        const uint16_t* a = g.a + r * g.lda;
        int64_t lda = g.lda;
        if (nr < 32) {  // last partial row block: a zero-padded copy (A is not padded in rows)
            apad.assign(32 * g.dp, 0);
            for (int64_t i = 0; i < nr; ++i) std::memcpy(&apad[i * g.dp], a + i * g.lda, g.dp * 2);
            a = apad.data();
            lda = g.dp;
        }
        for (int64_t q = 0; q < npair; ++q) {
            const int64_t col0 = q * 32;
            const int64_t nc = g.ncols - col0 < 32 ? g.ncols - col0 : 32;
            if (nr == 32 && nc == 32) {
                step(g, a, lda, q, g.c + r * g.ldc + col0, g.ldc);
            } else {
                step(g, a, lda, q, tmp, 32);
                for (int64_t i = 0; i < nr; ++i)
                    std::memcpy(g.c + (r + i) * g.ldc + col0, tmp + i * 32, nc * 4);
            }
        }
    }
    _tile_release();
}

}  // namespace lk

#else

namespace lk {
bool have_amx_build() { return false; }
void gemm_amx(const Gemm& g, int64_t r0, int64_t r1) { gemm_portable(g, r0, r1); }
}  // namespace lk

#endif
