// Helpers shared by the int16 GEMM kernels (gemm_avx512vnni.cpp, gemm_avx2.cpp). Everything has
// internal linkage (anonymous namespace) so that each kernel file gets its own copy compiled with its
// own instruction set (see ivf_common.h for why that matters).
#pragma once
#include <cstring>
#include <vector>

#include "kernels.h"

namespace lk {
namespace {

// a file-local allocator, so that the std::vector below is a type of this file's own (an std::vector of
// std types only would be one COMDAT symbol shared by the kernel files, and the linker could hand the
// AVX2 kernel the AVX-512 copy)
template <class T>
struct GemmAlloc {
    using value_type = T;
    GemmAlloc() = default;
    template <class U>
    GemmAlloc(const GemmAlloc<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
    void deallocate(T* p, size_t) { ::operator delete(p); }
    template <class U>
    bool operator==(const GemmAlloc<U>&) const { return true; }
    template <class U>
    bool operator!=(const GemmAlloc<U>&) const { return false; }
};

// pack rows [r, r + nr) of A (nr <= MR) into ap[p][MR] k-pairs (int32 each), zero rows past nr: the MR
// broadcasts of one k-pair then come from one cache line
template <int MR>
inline void pack_a_pairs(const GemmI16& g, int64_t r, int nr, int32_t* ap) {
    const int64_t d2 = g.dp / 2;
    for (int i = 0; i < MR; ++i) {
        if (i < nr) {
            const int16_t* arow = g.a + (r + i) * g.lda;
            for (int64_t p = 0; p < d2; ++p) std::memcpy(ap + p * MR + i, arow + 2 * p, 4);
        } else {
            for (int64_t p = 0; p < d2; ++p) ap[p * MR + i] = 0;
        }
    }
}

// rows [r0, r1) of C: MC rows of A packed at a time (kept in L2 while every pair of packed panels of B
// streams by), then block(r, nr, packed A, panel p0, panel p1, col0) for each MR-row block and each
// 32-column group
template <int MR, int64_t MC, class Block>
inline void i16_blocks(const GemmI16& g, int64_t r0, int64_t r1, Block&& block) {
    const int64_t npair = (g.ncols + 31) / 32;
    const int64_t d2 = g.dp / 2;
    constexpr int64_t NB = (MC + MR - 1) / MR;
    std::vector<int32_t, GemmAlloc<int32_t>> abuf(size_t(NB * d2 * MR));
    for (int64_t rb = r0; rb < r1; rb += MC) {
        const int64_t re = rb + MC < r1 ? rb + MC : r1;
        int64_t nblk = 0;
        for (int64_t r = rb; r < re; r += MR, ++nblk)
            pack_a_pairs<MR>(g, r, int(re - r < MR ? re - r : MR), abuf.data() + nblk * d2 * MR);
        for (int64_t q = 0; q < npair; ++q) {
            const int16_t* p0 = g.b + (2 * q) * panel_elems(g.dp);
            const int16_t* p1 = p0 + panel_elems(g.dp);
            int64_t blk = 0;
            for (int64_t r = rb; r < re; r += MR, ++blk)
                block(r, int(re - r < MR ? re - r : MR), abuf.data() + blk * d2 * MR, p0, p1, q * 32);
        }
    }
}

}  // namespace
}  // namespace lk
