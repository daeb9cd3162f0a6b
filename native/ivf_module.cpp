// Python bindings of the ivf kernels (ivf.h) for laionknn's own index, registered into laionknn._native
// by module.cpp (register_ivf). The kernel is named by the caller ("avx512", "avx2" or "portable"), who asks
// ivf_cpu() what the CPU and OS offer (laionknn/indexes/ivfgemm_native.py); queries are split into
// `threads` contiguous ranges, one std::thread each, with the GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define LK_IVF_X86 1
#endif

#include "ivf.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace lk {
namespace {

template <class T, int D>
using Arr = nb::ndarray<T, nb::ndim<D>, nb::c_contig, nb::device::cpu>;

nb::dict ivf_cpu() {
    bool f = false, bw = false, vl = false, vnni = false, os = false;
    bool avx2 = false, fma = false, f16c = false, os_avx = false;
#if LK_IVF_X86
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d) && ((c >> 27) & 1)) {
        fma = (c >> 12) & 1;
        f16c = (c >> 29) & 1;
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        os_avx = (lo & 0x6) == 0x6;  // SSE, AVX (ymm) state
        os = (lo & 0xE6) == 0xE6;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        avx2 = (b >> 5) & 1;
        f = (b >> 16) & 1;
        bw = (b >> 30) & 1;
        vl = (b >> 31) & 1;
        vnni = (c >> 11) & 1;
    }
#endif
    nb::dict out;
    out["avx512f"] = f;
    out["avx512bw"] = bw;
    out["avx512vl"] = vl;
    out["avx512vnni"] = vnni;
    out["os_avx512"] = os;
    out["avx2"] = avx2;
    out["fma"] = fma;
    out["f16c"] = f16c;
    out["os_avx"] = os_avx;
    return out;
}

template <class F>
void split(int64_t n, int threads, F&& body) {
    int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, n));
    if (parts <= 1) {
        body(int64_t(0), n);
        return;
    }
    std::vector<std::thread> pool;
    for (int64_t t = 1; t < parts; ++t) pool.emplace_back(body, n * t / parts, n * (t + 1) / parts);
    body(int64_t(0), n / parts);
    for (auto& th : pool) th.join();
}

enum class Kind { portable, avx2, avx512 };

Kind kind_of(const std::string& kernel) {
    if (kernel == "avx512") {
        if (!have_ivf_avx512_build()) throw std::invalid_argument("this build has no avx512 ivf kernel");
        return Kind::avx512;
    }
    if (kernel == "avx2") {
        if (!have_ivf_avx2_build()) throw std::invalid_argument("this build has no avx2 ivf kernel");
        return Kind::avx2;
    }
    if (kernel != "portable")
        throw std::invalid_argument("unknown ivf kernel '" + kernel + "': expected avx512, avx2 or portable");
    return Kind::portable;
}

void scan(const std::string& kernel, Arr<const uint8_t, 1> codes, int64_t steps, bool four_bit,
          Arr<const int64_t, 1> list_panel, Arr<const int64_t, 1> list_row, Arr<const int8_t, 2> qcodes,
          Arr<const float, 1> qscale, Arr<const int64_t, 1> visit_list, Arr<const int64_t, 1> visit_ptr,
          Arr<const int32_t, 1> pair_q, Arr<const float, 1> pair_base, int64_t cands, Arr<int64_t, 2> out_pos,
          Arr<float, 2> out_est, int threads) {
    const Kind kind = kind_of(kernel);
    const int64_t nlist = list_panel.shape(0), nq = qcodes.shape(0), nvisit = visit_list.shape(0);
    const int64_t dims = four_bit ? steps * 8 : steps * 4;
    if (steps < 1 || int64_t(qcodes.shape(1)) < dims)
        throw std::invalid_argument("query codes must hold " + std::to_string(dims) + " values a row");
    if (int64_t(list_row.shape(0)) != nlist + 1) throw std::invalid_argument("list_row must hold nlist + 1 offsets");
    if (int64_t(qscale.shape(0)) != nq) throw std::invalid_argument("qscale must hold one value per query");
    if (int64_t(visit_ptr.shape(0)) != nvisit + 1) throw std::invalid_argument("visit_ptr must hold nvisit + 1 offsets");
    const int64_t npairs = pair_q.shape(0);
    if (int64_t(pair_base.shape(0)) != npairs) throw std::invalid_argument("pair_base must match pair_q");
    if (cands < 1) throw std::invalid_argument("cands must be >= 1");
    if (int64_t(out_pos.shape(0)) != nq || int64_t(out_pos.shape(1)) != cands || int64_t(out_est.shape(0)) != nq ||
        int64_t(out_est.shape(1)) != cands)
        throw std::invalid_argument("out_pos and out_est must be (nq, cands)");
    const int64_t panel_bytes = steps * 64, npanels = int64_t(codes.shape(0)) / panel_bytes;
    const int64_t* lp = list_panel.data();
    const int64_t* lr = list_row.data();
    if (lr[nlist] >= (int64_t(1) << 31)) throw std::invalid_argument("more than 2^31 rows");
    for (int64_t v = 0; v < nvisit; ++v) {
        const int64_t l = visit_list.data()[v];
        if (l < 0 || l >= nlist) throw std::invalid_argument("visit_list names a list out of range");
        const int64_t nr = lr[l + 1] - lr[l];
        if (nr < 0 || lp[l] < 0 || lp[l] + (nr + 15) / 16 + 4 > npanels)
            throw std::invalid_argument("a visited list lies outside the code array (4 zero panels must end it)");
        const int64_t a = visit_ptr.data()[v], b = visit_ptr.data()[v + 1];
        if (a < 0 || b < a || b > npairs) throw std::invalid_argument("visit_ptr out of range");
        for (int64_t p = a; p < b; ++p) {
            const int32_t q = pair_q.data()[p];
            if (q < 0 || q >= nq || (p > a && q <= pair_q.data()[p - 1]))
                throw std::invalid_argument("pair_q must hold query rows in range, ascending within a visit");
        }
    }
    IvfScan s{codes.data(), steps, four_bit, lp, lr, qcodes.data(), int64_t(qcodes.shape(1)), qscale.data(),
              nvisit, visit_list.data(), visit_ptr.data(), pair_q.data(), pair_base.data(), nq, cands,
              out_pos.data(), out_est.data()};
    nb::gil_scoped_release nogil;
    split(nq, threads, [&](int64_t q0, int64_t q1) {
        if (kind == Kind::avx512)
            ivf_scan_avx512(s, q0, q1);
        else if (kind == Kind::avx2)
            ivf_scan_avx2(s, q0, q1);
        else
            ivf_scan_portable(s, q0, q1);
    });
}

