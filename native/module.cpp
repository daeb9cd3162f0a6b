// laionknn._native: bf16 conversion, packing and GEMM for the exact engine's certified bf16 filter.
//
// Runtime dispatch: the Python wrapper (laionknn/native.py) asks features() what the CPU and OS
// offer and passes the kernel to use ("amx", "avx512bf16" or "portable") to gemm_bf16. AMX needs the
// kernel's permission for the tile state (Linux arch_prctl ARCH_REQ_XCOMP_PERM), asked by amx_request().
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define LK_X86 1
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "ivf.h"
#include "kernels.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace lk {
namespace {

constexpr int ABI = 4;  // bumped when a signature changes (the wrapper refuses a stale build)

// ---------------------------------------------------------------- CPU and OS features
struct Features {
    bool avx2 = false, fma = false, avx512f = false, avx512bw = false, avx512vl = false, avx512bf16 = false, avx512vnni = false;
    bool amx_tile = false, amx_bf16 = false, os_avx512 = false, os_amx = false;
};

#if LK_X86
uint64_t xgetbv0() {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t(hi) << 32) | lo;
}
#endif

Features detect() {
    Features f;
#if LK_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = (c >> 27) & 1;
    f.fma = (c >> 12) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    const bool os_avx = (xcr0 & 0x6) == 0x6;
    f.os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;           // opmask, ZMM_Hi256, Hi16_ZMM
    f.os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);         // XTILECFG, XTILEDATA
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = os_avx && ((b >> 5) & 1);
        f.avx512f = (b >> 16) & 1;
        f.avx512bw = (b >> 30) & 1;
        f.avx512vl = (b >> 31) & 1;
        f.avx512vnni = (c >> 11) & 1;
        f.amx_bf16 = (d >> 22) & 1;
        f.amx_tile = (d >> 24) & 1;
        const unsigned max7 = a;
        if (max7 >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = (a >> 5) & 1;
    }
#endif
    return f;
}

bool amx_request() {
#if LK_X86 && defined(__linux__)
    constexpr long ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    unsigned long bitmask = 0;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return false;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bitmask) != 0) return false;
    return (bitmask >> XFEATURE_XTILEDATA) & 1;
#else
    return false;
#endif
}

// ---------------------------------------------------------------- conversions
inline float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t ex = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ffu;
    if (ex == 0) {
        if (mant == 0) return bits_f32(sign);
        uint32_t s = 0;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            ++s;
        }
        return bits_f32(sign | ((113u - s) << 23) | ((mant & 0x3ffu) << 13));
    }
    if (ex == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((ex + 112u) << 23) | (mant << 13));
}

// float32 -> bf16, round to nearest even; NaN stays a (quiet) NaN; ftz: subnormals become signed zero
inline uint16_t f32_to_bf16(float x, bool ftz) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
    if (ftz && (u & 0x7f800000u) == 0) return uint16_t((u >> 16) & 0x8000u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

// float16 -> float32 for every bit pattern (256 KiB, built on first use)
const float* half_table() {
    static const std::vector<float> table = [] {
        std::vector<float> t(65536);
        for (uint32_t h = 0; h < 65536; ++h) t[h] = half_to_float(uint16_t(h));
        return t;
    }();
    return table.data();
}

inline double bf16_to_double(uint16_t h) { return double(bits_f32(uint32_t(h) << 16)); }

template <class F>
void parallel_rows(int64_t n, int64_t grain, int threads, F&& body) {
    int64_t parts = threads > 1 ? threads : 1;
    if (n / grain < parts) parts = n / grain > 0 ? n / grain : 1;
    if (parts <= 1) {
        body(int64_t(0), n);
        return;
    }
    int64_t step = (n + parts - 1) / parts;
    step = (step + grain - 1) / grain * grain;
    std::vector<std::thread> pool;
    for (int64_t lo = step; lo < n; lo += step) pool.emplace_back(body, lo, lo + step < n ? lo + step : n);
    body(int64_t(0), step < n ? step : n);
    for (auto& t : pool) t.join();
}

// Convert rows of `src` (values as double through `get`) to bf16 into `dst` (layout 0: row-major
// (rows, dp); 1: packed panels, kernels.h), with the float64 norms of the rows, of the bf16 rows and
// of the residuals x - bf16(x) (exact: Sterbenz), in one pass over the source. Padding (columns
// d..dp, rows n..rows) is written as zeros.
template <class Get>
void convert(Get get, int64_t n, int64_t d, int64_t rows, int64_t dp, uint16_t* dst, int layout, double* nx,
             double* nhat, double* nres, bool ftz, int threads) {
    auto body = [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            double sx = 0.0, sh = 0.0, sr = 0.0;
            for (int64_t t = 0; t < dp; ++t) {
                uint16_t h = 0;
                if (r < n && t < d) {
                    const double v = get(r, t);
                    h = f32_to_bf16(float(v), ftz);
                    const double xh = bf16_to_double(h);
                    const double e = v - xh;
                    sx += v * v;
                    sh += xh * xh;
                    sr += e * e;
                }
                if (layout == 0)
                    dst[r * dp + t] = h;
                else
                    dst[(r / 16) * panel_elems(dp) + (t / 2) * 32 + (r % 16) * 2 + (t & 1)] = h;
            }
            if (r < n) {
                nx[r] = std::sqrt(sx);
                nhat[r] = std::sqrt(sh);
                nres[r] = std::sqrt(sr);
            }
        }
    };
    parallel_rows(rows, 16, threads, body);
}

