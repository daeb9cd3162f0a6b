"""Quick sweep of laionknn's own index (issue 15) on one synthetic twin: build (or load a saved build),
then time each (nprobe, k_factor) point with each thread count and print recall@10 / recall@30 and QPS.
Development aid for choosing the grid; the reported figures come from benchmarks/peers.py.

    PYTHONPATH=src python benchmarks/ivfgemm_sweep.py --size 300K --backend laionknn-ivfgemm \\
        --point 8,16 --point 12,16 --threads 1 --save /tmp/ix-300K
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="300K")
    ap.add_argument("--backend", default="laionknn-ivfgemm")
    ap.add_argument("--build", action="append", default=[], help="KEY=VALUE build parameter (repeatable)")
    ap.add_argument("--point", action="append", required=True, help="nprobe,k_factor (k_factor ignored for -q4)")
    ap.add_argument("--k", type=int, action="append", help="k (10 and/or 30; default both)")
    ap.add_argument("--threads", type=int, action="append")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--save", help="folder of a saved build: loaded when present, else built and saved there")
    args = ap.parse_args()

    import numpy as np

    from laionknn.indexes import create
    from laionknn.indexes import ivfgemm_native as nat
    from laionknn.indexes.datasets import gold_for, open_target
    from laionknn.indexes.grids import load_grid
    from laionknn.indexes.runner import recall_at

    spec, target, database = open_target(f"synthetic-v3-clip768v2-n={args.size}", n_queries=10_000)
    _, gold = gold_for(spec)
    params = dict(load_grid(args.backend, dataset=spec.name, n_rows=database.n, dim=database.dim).build[0])
    for kv in args.build:
        key, value = kv.split("=")
        params[key] = int(value)
    threads = args.threads or [1]
    ix = create(args.backend, target.metric, threads=max(threads), **params)
    folder = Path(args.save) if args.save else None
    t0 = time.perf_counter()
    if folder and (folder / "meta.json").exists():
        ix.load(folder, database.n, database.dim)
        how = "loaded"
    else:
        ix.build(database)
        how = "built"
        if folder:
            ix.save(folder)
    print(json.dumps({"index": how, "seconds": round(time.perf_counter() - t0, 1), "params": ix.build_params,
                      "kernel": nat.kernel()}), flush=True)
    queries = np.ascontiguousarray(target.queries, dtype=np.float32)
    for point in args.point:
        nprobe, kf = (int(float(v)) if i == 0 else float(v) for i, v in enumerate(point.split(",")))
        for k in args.k or [10, 30]:
            qp = {"nprobe": nprobe} if args.backend.endswith("q4") else {"nprobe": nprobe, "k_factor": kf}
            for t in threads:
                ix.set_threads(t)
                ix.set_query_params(**qp)
                res = ix.search(queries, k)
                times = []
                for _ in range(args.repeats):
                    t1 = time.perf_counter()
                    ix.search(queries, k)
                    times.append(time.perf_counter() - t1)
                print(json.dumps({"k": k, **qp, "threads": t, "recall": round(recall_at(res.ids, gold.ids, k), 4),
                                  "qps": round(len(queries) / min(times)), "kernel": nat.kernel()}), flush=True)


if __name__ == "__main__":
    main()
