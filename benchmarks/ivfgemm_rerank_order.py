"""Does the order in which laionknn-ivfgemm re-ranks its queries matter? The exact float16 re-rank of
the candidates, in the batch's query order against the queries sorted by their nearest list (the
backend's order: consecutive queries then fetch many of the same rows, which stay in the cache).

One process, one index, the same candidates: each repeat times both orders back to back; the table
gives the median seconds of each re-rank, their ratio, and whether both returned the same answers.

    PYTHONPATH=src python benchmarks/ivfgemm_rerank_order.py --size 300K --point 4,3 --k 30 --threads 1 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="300K")
    ap.add_argument("--point", action="append", help="nprobe,k_factor (default 4,3 and 6,6)")
    ap.add_argument("--k", type=int, action="append", help="k (default 10 and 30)")
    ap.add_argument("--threads", type=int, action="append")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    import numpy as np

    from laionknn.indexes import create
    from laionknn.indexes import ivfgemm_native as nat
    from laionknn.indexes.datasets import open_target
    from laionknn.indexes.grids import load_grid
    from laionknn.indexes.machine import cpu_info

    spec, target, database = open_target(f"synthetic-v3-clip768v2-n={args.size}", n_queries=10_000)
    params = dict(load_grid("laionknn-ivfgemm", dataset=spec.name, n_rows=database.n, dim=database.dim).build[0])
    threads = args.threads or [1, 2]
    ix = create("laionknn-ivfgemm", target.metric, threads=max(threads), **params)
    ix.build(database)
    queries = np.ascontiguousarray(target.queries, dtype=np.float32)
    name = nat.kernel()
    cpu = cpu_info()
    print(f"# {spec.name}, {len(queries)} queries; kernel {name}; CPU {cpu['cpu_model']} ({platform.machine()}); "
          f"flags {cpu['cpu_flags'] or 'none of note'}")
    print("| nprobe,k_factor | k | threads | query order s | nearest-list order s | ratio | same answers |")
    print("|---|---|---|---|---|---|---|")
    captured = {}
    plain_rerank = ix._rerank

    def capture(name_, q, pos, nearest, k):  # the search's own candidates, kept for the timing below
        captured.update(q=q, pos=pos, nearest=nearest)
        return plain_rerank(name_, q, pos, nearest, k)

    for point in args.point or ["4,3", "6,6"]:
        nprobe, kf = point.split(",")
        for k in args.k or [10, 30]:
            ix.set_query_params(nprobe=int(nprobe), k_factor=float(kf))
            ix._rerank = capture
            ix.search(queries, k)
            ix._rerank = plain_rerank
            q, pos, nearest = captured["q"], captured["pos"], captured["nearest"]
            for t in threads:
                ix.set_threads(t)
                a_t, b_t = [], []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    a = nat.rerank(name, ix.orig, ix.inv_norm, q, pos, k, t)
                    a_t.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    b = ix._rerank(name, q, pos, nearest, k)
                    b_t.append(time.perf_counter() - t0)
                same = np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
                ma, mb = statistics.median(a_t), statistics.median(b_t)
                print(f"| {point} | {k} | {t} | {ma:.3f} | {mb:.3f} | {mb / ma:.2f} | {'yes' if same else 'NO'} |",
                      flush=True)


if __name__ == "__main__":
    main()