// Rows of `src` to int16 with one power-of-two scale per row: X = rint(x / 2^e) with the smallest e such
// that max_t |x_t| <= 32767 2^e and |x| <= 46000 2^e (so |X| < 46341 after rounding for d < 4.6e5, and
// |Q.X| <= |Q||X| < 2^31 for every pair and every partial sum: the int32 sums of vpdpwssd are exact).
// Writes X (layout as convert), e, the scale 2^e (float32), the float64 norms of x, of 2^e X and of the
// residual x - 2^e X (exact in float64: both are multiples of the same power of two within 53 bits).
// A row that is not finite gets e = 0, X = 0 and a non-finite norm; an all-zero row e = 0.
template <class Get>
void convert_q16(Get get, int64_t n, int64_t d, int64_t rows, int64_t dp, int16_t* dst, int layout, double* nx,
                 double* nhat, double* nres, int32_t* ex, float* scale, int threads) {
    auto put = [&](int64_t r, int64_t t, int16_t v) {
        if (layout == 0)
            dst[r * dp + t] = v;
        else
            dst[(r / 16) * panel_elems(dp) + (t / 2) * 32 + (r % 16) * 2 + (t & 1)] = v;
    };
    auto body = [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            if (r >= n) {
                for (int64_t t = 0; t < dp; ++t) put(r, t, 0);
                continue;
            }
            // eight independent partial sums (the order only moves the last bits of a norm; the engine's
            // SLACK covers float64 summation in any order)
            double mx = 0.0, sx = 0.0;
            {
                double m8[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                int64_t t = 0;
                for (; t + 8 <= d; t += 8)
                    for (int u = 0; u < 8; ++u) {
                        const double v = get(r, t + u);
                        m8[u] = std::fabs(v) > m8[u] ? std::fabs(v) : m8[u];
                        s8[u] += v * v;
                    }
                for (; t < d; ++t) {
                    const double v = get(r, t);
                    m8[0] = std::fabs(v) > m8[0] ? std::fabs(v) : m8[0];
                    s8[0] += v * v;
                }
                for (int u = 0; u < 8; ++u) {
                    mx = m8[u] > mx ? m8[u] : mx;
                    sx += s8[u];
                }
                if (std::isnan(sx)) mx = NAN;
            }
            int e = 0;
            if (!std::isfinite(sx) || !std::isfinite(mx)) {
                sx = std::isfinite(sx) ? HUGE_VAL : sx;
                mx = 0.0;
            }
            if (mx > 0.0) {
                const double nrm = std::sqrt(sx);
                int e1 = 0, e2 = 0;
                std::frexp(mx / 32767.0, &e1);  // mx / 32767 < 2^e1
                std::frexp(nrm / 46000.0, &e2);
                e = e1 > e2 ? e1 : e2;
                while (std::ldexp(32767.0, e - 1) >= mx && std::ldexp(46000.0, e - 1) >= nrm) --e;
                while (std::ldexp(32767.0, e) < mx || std::ldexp(46000.0, e) < nrm) ++e;
            }
            // multiplying by 2^-e and 2^e is ldexp (both round the exact value once) where both factors are
            // normal doubles; ldexp itself outside that range
            const bool fast = e > -1000 && e < 1000;
            const double down = fast ? std::ldexp(1.0, -e) : 0.0, up = fast ? std::ldexp(1.0, e) : 0.0;
            double h8[8] = {0, 0, 0, 0, 0, 0, 0, 0}, r8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            auto one = [&](int64_t t, int u) {
                const double v = get(r, t);
                // round to nearest even: |y| <= 32767, so (y + 1.5 2^52) - 1.5 2^52 is rint(y) (no libm call)
                const double y = fast ? v * down : std::ldexp(v, -e);
                const double xq = (y + 6755399441055744.0) - 6755399441055744.0;
                const double xh = fast ? xq * up : std::ldexp(xq, e);
                const double er = v - xh;
                h8[u] += xh * xh;
                r8[u] += er * er;
                put(r, t, int16_t(xq));
            };
            int64_t t = 0;
            if (mx > 0.0) {
                for (; t + 8 <= d; t += 8)
                    for (int u = 0; u < 8; ++u) one(t + u, u);
                for (; t < d; ++t) one(t, 0);
            }
            for (; t < dp; ++t) put(r, t, 0);
            double sh = 0.0, sr = 0.0;
            for (int u = 0; u < 8; ++u) {
                sh += h8[u];
                sr += r8[u];
            }
            nx[r] = std::sqrt(sx);
            nhat[r] = std::sqrt(sh);
            nres[r] = std::sqrt(sr);
            ex[r] = e;
            scale[r] = float(std::ldexp(1.0, e < -149 ? -149 : e > 127 ? 127 : e));
        }
    };
    parallel_rows(rows, 16, threads, body);
}

