"""bf16 and int16 GEMM kernels of laionknn._native against float32 sgemm on the exact engine's score tile.

    PYTHONPATH=src python benchmarks/bf16_gemm.py --m 4096 --n 1024 --d 768 --repeats 7 --threads 1,2

One row per (kernel, threads): median seconds of ``C = A @ B.T`` (A m x d queries, B n x d rows),
GFLOP/s (2 m n d / s) and the ratio to numpy's float32 matmul (sgemm) measured in the same run.
The bf16 kernels (``bf16:<kernel>``) and the int16 kernels (``int16:<kernel>``) start from prepared
operands (queries converted once, rows packed once per block).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from threadpoolctl import threadpool_limits  # noqa: E402

from laionknn import native  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.m, args.d)).astype(np.float32)
    b = rng.standard_normal((args.n, args.d)).astype(np.float32)
    q, p = native.prepare_queries(a), native.pack_rows(b)
    qi, pi = native.quantize_queries(a), native.quantize_rows(b)
    out = np.empty((args.m, args.n), dtype=np.float32)
    flop = 2.0 * args.m * args.n * args.d
    print(f"features: {native.features()}")
    print(f"{'kernel':<17} {'threads':>7} {'seconds':>9} {'GFLOP/s':>8} {'vs sgemm':>8}")
    for t in [int(v) for v in args.threads.split(",")]:
        with threadpool_limits(limits=t):
            base = median_time(lambda: np.matmul(a, b.T, out=out), args.repeats)
        print(f"{'sgemm':<17} {t:>7} {base:>9.4f} {flop / base / 1e9:>8.1f} {1.0:>8.2f}")
        for name in native.available_kernels():
            s = median_time(lambda name=name: native.gemm_bf16(q.a, p, out, threads=t, kernel_name=name), args.repeats)
            print(f"{'bf16:' + name:<17} {t:>7} {s:>9.4f} {flop / s / 1e9:>8.1f} {base / s:>8.2f}")
        for name in native.int16_kernels():
            s = median_time(lambda name=name: native.gemm_i16(qi, pi, out, threads=t, kernel_name=name), args.repeats)
            print(f"{'int16:' + name:<17} {t:>7} {s:>9.4f} {flop / s / 1e9:>8.1f} {base / s:>8.2f}")


if __name__ == "__main__":
    main()
