"""Throughput of the projections area, with faiss measured in the same run.

Prints a table: PCA fit rows/s, PCA projection rows/s, BinWalk and learned-sketch encoding rows/s,
brute-force Hamming (1024 bits) and pca32 L2 query time for NQ queries over N rows, against faiss
IndexBinaryFlat and IndexFlatL2 on the same data and threads. Each timed step runs ``--repeats``
times, alternating ours and faiss; medians are quoted.

    PYTHONPATH=src python benchmarks/projections.py --rows 1000000 --queries 10000
    PYTHONPATH=src python benchmarks/projections.py --rows 200000 --queries 1000   # quick
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--encode-rows", type=int, default=100_000, help="rows for the fit/encoding throughput")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", default="encode,hamming,l2",
                    help="comma-separated subset of encode (fit and encoding rates), hamming, l2 (default: all)")
    args = ap.parse_args()
    steps = set(args.steps.split(","))
    if not steps <= {"encode", "hamming", "l2"}:
        ap.error(f"--steps takes encode, hamming and/or l2, got {args.steps!r}")

    import faiss
    import numba

    rows: list[tuple[str, str]] = []
    threads = numba.get_num_threads()
    faiss.omp_set_num_threads(threads)
    if "encode" in steps:
        encode_rates(args, rows)
    rng = np.random.default_rng(0)
    if "hamming" in steps:
        hamming_vs_faiss(args, rows, rng)
    if "l2" in steps:
        l2_vs_faiss(args, rows, rng)

    print(f"threads: numba {threads}, faiss {threads}; medians of {args.repeats}")
    print(f"| {'step':<62} | {'median':<34} |")
    print(f"|{'-' * 64}|{'-' * 36}|")
    for name, value in rows:
        print(f"| {name:<62} | {value:<34} |")


def encode_rates(args, rows) -> None:
    from laionknn.projections import binwalk, pca, sketches
    from laionknn.synthetic import generate_database

    x = generate_database(args.encode_rows, seed=1)
    t, model = _time(lambda: pca.fit_pca(x, 32), args.repeats)
    rows.append(("PCA fit (768→32, float64 covariance)", f"{len(x) / t:,.0f} rows/s"))
    t, _ = _time(lambda: model.transform(x), args.repeats)
    rows.append(("PCA projection (pca32)", f"{len(x) / t:,.0f} rows/s"))
    t, _ = _time(lambda: binwalk.encode(x), args.repeats)
    rows.append(("BinWalk encoding (1024 bits)", f"{len(x) / t:,.0f} rows/s"))
    sk = sketches.fit_sketch(x, 1024, "cfsrp", fit_rows=20_000)
    t, _ = _time(lambda: sk.encode(x), args.repeats)
    rows.append(("learned sketch encoding (1024 bits)", f"{len(x) / t:,.0f} rows/s"))


def hamming_vs_faiss(args, rows, rng) -> None:
    import faiss

    from laionknn.projections import kernels

    xb_h = rng.integers(0, 2**63, size=(args.rows, 16), dtype=np.uint64)
    xq_h = rng.integers(0, 2**63, size=(args.queries, 16), dtype=np.uint64)
    kernels.hamming_knn(xb_h[:1000], xq_h[:10], args.k)                     # compile / warm up
    fb = faiss.IndexBinaryFlat(1024)
    fb.add(xb_h.view(np.uint8))
    ours, theirs = [], []
    for _ in range(args.repeats):                                            # alternate A/B
        t0 = time.perf_counter(); kernels.hamming_knn(xb_h, xq_h, args.k); ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); fb.search(xq_h.view(np.uint8), args.k); theirs.append(time.perf_counter() - t0)
    a, b = statistics.median(ours), statistics.median(theirs)
    rows.append((f"Hamming brute force {args.queries}×{args.rows} (ours, exact ties)", f"{a:.2f} s"))
    rows.append(("  faiss IndexBinaryFlat (same run)", f"{b:.2f} s  (ours/faiss {a / b:.2f}×)"))


def l2_vs_faiss(args, rows, rng) -> None:
    import faiss

    from laionknn.projections import kernels

    xb_f = rng.standard_normal((args.rows, 32)).astype(np.float32)
    xq_f = rng.standard_normal((args.queries, 32)).astype(np.float32)
    kernels.l2_knn(xb_f[:1000], xq_f[:10], args.k)
    fl = faiss.IndexFlatL2(32)
    fl.add(xb_f)
    ours, theirs = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter(); kernels.l2_knn(xb_f, xq_f, args.k); ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); fl.search(xq_f, args.k); theirs.append(time.perf_counter() - t0)
    a, b = statistics.median(ours), statistics.median(theirs)
    rows.append((f"pca32 L2 brute force {args.queries}×{args.rows} (ours, float64 sums)", f"{a:.2f} s"))
    rows.append(("  faiss IndexFlatL2 (float32, same run)", f"{b:.2f} s  (ours/faiss {a / b:.2f}×)"))


if __name__ == "__main__":
    main()
