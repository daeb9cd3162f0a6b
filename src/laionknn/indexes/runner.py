"""The benchmark runner: build once per build configuration, sweep the query grid, write one
official result file and one run record per point.

Timing follows the challenge: ``buildtime`` is the seconds to build (or, for a cached index, the
seconds the original build took, recorded beside it); ``querytime`` is the median of ``repeats``
timed searches of *all* queries after one warm-up search. Built indexes are cached under
``workspace.index_cache_dir()`` by a hash of the data and the build parameters, so a second sweep
skips the build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import resource
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laionknn import workspace
from laionknn.errors import UsageError
from laionknn.indexes.base import Index, dir_size, source_shape
from laionknn.indexes.grids import Grid, load_grid
from laionknn.indexes.registry import create, get_backend
from laionknn.progress import progress_bar
from laionknn.results import append_run_records
from laionknn.types import KnnResult, Metric

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass
class SweepTarget:
    """What a sweep runs on: the database (ndarray or open VectorFile), the queries and their labels.

    ``data`` is the family written into result files (clip768v2, pca32v2, ...), ``size`` the subset
    (100K, ...), ``dataset`` the catalog name (for grid overrides and records).
    """

    database: Any
    queries: np.ndarray
    metric: Metric
    data: str
    size: str
    dataset: str


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def data_fingerprint(source) -> str:
    """A hash that changes when the data changes: for files, path + size + mtime + the bytes of the
    first and last rows; for arrays, all their bytes."""
    h = hashlib.sha256()
    n, dim, dtype = source_shape(source)
    h.update(f"{n}:{dim}:{dtype}".encode())
    path = getattr(source, "path", None)
    if path is not None:
        st = Path(path).stat()
        h.update(f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        rows = max(1, min(n, (1 << 20) // max(1, dim * dtype.itemsize)))
        h.update(np.ascontiguousarray(source.read(0, rows)).tobytes())
        h.update(np.ascontiguousarray(source.read(max(0, n - rows), n)).tobytes())
    else:
        h.update(np.ascontiguousarray(source).tobytes())
    return h.hexdigest()


def cache_key(backend: str, metric: Metric, build_params: dict, fingerprint: str) -> str:
    text = json.dumps({"v": CACHE_VERSION, "backend": backend, "metric": metric.value,
                       "build": build_params, "data": fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def build_or_load(backend: str, target: SweepTarget, build_params: dict, *, threads: int,
                  fingerprint: str | None = None, use_cache: bool = True) -> tuple[Index, float, bool, int]:
    """An index ready to search: loaded from the cache when present, else built (and cached).

    Returns ``(index, buildtime_seconds, from_cache, index_bytes)``.
    """
    cls = get_backend(backend)
    n, dim, _ = source_shape(target.database)
    index = create(backend, target.metric, threads=threads, **build_params)
    cacheable = use_cache and cls.supports_save
    folder = None
    if cacheable:
        fingerprint = fingerprint or data_fingerprint(target.database)
        folder = workspace.index_cache_dir() / f"{backend}-{cache_key(backend, target.metric, index.build_params, fingerprint)}"
        meta_path = folder / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            index.load(folder / "index", n, dim)
            index.attach(target.database)
            log.info("%s: loaded cached index %s", backend, folder)
            return index, float(meta["buildtime"]), True, int(meta["index_bytes"])
    t0 = time.perf_counter()
    index.build(target.database)
    buildtime = time.perf_counter() - t0
    index_bytes = 0
    if cacheable and folder is not None:
        tmp = folder.with_name(f".tmp-{os.getpid()}-{folder.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        index.save(tmp / "index")
        index_bytes = dir_size(tmp / "index")
        (tmp / "meta.json").write_text(json.dumps({"backend": backend, "metric": target.metric.value,
                                                   "build_params": index.build_params, "buildtime": buildtime,
                                                   "index_bytes": index_bytes, "n": n, "dim": dim,
                                                   "dataset": target.dataset}, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    elif cls.supports_save:
        with _tempdir() as tmp:
            index_bytes = dir_size(index.save(tmp / "index"))
    return index, buildtime, False, index_bytes


@contextlib.contextmanager
def _tempdir():
    import tempfile

    with tempfile.TemporaryDirectory(dir=workspace.index_cache_dir()) as d:
        yield Path(d)


def timed_search(index: Index, queries: np.ndarray, k: int, repeats: int = 3, *,
                 warmup: bool = True) -> tuple[KnnResult, list[float]]:
    """One warm-up search (its answer is returned), then ``repeats`` timed searches of all queries.
    ``warmup=False`` (the caller has just searched these queries) skips it and returns the answer of
    the last timed search."""
    result = index.search(queries, k) if warmup else None
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        last = index.search(queries, k)
        times.append(time.perf_counter() - t0)
    return (result if warmup else last), times


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=.+-]+", "_", text).strip("_") or "default"


def recall_at(ids: np.ndarray, gold_ids: np.ndarray, k: int) -> float:
    """Official id-only recall@k of ``ids`` against the first k gold columns."""
    from laionknn.evaluation import recall

    return float(recall(ids, gold_ids, k))


def sweep(backend: str, target: SweepTarget, k: int, out_dir: "str | os.PathLike[str]", *,
          grid: Grid | None = None, grid_file: "str | os.PathLike[str] | None" = None, threads: int | None = None,
          repeats: int | None = None, use_cache: bool = True, quick: bool = False,
          gold_ids: np.ndarray | None = None) -> list[dict]:
    """Run ``backend`` over its grid on ``target``; returns the run records (also appended to
    ``out_dir/runs.jsonl``). Result files go to ``out_dir/results/<backend>/``. A grid point where some
    query got fewer than k neighbours (id -1) is recorded with ``queries_short`` > 0 and ``file`` empty:
    the official format has no way to say "missing"."""
    cls = get_backend(backend)
    if target.metric not in cls.metrics:
        kinds = ", ".join(sorted(m.value for m in cls.metrics))
        raise UsageError(f"backend {backend!r} cannot search {target.dataset} ({target.metric.value} data; "
                         f"it supports {kinds})" + ("; use faiss-binary-flat, faiss-binary-ivf or faiss-binary-hnsw"
                                                    if target.metric is Metric.HAMMING else ""))
    n, _, _ = source_shape(target.database)
    if not 1 <= k <= n:
        raise UsageError(f"k={k} is larger than the database {target.dataset} ({n} rows); ask for at most {n}")
    threads = int(threads or os.cpu_count() or 1)
    grid = grid or load_grid(backend, grid_file, dataset=target.dataset, n_rows=n)
    if quick:
        grid = grid.quick()
    repeats = int(repeats or grid.repeats or 3)
    out_dir = Path(out_dir)
    fingerprint = data_fingerprint(target.database) if use_cache and cls.supports_save else None
    records: list[dict] = []
    from threadpoolctl import threadpool_limits

    from laionknn.io import write_result

    with threadpool_limits(limits=threads), progress_bar(f"{backend}", len(grid.build) * len(grid.query),
                                                          unit="points") as bar:
        for build_params in grid.build:
            shown = ",".join(f"{k}={v}" for k, v in build_params.items()) or "defaults"
            bar.describe(f"building {shown}")
            index, buildtime, cached, index_bytes = build_or_load(backend, target, build_params, threads=threads,
                                                                 fingerprint=fingerprint, use_cache=use_cache)
            for query_params in grid.query:
                bar.describe(f"{'cached' if cached else 'built'} {shown}; searching "
                             + (",".join(f"{k}={v}" for k, v in query_params.items()) or "defaults"))
                index.set_query_params(**query_params)
                result, times = timed_search(index, target.queries, k, repeats)
                querytime = statistics.median(times)
                params = index.params_string()
                path = out_dir / "results" / backend / f"{_safe(target.size)}-k{k}-{_safe(params)}.h5"
                short = int((result.ids < 0).any(axis=1).sum())
                if short:
                    # an official result file cannot hold missing ids: record the point, write no file
                    log.warning("%s %s: %d of %d queries got fewer than %d neighbours (search knob too low); "
                                "no result file written for this point", backend, params, short,
                                len(target.queries), k)
                    path = None
                else:
                    write_result(path, result.ids, result.dists, algo=backend, data=target.data, size=target.size,
                                 buildtime=buildtime, querytime=querytime, params=params)
                rec = {"dataset": target.dataset, "data": target.data, "size": target.size, "algo": backend,
                       "params": params, "build_params": json.dumps(index.build_params, sort_keys=True),
                       "query_params": json.dumps(index.query_params, sort_keys=True), "k": k,
                       "threads": threads, "n_queries": int(len(target.queries)), "buildtime": buildtime,
                       "querytime": querytime, "repeats": repeats, "querytimes": json.dumps([round(t, 6) for t in times]),
                       "qps": len(target.queries) / querytime if querytime > 0 else float("inf"),
                       "peak_rss_bytes": peak_rss_bytes(), "index_bytes": index_bytes, "cached": cached,
                       "queries_short": short, "file": str(path) if path else ""}
                if gold_ids is not None:
                    rec["recall"] = recall_at(result.ids, gold_ids, k)
                records.append(rec)
                log.info("%s %s: %.3f s (%.0f QPS)%s", backend, params, querytime, rec["qps"],
                         f" recall {rec['recall']:.4f}" if "recall" in rec else "")
                bar.advance(1)
            del index
    append_run_records(out_dir / "runs.jsonl", records)
    return records