template <class T>
using Mat = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Out16 = nb::ndarray<uint16_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using OutF64 = nb::ndarray<double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

int64_t padded_depth(int64_t d) { return (d + 31) / 32 * 32; }
int64_t packed_rows(int64_t n) { return (n + 31) / 32 * 32; }

template <class T, class Get>
void convert_any(const Mat<T>& src, Out16 dst, OutF64 nx, OutF64 nhat, OutF64 nres, int layout, bool ftz, int threads,
                 Get get) {
    const int64_t n = src.shape(0), d = src.shape(1), dp = padded_depth(d);
    if (layout != 0 && layout != 1) throw std::invalid_argument("layout must be 0 (row-major) or 1 (packed)");
    const int64_t rows = layout == 0 ? n : packed_rows(n);
    if (int64_t(dst.shape(0)) < rows * dp)
        throw std::invalid_argument("bf16 output buffer too small: need " + std::to_string(rows * dp) + " values");
    if (int64_t(nx.shape(0)) < n || int64_t(nhat.shape(0)) < n || int64_t(nres.shape(0)) < n)
        throw std::invalid_argument("norm output buffers must hold one value per row");
    const T* p = src.data();
    convert([&](int64_t r, int64_t t) { return get(p[r * d + t]); }, n, d, rows, dp, dst.data(), layout, nx.data(),
            nhat.data(), nres.data(), ftz, threads);
}

using Out16s = nb::ndarray<int16_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using OutI32 = nb::ndarray<int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using OutF32 = nb::ndarray<float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

template <class T, class Get>
void quantize_any(const Mat<T>& src, Out16s dst, OutF64 nx, OutF64 nhat, OutF64 nres, OutI32 ex, OutF32 scale,
                  int layout, int threads, Get get) {
    const int64_t n = src.shape(0), d = src.shape(1), dp = padded_depth(d);
    if (layout != 0 && layout != 1) throw std::invalid_argument("layout must be 0 (row-major) or 1 (packed)");
    if (d > 400000) throw std::invalid_argument("the int16 filter supports at most 400000 dimensions");
    const int64_t rows = layout == 0 ? n : packed_rows(n);
    if (int64_t(dst.shape(0)) < rows * dp)
        throw std::invalid_argument("int16 output buffer too small: need " + std::to_string(rows * dp) + " values");
    if (int64_t(nx.shape(0)) < n || int64_t(nhat.shape(0)) < n || int64_t(nres.shape(0)) < n ||
        int64_t(ex.shape(0)) < n || int64_t(scale.shape(0)) < n)
        throw std::invalid_argument("norm, exponent and scale buffers must hold one value per row");
    const T* p = src.data();
    convert_q16([&](int64_t r, int64_t t) { return get(p[r * d + t]); }, n, d, rows, dp, dst.data(), layout, nx.data(),
                nhat.data(), nres.data(), ex.data(), scale.data(), threads);
}

