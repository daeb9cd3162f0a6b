"""Sharded index search on Dask vs the unsharded index, same data, same run, same cores.

    PYTHONPATH=src python benchmarks/distributed_search.py --size 1M --queries 10000 --workers 2

Data: the synthetic LAION twin of `--generator` (default v3: `synthetic-v3-clip768v2-n=SIZE`) with its
query set and gold standard (made by the catalog if missing). `local`: the backend's index over the whole file with `--workers`
threads (as many cores as the cluster has). `dask`: a LocalCluster of `--workers` processes x 1 thread,
`--shards` shards (default: one per worker; `--ivf-shards`, default 8, for the shared-quantizer
layouts, so that routing has shards to skip); queries scattered once; QPS from the driver's wall clock,
queries sent to merged answer. Each point: one warm-up search, median of `--repeats`. Backends: exact,
hnswlib, faiss-ivfflat (per-shard quantizers: layout `rows`; one shared quantizer: `broadcast` and
`routed`). Prints a Markdown table (recall@k against the gold standard, shards touched per query).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import numpy as np  # noqa: E402

from laionknn import progress  # noqa: E402
from laionknn.distributed.engine import local_client  # noqa: E402
from laionknn.distributed.search import ShardedIndex  # noqa: E402
from laionknn.evaluation import recall  # noqa: E402
from laionknn.indexes.datasets import gold_for, open_target  # noqa: E402
from laionknn.indexes.registry import create  # noqa: E402
from laionknn.indexes.runner import timed_search  # noqa: E402


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown"


def configs(n: int) -> list[tuple[str, dict, list[dict], tuple[str, ...]]]:
    nlist = max(16, min(4096, 2 ** round(math.log2(2 * math.sqrt(n)))))
    return [("exact", {}, [{}], ("rows",)),
            ("hnswlib", {"M": 16, "ef_construction": 64}, [{"ef": 16}, {"ef": 32}, {"ef": 64}], ("rows",)),
            ("faiss-ivfflat", {"nlist": nlist, "train_size": 50_000}, [{"nprobe": 4}, {"nprobe": 16}],
             ("rows", "broadcast", "routed"))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1M")
    ap.add_argument("--generator", default=None, help="synthetic generator version (default: v3)")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shards", type=int, default=None)
    ap.add_argument("--ivf-shards", type=int, default=8, help="shards of the broadcast and routed IVF layouts")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="backends to run (default: all three)")
    args = ap.parse_args()
    progress.set_quiet(True)
    from laionknn.catalog.manifest import synthetic_database_name

    name = synthetic_database_name(args.size, generator=args.generator)
    spec, target, db = open_target(name, n_queries=args.queries)
    gold = gold_for(spec)[1].ids
    n, q, k = db.n, target.queries, args.k
    shards = args.shards or args.workers
    print(f"# {spec.name}: n={n} nq={len(q)} k={k}; local: {args.workers} threads; dask: {args.workers} workers x 1 "
          f"thread, {shards} shards; CPU {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    rows = []
    with local_client(args.workers, 1) as client:
        print(f"# cluster start-up {time.perf_counter() - t0:.1f} s (not included below)")
        for backend, build, knobs_list, layouts in configs(n):
            if args.only and backend not in args.only:
                continue
            index = create(backend, target.metric, threads=args.workers, **build)
            t = time.perf_counter()
            index.build(db)
            build_local = time.perf_counter() - t
            for knobs in knobs_list:
                index.set_query_params(**knobs)
                res, times = timed_search(index, q, k, args.repeats)
                qt = statistics.median(times)
                rows.append([backend, "local", knobs, build_local, len(q) / qt, recall(res.ids, gold, k), 1.0, 0.0])
            del index
            for layout in layouts:
                s = shards if layout == "rows" else args.ivf_shards
                sharded = ShardedIndex(client, backend, db.path, target.metric, build, shards=s, layout=layout,
                                       use_cache=False)
                built = sharded.build()
                sharded.scatter(q)
                for knobs in knobs_list:
                    sharded.search(k, **knobs)
                    runs = [sharded.search(k, **knobs) for _ in range(args.repeats)]
                    qt = statistics.median(i.seconds for _, i in runs)
                    res, info = runs[-1]
                    rows.append([backend, f"dask {layout} x{s}", knobs, built["seconds"], len(q) / qt,
                                 recall(res.ids, gold, k), info.shards_per_query,
                                 statistics.median(i.merge_seconds for _, i in runs)])
                sharded.close()
            print(f"# {backend} done", flush=True)
    db.close()
    print(f"| backend | engine | knobs | build s | QPS | recall@{k} | shards/query | merge s |")
    print("|---|---|---|---|---|---|---|---|")
    for b, e, kn, bs, qps, r, spq, m in rows:
        knobs = ",".join(f"{a}={v}" for a, v in kn.items()) or "-"
        print(f"| {b} | {e} | {knobs} | {bs:.1f} | {qps:,.0f} | {r:.4f} | {spq:.2f} | {m:.3f} |")


if __name__ == "__main__":
    main()
