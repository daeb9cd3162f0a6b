// Helpers shared by the two builds of the ivf kernels (ivf_portable.cpp, ivf_avx512.cpp). Everything
// here has internal linkage (anonymous namespace): each file gets its own copy compiled with its own
// instruction set, so the linker can never hand the portable build an AVX-512 copy.
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "ivf.h"

namespace lk {
namespace {

// Containers and algorithms here are instantiated with types local to this file (the allocator below,
// lambdas as comparators): an std:: template instantiated with only std types would be one COMDAT
// symbol shared by both builds, and the linker could hand the portable build the AVX-512 copy.
template <class T>
struct LocalAlloc {
    using value_type = T;
    LocalAlloc() = default;
    template <class U>
    LocalAlloc(const LocalAlloc<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
    void deallocate(T* p, size_t) { ::operator delete(p); }
    template <class U>
    bool operator==(const LocalAlloc<U>&) const { return true; }
    template <class U>
    bool operator!=(const LocalAlloc<U>&) const { return false; }
};
template <class T>
using Vec = std::vector<T, LocalAlloc<T>>;

// Per-query candidate buffers of one thread: up to `cap` (estimate, position) entries per query, all
// above the query's threshold; when a buffer fills, the best C are kept and the threshold becomes the
// C-th best estimate (so a row enters only if it beats C rows already seen).
//
// Select::kth(values, n, C, scratch) returns the C-th largest of values[0..n) (each build brings its own:
// std::nth_element in the portable one, a vectorised bisection in the AVX-512 one).
template <class Select>
struct Candidates {
    int64_t q0, nq, C, cap;
    Vec<float> v;
    Vec<int32_t> p;
    Vec<int64_t> cnt;
    Vec<float> thr;
    Vec<float> fscratch;

    Candidates(int64_t q0_, int64_t q1, int64_t C_)
        : q0(q0_), nq(q1 - q0_), C(C_), cap(4 * C_ + 64), v(size_t(nq * cap)), p(size_t(nq * cap)),
          cnt(size_t(nq), 0), thr(size_t(nq), -std::numeric_limits<float>::infinity()), fscratch(size_t(cap)) {}

    // keep the best C of query slot i (its count > C): the C-th best value by a selection on the values
    // alone, then the entries above it and, in buffer order, as many equal to it as fit
    void shrink(int64_t i) {
        float* vv = v.data() + i * cap;
        int32_t* pp = p.data() + i * cap;
        const int64_t n = cnt[i];
        const float t = Select::kth(vv, n, C, fscratch.data());
        int64_t above = 0;
        for (int64_t j = 0; j < n; ++j) above += vv[j] > t;
        int64_t ties = C - above, w = 0;
        for (int64_t j = 0; j < n; ++j) {
            if (vv[j] > t || (vv[j] == t && ties-- > 0)) {
                vv[w] = vv[j];
                pp[w] = pp[j];
                ++w;
            }
        }
        cnt[i] = C;
        thr[i] = t;
    }

    // after a push of up to 16: make room for the next 16
    inline void room(int64_t i) {
        if (cnt[i] > cap - 16) shrink(i);
    }

    void push(int64_t i, float est, int32_t pos) {
        v[i * cap + cnt[i]] = est;
        p[i * cap + cnt[i]] = pos;
        ++cnt[i];
        room(i);
    }

    void write(const IvfScan& s) {
        for (int64_t i = 0; i < nq; ++i) {
            if (cnt[i] > C) shrink(i);
            int64_t* op = s.out_pos + (q0 + i) * C;
            float* oe = s.out_est + (q0 + i) * C;
            for (int64_t j = 0; j < C; ++j) {
                if (j < cnt[i]) {
                    op[j] = p[i * cap + j];
                    oe[j] = v[i * cap + j];
                } else {
                    op[j] = -1;
                    oe[j] = -std::numeric_limits<float>::infinity();
                }
            }
        }
    }
};

// the pairs [a, b) of a visit whose query lies in [q0, q1)
inline std::pair<int64_t, int64_t> pairs_in(const IvfScan& s, int64_t v, int64_t q0, int64_t q1) {
    const int32_t* lo = s.pair_q + s.visit_ptr[v];
    const int32_t* hi = s.pair_q + s.visit_ptr[v + 1];
    auto less = [](int32_t x, int32_t y) { return x < y; };
    const int32_t* a = std::lower_bound(lo, hi, int32_t(q0), less);
    const int32_t* b = std::lower_bound(a, hi, int32_t(q1), less);
    return {a - s.pair_q, b - s.pair_q};
}

// Running top k of exact similarities (sorted best first, ties to the lower position).
struct TopK {
    int64_t k, n = 0;
    float* v;
    int64_t* p;
    TopK(int64_t k_, float* v_, int64_t* p_) : k(k_), v(v_), p(p_) {}
    inline float floor() const { return n < k ? -std::numeric_limits<float>::infinity() : v[k - 1]; }
    inline void add(float s, int64_t pos) {
        if (n == k && !(s > v[k - 1])) return;
        int64_t j = n < k ? n++ : k - 1;
        while (j > 0 && (v[j - 1] < s)) {
            v[j] = v[j - 1];
            p[j] = p[j - 1];
            --j;
        }
        v[j] = s;
        p[j] = pos;
    }
    void finish() {
        for (int64_t j = n; j < k; ++j) {
            v[j] = -std::numeric_limits<float>::infinity();
            p[j] = -1;
        }
    }
};

// the valid candidates of query q, ascending (rows of one list are adjacent in memory)
inline int64_t sorted_cands(const IvfRerank& r, int64_t q, Vec<int64_t>& out) {
    out.clear();
    const int64_t* c = r.cand + q * r.cands;
    for (int64_t j = 0; j < r.cands; ++j)
        if (c[j] >= 0) out.push_back(c[j]);
    std::sort(out.begin(), out.end(), [](int64_t x, int64_t y) { return x < y; });
    return int64_t(out.size());
}

// the cache lines of one float16 row, asked for ahead of use (a GCC/Clang builtin: every build has it)
inline void prefetch_row(const uint16_t* x, int64_t bytes) {
    const char* c = reinterpret_cast<const char*>(x);
    for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 3);
}

// the exact re-rank of queries [q0, q1): each query's candidates in ascending position, scored by
// dot(query, row) * inv_norm, the rows `ahead` candidates further on handed to prefetch(row, bytes)
// while the current one is scored (the SIMD builds pass their own dot product and prefetch)
template <class Dot, class Prefetch>
inline void rerank_rows(const IvfRerank& r, int64_t q0, int64_t q1, int64_t ahead, Dot&& dot, Prefetch&& prefetch) {
    Vec<int64_t> mine;
    const int64_t bytes = r.dim * 2;
    for (int64_t q = q0; q < q1; ++q) {
        TopK top(r.k, r.out_sim + q * r.k, r.out_pos + q * r.k);
        const float* qv = r.queries + q * r.dim;
        const int64_t nc = sorted_cands(r, q, mine);
        for (int64_t c = 0; c < std::min<int64_t>(ahead, nc); ++c) prefetch(r.orig + mine[c] * r.dim, bytes);
        for (int64_t c = 0; c < nc; ++c) {
            if (c + ahead < nc) prefetch(r.orig + mine[c + ahead] * r.dim, bytes);
            top.add(dot(qv, r.orig + mine[c] * r.dim, r.dim) * r.inv_norm[mine[c]], mine[c]);
        }
        top.finish();
    }
}

}  // namespace
}  // namespace lk