void gemm_i16(const std::string& kernel, nb::ndarray<const int16_t, nb::ndim<2>, nb::c_contig, nb::device::cpu> a,
              nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu> rs,
              nb::ndarray<const int16_t, nb::ndim<1>, nb::c_contig, nb::device::cpu> b,
              nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu> cs, int64_t col0, int64_t ncols,
              nb::ndarray<float, nb::ndim<2>, nb::c_contig, nb::device::cpu> c, int threads,
              nb::ndarray<float, nb::ndim<2>, nb::c_contig, nb::device::cpu> cmax) {
    const int64_t m = a.shape(0), dp = a.shape(1);
    if (dp % 32) throw std::invalid_argument("A rows must be padded to a multiple of 32 values");
    if (col0 % 32 || col0 < 0) throw std::invalid_argument("col0 must be a non-negative multiple of 32");
    if (int64_t(c.shape(0)) != m || int64_t(c.shape(1)) < ncols)
        throw std::invalid_argument("C must have the rows of A and at least ncols columns");
    const bool want_max = cmax.shape(1) > 0;
    if (want_max && (int64_t(cmax.shape(0)) != m || int64_t(cmax.shape(1)) < (ncols + 31) / 32))
        throw std::invalid_argument("cmax must have the rows of A and one column per 32 columns of C");
    if (int64_t(rs.shape(0)) < m || int64_t(cs.shape(0)) < col0 + ncols)
        throw std::invalid_argument("one scale per row of A and per column of B");
    const int64_t need = (col0 + packed_rows(ncols)) * dp;
    if (int64_t(b.shape(0)) < need) throw std::invalid_argument("packed B holds fewer columns than asked for");
    void (*fn)(const GemmI16&, int64_t, int64_t) = gemm_i16_portable;
    if (kernel == "avx512vnni") {
        if (!have_avx512vnni_build()) throw std::invalid_argument("this build has no avx512vnni kernel");
        fn = gemm_avx512vnni;
    } else if (kernel == "avx2") {
        if (!have_avx2_build()) throw std::invalid_argument("this build has no avx2 kernel");
        fn = gemm_i16_avx2;
    } else if (kernel != "portable") {
        throw std::invalid_argument("unknown int16 kernel '" + kernel + "': expected avx512vnni, avx2 or portable");
    }
    if (m == 0 || ncols == 0) return;
    GemmI16 g{a.data(), dp, m, b.data() + col0 * dp, ncols, dp, c.data(), int64_t(c.shape(1)), rs.data(),
              cs.data() + col0, want_max ? cmax.data() : nullptr, want_max ? int64_t(cmax.shape(1)) : 0};
    nb::gil_scoped_release nogil;
    parallel_rows(m, 32, threads, [&](int64_t r0, int64_t r1) { fn(g, r0, r1); });
}

// ---------------------------------------------------------------- GEMM
void gemm(const std::string& kernel, nb::ndarray<const uint16_t, nb::ndim<2>, nb::c_contig, nb::device::cpu> a,
          nb::ndarray<const uint16_t, nb::ndim<1>, nb::c_contig, nb::device::cpu> b, int64_t col0, int64_t ncols,
          nb::ndarray<float, nb::ndim<2>, nb::c_contig, nb::device::cpu> c, int threads) {
    const int64_t m = a.shape(0), dp = a.shape(1);
    if (dp % 32) throw std::invalid_argument("A rows must be padded to a multiple of 32 values");
    if (col0 % 32 || col0 < 0) throw std::invalid_argument("col0 must be a non-negative multiple of 32");
    if (int64_t(c.shape(0)) != m || int64_t(c.shape(1)) < ncols)
        throw std::invalid_argument("C must have the rows of A and at least ncols columns");
    const int64_t need = (col0 + packed_rows(ncols)) * dp;
    if (int64_t(b.shape(0)) < need) throw std::invalid_argument("packed B holds fewer columns than asked for");
    void (*fn)(const Gemm&, int64_t, int64_t) = gemm_portable;
    if (kernel == "avx512bf16") {
        if (!have_avx512bf16_build()) throw std::invalid_argument("this build has no avx512bf16 kernel");
        fn = gemm_avx512bf16;
    } else if (kernel == "amx") {
        if (!have_amx_build()) throw std::invalid_argument("this build has no amx kernel");
        fn = gemm_amx;
    } else if (kernel != "portable") {
        throw std::invalid_argument("unknown kernel '" + kernel + "': expected amx, avx512bf16 or portable");
    }
    if (m == 0 || ncols == 0) return;
    Gemm g{a.data(), dp, m, b.data() + col0 * dp, ncols, dp, c.data(), int64_t(c.shape(1))};
    nb::gil_scoped_release nogil;
    parallel_rows(m, 32, threads, [&](int64_t r0, int64_t r1) { fn(g, r0, r1); });
}

}  // namespace
}  // namespace lk

