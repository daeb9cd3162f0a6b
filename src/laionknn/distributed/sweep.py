"""`laionknn search --dask`: the runner's sweep over a :class:`laionknn.distributed.search.ShardedIndex`.

Same outputs as :func:`laionknn.indexes.runner.sweep` (one official result file and one run record per
grid point, ``runs.jsonl``), timed the same way (one warm-up search, median of ``repeats`` timed
searches of all queries; ``querytime`` is the driver's wall clock from sending the queries to the merged
answer), plus what only a sharded run has: per-shard build and search seconds, the merge seconds, the
(query, shard) pairs sent and the shards rebuilt after a worker was lost. ``params`` ends with
``shards=S`` (and ``route=broadcast|routed``) so sharded points never overwrite local ones.
"""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path

import numpy as np

from laionknn.distributed.search import ShardedIndex
from laionknn.errors import UsageError
from laionknn.indexes.base import source_shape
from laionknn.indexes.grids import Grid, load_grid
from laionknn.indexes.registry import create, get_backend
from laionknn.indexes.runner import (SweepTarget, _rules_note, _safe, backend_facts, check_metric, data_fingerprint,
                                     peak_rss_bytes, points_as_run, recall_at)
from laionknn.progress import progress_bar
from laionknn.results import append_run_records
from laionknn.validation import check_count, check_k, check_optional, check_repeats, check_threads

log = logging.getLogger(__name__)


def _rounded(values) -> list[float]:
    return [round(float(v), 6) for v in values]


def sweep_dask(backend: str, target: SweepTarget, k: int, out_dir: "str | os.PathLike[str]", *, client,
               shards: int, layout: str = "rows", grid: Grid | None = None,
               grid_file: "str | os.PathLike[str] | None" = None, threads: int | None = None,
               repeats: int | None = None, use_cache: bool = True, quick: bool = False,
               gold_ids: np.ndarray | None = None) -> list[dict]:
    """Run ``backend`` over its grid with its index split in ``shards`` on the Dask ``client``.

    ``target.database`` must be an open :class:`laionknn.io.VectorFile` (its path is what the workers
    open; on a cluster it must be on a shared filesystem at the same path). ``threads``: threads of each
    shard task (default 1). Returns the run records (also appended to ``out_dir/runs.jsonl``).
    """
    cls = get_backend(backend)
    check_metric(backend, target)
    k = check_k(k)
    threads, repeats = check_optional(check_threads, threads), check_optional(check_repeats, repeats)
    shards = check_count(shards, "--shards")
    path = getattr(target.database, "path", None)
    if path is None:
        raise UsageError("a sharded search reads the database from its HDF5 file; pass an open VectorFile")
    n, dim, _ = source_shape(target.database)
    if k > n:
        raise UsageError(f"k={k} is larger than the database {target.dataset} ({n} rows); ask for at most {n}")
    threads = threads or 1
    grid = grid or load_grid(backend, grid_file, dataset=target.dataset, n_rows=n, k=k, dim=dim)
    if quick:
        grid = grid.quick()
    repeats = int(repeats or grid.repeats or 3)
    out_dir = Path(out_dir)
    fingerprint = data_fingerprint(target.database) if use_cache and cls.supports_save and layout == "rows" else None
    workers = len(client.scheduler_info().get("workers", {}))
    facts = backend_facts(backend)
    from laionknn.io import write_result

    records: list[dict] = []
    with progress_bar(f"{backend} on {shards} shards", len(grid.build) * len(grid.query), unit="points") as bar:
        for b, build_params in enumerate(grid.build):
            sharded = ShardedIndex(client, backend, path, target.metric, build_params, shards=shards,
                                   key=getattr(target.database, "key", None), threads=threads, layout=layout,
                                   use_cache=use_cache, fingerprint=fingerprint)
            try:
                built = sharded.build()
                sharded.scatter(target.queries)
                # knobs as the local runner sets them; the describing index is not built, so floors
                # that read the built index (IVF lists) give nothing here, the others (ef >= k) apply
                describe = create(backend, target.metric, **build_params)
                for q, changes in points_as_run(describe, grid.query, k, on_skip=lambda: bar.advance(1)):
                    sharded.search(k, **describe.query_params)  # warm-up
                    runs = [sharded.search(k, **describe.query_params) for _ in range(max(1, repeats))]
                    result, info = runs[-1]
                    times = [i.seconds for _, i in runs]
                    querytime = statistics.median(times)
                    params = ",".join(filter(None, [describe.params_string(), f"shards={len(sharded.plan)}",
                                                    f"route={layout}" if layout != "rows" else ""]))
                    file = out_dir / "results" / backend / f"{_safe(target.size)}-k{k}-{_safe(params)}.h5"
                    short = int((result.ids < 0).any(axis=1).sum())
                    if short:
                        log.warning("%s %s: %d of %d queries got fewer than %d neighbours; no result file written",
                                    backend, params, short, len(target.queries), k)
                        file = None
                    else:
                        write_result(file, result.ids, result.dists, algo=backend, data=target.data,
                                     size=target.size, buildtime=built["seconds"], querytime=querytime, params=params)
                    rec = {"dataset": target.dataset, "data": target.data, "size": target.size, "algo": backend,
                           "params": params, "build_params": dict(sorted(describe.build_params.items())),
                           "query_params": dict(sorted(describe.query_params.items())), "k": k,
                           "threads": threads, "n_queries": int(len(target.queries)), "buildtime": built["seconds"],
                           "querytime": querytime, "repeats": repeats, "querytimes": _rounded(times),
                           "qps": len(target.queries) / querytime if querytime > 0 else float("inf"),
                           "peak_rss_bytes": peak_rss_bytes(), "index_bytes": int(sum(built["index_bytes"])),
                           "cached": bool(built["cached"]) and all(built["cached"]), "queries_short": short,
                           "file": str(file) if file else "",
                           "grid": grid.source, "grid_rules": _rules_note(grid, b, q),
                           "knob_changes": "; ".join(changes), **facts,
                           "engine": "dask", "workers": workers, "shards": len(sharded.plan), "layout": layout,
                           "shard_rows": [int(r) for r in built["shard_rows"]],
                           "shard_buildtimes": _rounded(built["shard_seconds"]),
                           "train_seconds": round(built["train_seconds"], 6),
                           "shard_searchtimes": _rounded(info.shard_seconds),
                           "merge_seconds": statistics.median(i.merge_seconds for _, i in runs),
                           "shard_pairs": info.pairs, "shards_per_query": info.shards_per_query,
                           "shards_recomputed": sorted(int(s) for s in {s for _, i in runs for s in i.recomputed})}
                    if gold_ids is not None:
                        rec["recall"] = recall_at(result.ids, gold_ids, k)
                    records.append(rec)
                    log.info("%s %s: %.3f s (%.0f QPS), %.2f shards per query", backend, params, querytime,
                             rec["qps"], info.shards_per_query)
                    bar.advance(1)
            finally:
                sharded.close()
    append_run_records(out_dir / "runs.jsonl", records)
    return records


__all__ = ["sweep_dask"]