void rerank(const std::string& kernel, Arr<const uint16_t, 2> orig, Arr<const float, 1> inv_norm,
            Arr<const float, 2> queries, Arr<const int64_t, 2> cand, int64_t k, Arr<int64_t, 2> out_pos,
            Arr<float, 2> out_sim, int threads) {
    const Kind kind = kind_of(kernel);
    const int64_t n = orig.shape(0), dim = orig.shape(1), nq = queries.shape(0), C = cand.shape(1);
    if (int64_t(queries.shape(1)) != dim) throw std::invalid_argument("queries and originals differ in dimension");
    if (int64_t(inv_norm.shape(0)) != n) throw std::invalid_argument("inv_norm must hold one value per row");
    if (int64_t(cand.shape(0)) != nq) throw std::invalid_argument("cand must hold one row per query");
    if (k < 1 || int64_t(out_pos.shape(0)) != nq || int64_t(out_pos.shape(1)) != k || int64_t(out_sim.shape(0)) != nq ||
        int64_t(out_sim.shape(1)) != k)
        throw std::invalid_argument("out_pos and out_sim must be (nq, k)");
    const int64_t* c = cand.data();
    for (int64_t i = 0; i < nq * C; ++i)
        if (c[i] >= n) throw std::invalid_argument("a candidate position is out of range");
    IvfRerank r{orig.data(), inv_norm.data(), queries.data(), dim, c, C, k, out_pos.data(), out_sim.data()};
    nb::gil_scoped_release nogil;
    split(nq, threads, [&](int64_t q0, int64_t q1) {
        if (kind == Kind::avx512)
            ivf_rerank_avx512(r, q0, q1);
        else if (kind == Kind::avx2)
            ivf_rerank_avx2(r, q0, q1);
        else
            ivf_rerank_portable(r, q0, q1);
    });
}

}  // namespace

void register_ivf(nb::module_& m) {
    m.def("ivf_cpu", &ivf_cpu, "AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C flags (CPUID) and whether the OS saves the zmm / ymm state");
    m.def("ivf_kernels", []() {
        nb::list out;
        if (have_ivf_avx512_build()) out.append("avx512");
        if (have_ivf_avx2_build()) out.append("avx2");
        out.append("portable");
        return out;
    });
    m.def("ivf_scan", &scan, "kernel"_a, "codes"_a, "steps"_a, "four_bit"_a, "list_panel"_a, "list_row"_a,
          "qcodes"_a, "qscale"_a, "visit_list"_a, "visit_ptr"_a, "pair_q"_a, "pair_base"_a, "cands"_a, "out_pos"_a,
          "out_est"_a, "threads"_a);
    m.def("ivf_rerank", &rerank, "kernel"_a, "orig"_a, "inv_norm"_a, "queries"_a, "cand"_a, "k"_a, "out_pos"_a,
          "out_sim"_a, "threads"_a);
}

}  // namespace lk
