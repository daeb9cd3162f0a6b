"""Exact engine vs faiss IndexFlatIP (float32, not exact) vs numpy matmul + argpartition (float32, not
exact) vs numpy float64, same data, same run.

Data: LAION-like random vectors (normalised gaussian with a strong mean direction; float16 database,
float32 queries), cosine. Prints one table row per (size, k): medians over alternating repeats.

    PYTHONPATH=src python benchmarks/exact.py --sizes 300K,1M --ks 10,100,1000 --nq 2000 --repeats 3
    PYTHONPATH=src python benchmarks/exact.py --data twin --sizes 300K,1M --ks 10,100,1000 --nq 10000

``--data twin`` reads the v3 synthetic twins from the workspace (``synthetic-v3-clip768v2-n=<size>``
and ``synthetic-v3-queries-10k-clip768v2``, made by ``laionknn synth`` when missing).

Columns: seconds (median), effective GFLOP/s (2 nq n d / s), fraction of the float32 matmul rate
measured in this run (best of numpy and faiss's OpenBLAS sgemm), pairs rescored in float64, faiss
time and our/faiss ratio, numpy matmul + argpartition time and our/numpy ratio, numpy float64 time (on --nq-ref queries, scaled to nq) and whether our ids
equal the float64 reference on those queries (and how many ids faiss gets wrong there).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as laionknn.exact sets it; applies to faiss too

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from laionknn import native, progress  # noqa: E402
from laionknn.exact import knn  # noqa: E402
from laionknn.exact.blas import resolve_backend, sgemm_nt  # noqa: E402
from laionknn.types import parse_size  # noqa: E402


def size_name(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}K"


def cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def laion_like(n: int, dim: int, seed: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = np.random.default_rng(999).standard_normal(dim).astype(np.float32)
    mean *= 0.9 / np.linalg.norm(mean)
    out = np.empty((n, dim), dtype=dtype)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        x = rng.standard_normal((hi - lo, dim), dtype=np.float32) * (0.45 / np.sqrt(dim)) + mean
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def sgemm_rate(backend: str, nq: int = 4096, nb: int = 65536, dim: int = 768, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((nq, dim), dtype=np.float32)
    b = rng.standard_normal((nb, dim), dtype=np.float32)
    out = np.empty((nq, nb), np.float32)
    sgemm_nt(a, b, out, backend)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sgemm_nt(a, b, out, backend)
        times.append(time.perf_counter() - t)
    return 2 * nq * nb * dim / min(times) / 1e9


def numpy_topk(X: np.ndarray, Qn: np.ndarray, k: int, tile: int = 256) -> np.ndarray:
    """float32 ``Qn @ X.T`` per tile of queries, ``argpartition`` for the top k, then a sort of those k."""
    out = np.empty((Qn.shape[0], k), dtype=np.int64)
    s = np.empty((tile, X.shape[0]), dtype=np.float32)
    for q0 in range(0, Qn.shape[0], tile):
        q1 = min(Qn.shape[0], q0 + tile)
        t = s[: q1 - q0]
        np.matmul(Qn[q0:q1], X.T, out=t)
        part = np.argpartition(-t, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(t, part, 1), axis=1, kind="stable")
        out[q0:q1] = np.take_along_axis(part, order, 1)
    return out


def f64_reference(X, Q, k):
    Xn = X.astype(np.float64)
    Xn /= np.linalg.norm(Xn, axis=1, keepdims=True)
    Qn = Q.astype(np.float64)
    Qn /= np.linalg.norm(Qn, axis=1, keepdims=True)
    D = 1.0 - Qn @ Xn.T
    ids = np.stack([np.lexsort((np.arange(D.shape[1]), d))[:k] for d in D])
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="300K,1M")
    ap.add_argument("--ks", default="10,100,1000")
    ap.add_argument("--nq", type=int, default=10_000)
    ap.add_argument("--nq-ref", type=int, default=100, help="queries for the numpy float64 reference")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory", default="8G")
    ap.add_argument("--blas", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-numpy", action="store_true",
                    help="skip the numpy matmul + argpartition column (the slowest: about 3x faiss here)")
    ap.add_argument("--data", choices=("random", "synthetic", "twin"), default="random",
                    help="random: LAION-like gaussian (any --dim); synthetic: laionknn.synthetic (768-d, calibrated); "
                         "twin: the v3 synthetic twin files of the workspace")
    args = ap.parse_args()
    if args.data == "twin":
        from laionknn.catalog import ensure, resolve
        from laionknn.io import read_vectors

        if args.dim != 768:
            ap.error("--data twin is 768-dimensional")
        make_db = lambda n, seed: read_vectors(ensure(resolve(f"synthetic-v3-clip768v2-n={size_name(n)}")))  # noqa: E731
        make_q = lambda n: read_vectors(ensure(resolve("synthetic-v3-queries-10k-clip768v2")))[:n].astype(np.float32)  # noqa: E731
    elif args.data == "synthetic":
        from laionknn.synthetic import generate_database, generate_queries

        if args.dim != 768:
            ap.error("--data synthetic is 768-dimensional")
        make_db = lambda n, seed: generate_database(n, seed=0)  # noqa: E731  (prefix of one database)
        make_q = lambda n: generate_queries(n, seed=0)  # noqa: E731
    else:
        make_db = lambda n, seed: laion_like(n, args.dim, seed, np.float16)  # noqa: E731
        make_q = lambda n: laion_like(n, args.dim, 1, np.float32)  # noqa: E731
    progress.set_quiet(True)

    import faiss
    from threadpoolctl import threadpool_info, threadpool_limits

    faiss.omp_set_num_threads(args.threads)
    limits = threadpool_limits(args.threads)
    backend = resolve_backend(args.blas)
    print(f"# OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}"
          f" threads={args.threads} blas={backend} load={os.getloadavg()[0]:.1f}")
    for info in threadpool_info():
        if info["internal_api"] == "openblas":
            print(f"#   openblas {info['version']} core={info['architecture']} {os.path.basename(info['filepath'])}")
    rates = {b: sgemm_rate(b) for b in ("numpy", "faiss") if resolve_backend(b) == b or b == "numpy"}
    peak = max(rates.values())
    print("# sgemm GFLOP/s: " + ", ".join(f"{b}={r:.1f}" for b, r in rates.items()))
    print(f"# data={args.data}")
    Q = make_q(args.nq)
    warm = knn(laion_like(5000, args.dim, 5, np.float16), Q[:10], 10, "cosine", blas=backend)  # compile / warm up
    print(f"# cpu={cpu_model()} filter={warm.attrs['filter']} gemm={warm.attrs['gemm']}")
    print(f"# numpy {np.__version__}, faiss {faiss.__version__}, bf16 kernels available: "
          f"{', '.join(native.available_kernels())}")
    print("| n | k | nq | ours s | GFLOP/s | of matmul | rescored | faiss s | ours/faiss | numpy s | ours/numpy "
          "| numpy f64 s (scaled) | ours == f64 | faiss wrong ids |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        n = parse_size(size)
        X = make_db(n, 2)
        index = faiss.IndexFlatIP(args.dim)
        X32 = X.astype(np.float32)
        X32 /= np.linalg.norm(X32, axis=1, keepdims=True)
        index.add(X32)
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        for k in (int(s) for s in args.ks.split(",")):
            ours_t, faiss_t, np_t = [], [], []
            for _ in range(args.repeats):  # alternate A, B and C on the noisy shared machine
                t = time.perf_counter()
                res = knn(X, Q, k, "cosine", memory=args.memory, blas=backend)
                ours_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                _, fI = index.search(Qn, k)
                faiss_t.append(time.perf_counter() - t)
                if not args.no_numpy:
                    t = time.perf_counter()
                    numpy_topk(X32, Qn, k)
                    np_t.append(time.perf_counter() - t)
            nr = min(args.nq_ref, args.nq)
            t = time.perf_counter()
            ref = f64_reference(X, Q[:nr], k)
            f64_t = (time.perf_counter() - t) * args.nq / nr
            same = bool((ref == res.ids[:nr]).all())
            wrong = int((ref != fI[:nr]).sum())
            ours, fa = statistics.median(ours_t), statistics.median(faiss_t)
            nt = statistics.median(np_t) if np_t else float("nan")
            gf = 2 * args.nq * n * args.dim / ours / 1e9
            print(f"| {size} | {k} | {args.nq} | {ours:.2f} | {gf:.1f} | {gf / peak:.0%} | {res.attrs['n_rescored']} | "
                  f"{fa:.2f} | {ours / fa:.2f} | {nt:.2f} | {ours / nt:.2f} | {f64_t:.1f} | {same} | {wrong}/{nr * k} |",
                  flush=True)
        del index, X, X32
    limits.restore_original_limits()


if __name__ == "__main__":
    main()
