// Peak throughput of the three multiply-add instructions the exact engine's filters can use, on
// registers only (independent accumulator chains, no memory traffic): float32 FMA (vfmadd zmm),
// bf16 dot (vdpbf16ps zmm) and int16 dot (vpdpwssd zmm). One thread.
//
//     g++ -O2 -mavx512f -mavx512bw -mavx512vl -mavx512bf16 -mavx512vnni benchmarks/isa_peak.cpp -o /tmp/isa_peak
//     flock /work/bench/lock /tmp/isa_peak
#include <immintrin.h>

#include <chrono>
#include <cstdio>

constexpr int C = 16;  // independent chains (more than latency x throughput for all three; 24 make GCC spill)
constexpr long N = 50000000;

// one function per instruction, plain loops, so that only its 16 accumulators are live and stay in
// registers (with all three sets live, or captured by a lambda, GCC spills them to the stack)
__attribute__((noinline)) float run_fma(double* sec) {
    __m512 f[C];
    for (int i = 0; i < C; ++i) f[i] = _mm512_set1_ps(0.f);
    __m512 x = _mm512_set1_ps(1e-9f), y = _mm512_set1_ps(1.f);
    const auto t0 = std::chrono::steady_clock::now();
    {
        for (long k = 0; k < N; ++k) {
#pragma GCC unroll 16
            for (int i = 0; i < C; ++i) f[i] = _mm512_fmadd_ps(f[i], x, y);
            asm volatile("" : "+v"(x));
        }
    }
    *sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    float r = 0;
    for (int i = 0; i < C; ++i) r += _mm512_reduce_add_ps(f[i]);
    return r;
}

__attribute__((noinline)) float run_bf16(double* sec) {
    __m512 h[C];
    for (int i = 0; i < C; ++i) h[i] = _mm512_set1_ps(0.f);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80);
    const auto t0 = std::chrono::steady_clock::now();
    {
        for (long k = 0; k < N; ++k) {
#pragma GCC unroll 16
            for (int i = 0; i < C; ++i) h[i] = _mm512_dpbf16_ps(h[i], a, a);
            asm volatile("" : "+v"(a));
        }
    }
    *sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    float r = 0;
    for (int i = 0; i < C; ++i) r += _mm512_reduce_add_ps(h[i]);
    return r;
}

__attribute__((noinline)) long run_i16(double* sec) {
    __m512i w[C];
    for (int i = 0; i < C; ++i) w[i] = _mm512_set1_epi32(i);
    __m512i p = _mm512_set1_epi32(0x00010001), q = _mm512_set1_epi32(0x00020002);
    const auto t0 = std::chrono::steady_clock::now();
    {
        for (long k = 0; k < N; ++k) {
#pragma GCC unroll 16
            for (int i = 0; i < C; ++i) w[i] = _mm512_dpwssd_epi32(w[i], p, q);
            asm volatile("" : "+v"(p));
        }
    }
    *sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    long s = 0;
    for (int i = 0; i < C; ++i) s += _mm512_reduce_add_epi32(w[i]);
    return s;
}

int main() {
    double tf, tb, ti;
    const float r = run_fma(&tf) + run_bf16(&tb);
    const long s = run_i16(&ti);
    const double ops = double(C) * N;
    std::printf("vfmadd231ps zmm: %.2f /ns  %.1f GFLOP/s (32 per instruction)\n", ops / tf / 1e9, ops * 32 / tf / 1e9);
    std::printf("vdpbf16ps   zmm: %.2f /ns  %.1f GFLOP/s (64 per instruction)\n", ops / tb / 1e9, ops * 64 / tb / 1e9);
    std::printf("vpdpwssd    zmm: %.2f /ns  %.1f Gop/s   (64 per instruction)\n", ops / ti / 1e9, ops * 64 / ti / 1e9);
    std::printf("(checksum %g %ld)\n", r, s);
}
