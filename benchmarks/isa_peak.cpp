// Peak throughput of the three multiply-add instructions the exact engine's filters can use, on
// registers only (independent accumulator chains, no memory traffic): float32 FMA (vfmadd zmm),
// bf16 dot (vdpbf16ps zmm) and int16 dot (vpdpwssd zmm). One thread.
//
//     g++ -O2 -mavx512f -mavx512bw -mavx512vl -mavx512bf16 -mavx512vnni benchmarks/isa_peak.cpp -o /tmp/isa_peak
//     flock /work/bench/lock /tmp/isa_peak
#include <immintrin.h>

#include <chrono>
#include <cstdio>

template <class F>
double seconds(F f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int main() {
    constexpr int C = 24;  // independent chains (more than latency x throughput for all three)
    const long n = 50000000;
    __m512 f[C];
    __m512 h[C];
    __m512i w[C];
    for (int i = 0; i < C; ++i) {
        f[i] = _mm512_set1_ps(0.f);
        h[i] = _mm512_set1_ps(0.f);
        w[i] = _mm512_set1_epi32(i);
    }
    __m512 x = _mm512_set1_ps(1e-9f), y = _mm512_set1_ps(1.f);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80);
    __m512i p = _mm512_set1_epi32(0x00010001), q = _mm512_set1_epi32(0x00020002);
    const double tf = seconds([&] {
        for (long k = 0; k < n; ++k) {
#pragma GCC unroll 24
            for (int i = 0; i < C; ++i) f[i] = _mm512_fmadd_ps(f[i], x, y);
            asm volatile("" : "+v"(x));
        }
    });
    const double tb = seconds([&] {
        for (long k = 0; k < n; ++k) {
#pragma GCC unroll 24
            for (int i = 0; i < C; ++i) h[i] = _mm512_dpbf16_ps(h[i], a, a);
            asm volatile("" : "+v"(a));
        }
    });
    const double ti = seconds([&] {
        for (long k = 0; k < n; ++k) {
#pragma GCC unroll 24
            for (int i = 0; i < C; ++i) w[i] = _mm512_dpwssd_epi32(w[i], p, q);
            asm volatile("" : "+v"(p));
        }
    });
    float r = 0;
    long s = 0;
    for (int i = 0; i < C; ++i) {
        r += _mm512_reduce_add_ps(f[i]) + _mm512_reduce_add_ps(h[i]);
        s += _mm512_reduce_add_epi32(w[i]);
    }
    const double ops = double(C) * n;
    std::printf("vfmadd231ps zmm: %.2f /ns  %.1f GFLOP/s (32 per instruction)\n", ops / tf / 1e9, ops * 32 / tf / 1e9);
    std::printf("vdpbf16ps   zmm: %.2f /ns  %.1f GFLOP/s (64 per instruction)\n", ops / tb / 1e9, ops * 64 / tb / 1e9);
    std::printf("vpdpwssd    zmm: %.2f /ns  %.1f Gop/s   (64 per instruction)\n", ops / ti / 1e9, ops * 64 / ti / 1e9);
    std::printf("(checksum %g %ld)\n", r, s);
}