NB_MODULE(_native, m) {
    using namespace lk;
    m.attr("ABI") = ABI;
    m.def("cpu_features", []() {
        const Features f = detect();
        nb::dict d;
        d["avx2"] = f.avx2;
        d["fma"] = f.fma;
        d["avx512f"] = f.avx512f;
        d["avx512bw"] = f.avx512bw;
        d["avx512vl"] = f.avx512vl;
        d["avx512bf16"] = f.avx512bf16;
        d["avx512vnni"] = f.avx512vnni;
        d["amx_tile"] = f.amx_tile;
        d["amx_bf16"] = f.amx_bf16;
        d["os_avx512"] = f.os_avx512;
        d["os_amx"] = f.os_amx;
        return d;
    });
    m.def("compiled_kernels", []() {
        nb::list out;
        if (have_amx_build()) out.append("amx");
        if (have_avx512bf16_build()) out.append("avx512bf16");
        if (have_avx512vnni_build()) out.append("avx512vnni");
        if (have_avx2_build()) out.append("avx2");
        out.append("portable");
        return out;
    });
    m.def("amx_request", &amx_request, "ask Linux for the AMX tile state (arch_prctl); True when granted");
    m.def("convert_f16", [](Mat<uint16_t> src, Out16 dst, OutF64 nx, OutF64 nh, OutF64 nr, int layout, bool ftz, int threads) {
        convert_any(src, dst, nx, nh, nr, layout, ftz, threads, [](uint16_t v) { return double(half_to_float(v)); });
    }, "src"_a, "dst"_a, "nx"_a, "nhat"_a, "nres"_a, "layout"_a, "ftz"_a, "threads"_a, nb::call_guard<nb::gil_scoped_release>());
    m.def("convert_f32", [](Mat<float> src, Out16 dst, OutF64 nx, OutF64 nh, OutF64 nr, int layout, bool ftz, int threads) {
        convert_any(src, dst, nx, nh, nr, layout, ftz, threads, [](float v) { return double(v); });
    }, "src"_a, "dst"_a, "nx"_a, "nhat"_a, "nres"_a, "layout"_a, "ftz"_a, "threads"_a, nb::call_guard<nb::gil_scoped_release>());
    m.def("convert_f64", [](Mat<double> src, Out16 dst, OutF64 nx, OutF64 nh, OutF64 nr, int layout, bool ftz, int threads) {
        convert_any(src, dst, nx, nh, nr, layout, ftz, threads, [](double v) { return v; });
    }, "src"_a, "dst"_a, "nx"_a, "nhat"_a, "nres"_a, "layout"_a, "ftz"_a, "threads"_a, nb::call_guard<nb::gil_scoped_release>());
    m.def("quantize_f16", [](Mat<uint16_t> src, Out16s dst, OutF64 nx, OutF64 nh, OutF64 nr, OutI32 ex, OutF32 sc, int layout, int threads) {
        const float* lut = half_table();
        quantize_any(src, dst, nx, nh, nr, ex, sc, layout, threads, [lut](uint16_t v) { return double(lut[v]); });
    }, "src"_a, "dst"_a, "nx"_a, "nhat"_a, "nres"_a, "exp"_a, "scale"_a, "layout"_a, "threads"_a, nb::call_guard<nb::gil_scoped_release>());
    m.def("quantize_f32", [](Mat<float> src, Out16s dst, OutF64 nx, OutF64 nh, OutF64 nr, OutI32 ex, OutF32 sc, int layout, int threads) {
        quantize_any(src, dst, nx, nh, nr, ex, sc, layout, threads, [](float v) { return double(v); });
    }, "src"_a, "dst"_a, "nx"_a, "nhat"_a, "nres"_a, "exp"_a, "scale"_a, "layout"_a, "threads"_a, nb::call_guard<nb::gil_scoped_release>());
    m.def("quantize_f64", [](Mat<double> src, Out16s dst, OutF64 nx, OutF64 nh, OutF64 nr, OutI32 ex, OutF32 sc, int layout, int threads) {
        quantize_any(src, dst, nx, nh, nr, ex, sc, layout, threads, [](double v) { return v; });
    }, "src"_a, "dst"_a, "nx"_a, "nhat"_a, "nres"_a, "exp"_a, "scale"_a, "layout"_a, "threads"_a, nb::call_guard<nb::gil_scoped_release>());
    m.def("gemm_i16", &gemm_i16, "kernel"_a, "a"_a, "rs"_a, "b"_a, "cs"_a, "col0"_a, "ncols"_a, "c"_a, "threads"_a, "cmax"_a);
    register_ivf(m);  // laionknn-ivfgemm kernels (ivf_module.cpp)
    m.def("gemm_bf16", &gemm, "kernel"_a, "a"_a, "b"_a, "col0"_a, "ncols"_a, "c"_a, "threads"_a);
}
