"""Dask engine vs the local exact engine on the same HDF5 file, same run, alternating repeats.
(Not named distributed.py: on sys.path[0] that would shadow the distributed package.)

    PYTHONPATH=src python benchmarks/dask_engine.py --n 200K --nq 1000 --k 100 --repeats 3

Engines: `local` (laionknn.exact.knn on the VectorFile, all cores), `dask-sync` (knn_dask with dask's
synchronous scheduler: the graph, shards and merge tree without parallelism), `dask-2x1` (LocalCluster,
2 worker processes x 1 thread, queries scattered, workers read their rows) and `dask-1x2` (1 process x
2 threads). Cluster start-up is timed separately. Prints medians, the ratio to `local` and whether the
answer (ids, dists, tie flags) is identical to `local`; n_rescored is printed for each engine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from laionknn import progress  # noqa: E402
from laionknn.distributed.engine import knn_dask, local_client  # noqa: E402
from laionknn.exact import knn  # noqa: E402
from laionknn.io import VectorFile, write_vectors  # noqa: E402
from laionknn.types import parse_size  # noqa: E402


def laion_like(n: int, dim: int, seed: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = np.random.default_rng(999).standard_normal(dim)
    x = rng.standard_normal((n, dim)) + 0.9 * np.sqrt(dim) * mean / np.linalg.norm(mean) * 0.3
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="200K")
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--memory", default="2G")
    args = ap.parse_args()
    progress.set_quiet(True)
    n = parse_size(args.n)
    tmp = tempfile.mkdtemp(prefix="bench-distributed-")
    db = os.path.join(tmp, "db.h5")
    write_vectors(db, laion_like(n, args.dim, 1, np.float16), "emb")
    q = laion_like(args.nq, args.dim, 2, np.float32)
    print(f"# n={n} nq={args.nq} dim={args.dim} k={args.k} shards={args.shards} memory={args.memory} "
          f"cores={os.cpu_count()} load={os.getloadavg()[0]:.1f}")

    def local():
        with VectorFile(db) as v:
            return knn(v, q, args.k, "cosine", memory=args.memory)

    import dask

    def sync():
        with dask.config.set(scheduler="sync"):
            return knn_dask(db, q, args.k, "cosine", shards=args.shards, memory=args.memory)

    t0 = time.perf_counter()
    c21 = local_client(2, 1)
    client21 = c21.__enter__()
    start21 = time.perf_counter() - t0
    t0 = time.perf_counter()
    c12 = local_client(1, 2)
    client12 = c12.__enter__()
    start12 = time.perf_counter() - t0
    engines = {
        "local": local,
        "dask-sync": sync,
        "dask-2x1": lambda: knn_dask(db, q, args.k, "cosine", client=client21, shards=args.shards,
                                     memory=args.memory, threads=1),
        "dask-1x2": lambda: knn_dask(db, q, args.k, "cosine", client=client12, shards=args.shards,
                                     memory=args.memory, threads=2),
    }
    times: dict[str, list[float]] = {name: [] for name in engines}
    results = {}
    for name, fn in engines.items():  # warm-up (numba compile, page cache)
        results[name] = fn()
    for _ in range(args.repeats):  # alternate A/B/C/D so all see the same noise
        for name, fn in engines.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    c12.__exit__(None, None, None)
    c21.__exit__(None, None, None)
    ref = results["local"]
    base = statistics.median(times["local"])
    print(f"# cluster start-up: 2x1 {start21:.1f} s, 1x2 {start12:.1f} s (not included below)")
    print("| engine | seconds (median) | runs | / local | answer identical to local | n_rescored |")
    print("|---|---|---|---|---|---|")
    for name, ts in times.items():
        r = results[name]
        same = (np.array_equal(r.ids, ref.ids) and np.array_equal(r.dists, ref.dists)
                and np.array_equal(r.attrs["tie_at_k"], ref.attrs["tie_at_k"]))
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {', '.join(f'{t:.2f}' for t in ts)} | {med / base:.2f} | {same} | "
              f"{r.attrs['n_rescored']} |")


if __name__ == "__main__":
    main()
