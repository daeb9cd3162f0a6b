"""The benchmark runner: build once per build configuration, sweep the query grid, write one
official result file and one run record per point.

Timing follows the challenge: ``buildtime`` is the seconds to build (or, for a cached index, the
seconds the original build took, recorded beside it); ``querytime`` is the median of ``repeats``
timed searches of *all* queries after one warm-up search. Built indexes are cached under
``workspace.index_cache_dir()`` by a hash of the data and the build parameters, so a second sweep
skips the build. A cached index that does not load back (a library upgrade, a damaged folder) is
reported, removed and rebuilt, never silently dropped.

Knobs are reported as run: a grid point's query knobs are first raised to the backend's floors for k
(``Index.knob_floors``: HNSW's candidate list ``ef >= k``), then replaced by what the library really
uses (``Index.effective_query_params``: hnswlib's ``max(ef, k)``, faiss's ``min(nprobe, nlist)``);
points that become equal are run once. Build parameters in records and meta files are the ones the
backend really used (``train_size`` capped at n...).
"""

from __future__ import annotations

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
from typing import Any, Iterator

import numpy as np

from laionknn import workspace
from laionknn.errors import UsageError
from laionknn.fsutil import temp_dir, temp_path
from laionknn.indexes.base import Index, dir_size, source_shape
from laionknn.indexes.cachecheck import discard_entry, entry_problem, file_sizes, save_problem
from laionknn.indexes.grids import Grid, load_grid
from laionknn.indexes.machine import run_facts
from laionknn.indexes.registry import BACKENDS, PIP_NAME, create, get_backend
from laionknn.progress import progress_bar
from laionknn.results import append_run_records, replace_run_records
from laionknn.types import KnnResult, Metric
from laionknn.validation import check_k, check_memory_size, check_optional, check_repeats, check_threads

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: build params as really used, ScaNN assets with relative paths


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


def backend_facts(backend: str) -> dict[str, str]:
    """Fields every run record of ``backend`` carries, because the machines change kind between
    sessions: CPU model, vendor and SIMD flags, the library and its version, faiss's BLAS kernel (faiss
    backends), and ``search_mode``: ``batch`` or ``single-query`` (the library has no batch call and the
    backend loops over the queries)."""
    cls = get_backend(backend)
    module = BACKENDS[backend][1]
    facts = run_facts(cls.library or module, PIP_NAME.get(module, module))
    facts["search_mode"] = "batch" if cls.batch_search else "single-query"
    if facts.get("faiss_blas_ok") == "no":  # the kernel is chosen when faiss loads: too late to fix here
        log.warning("faiss's bundled OpenBLAS runs its %s kernel (no AVX2) on this AVX2 CPU, several times "
                    "slower; start the process with OPENBLAS_CORETYPE=Haswell for a fair faiss timing",
                    facts.get("faiss_blas_core"))
    return facts


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
        if folder.exists():
            # one mechanism: an entry that fails its size check or fails to load is removed and rebuilt
            problem = entry_problem(folder)
            if problem is None:
                try:
                    meta = json.loads(meta_path.read_text())
                    index.load(folder / "index", n, dim)
                    index.attach(target.database)
                    index.build_params.update(meta.get("build_params", {}))  # as really used by the build
                    log.info("%s: loaded cached index %s", backend, folder)
                    return index, float(meta["buildtime"]), True, int(meta["index_bytes"])
                except Exception as exc:  # noqa: BLE001 - any library error on a cached file means: rebuild
                    problem = f"the library refuses it ({type(exc).__name__}: {exc})"
                    index = create(backend, target.metric, threads=threads, **build_params)
            discard_entry(folder, problem)
    t0 = time.perf_counter()
    index.build(target.database)
    buildtime = time.perf_counter() - t0
    index_bytes = 0
    if cacheable and folder is not None:
        tmp = temp_path(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            index.save(tmp / "index")
            problem = save_problem(tmp / "index")
        except OSError as exc:
            problem = f"the save failed ({exc})"
        index_bytes = dir_size(tmp / "index") if (tmp / "index").exists() else 0
        if problem is None:
            (tmp / "meta.json").write_text(json.dumps({"backend": backend, "metric": target.metric.value,
                                                       "build_params": index.build_params, "buildtime": buildtime,
                                                       "index_bytes": index_bytes, "n": n, "dim": dim,
                                                       "dataset": target.dataset,
                                                       "files": file_sizes(tmp / "index")}, indent=1))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        else:  # the index in memory is fine: search with it, but cache nothing
            log.warning("%s: index not cached: %s", backend, problem)
            shutil.rmtree(tmp, ignore_errors=True)
    elif cls.supports_save:
        with _tempdir() as tmp:
            index_bytes = dir_size(index.save(tmp / "index"))
    return index, buildtime, False, index_bytes


def _tempdir():
    """Scratch folder in the index cache (``.tmp-<pid>-*``: cleaned by the next writer if a kill leaves it)."""
    return temp_dir(workspace.index_cache_dir(), "measure")


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


def set_knobs_for_k(index: Index, query_params: dict, k: int) -> list[str]:
    """Set a grid point's knobs on ``index`` as they will really run for ``k`` neighbours: raised to
    the backend's floors, then to the library's own effective values. Returns what changed, e.g.
    ``["ef 10->30 (at least k=30)"]`` (empty when the point runs as written)."""
    index.set_query_params(**query_params)
    changes = []
    floors = {key: v for key, v in index.knob_floors(k).items() if index.query_params[key] < v}
    if floors:
        changes += [f"{key} {index.query_params[key]}->{v} (at least k={k})" if v == k else
                    f"{key} {index.query_params[key]}->{v} (floor for k={k})" for key, v in floors.items()]
        index.set_query_params(**floors)
    used = {key: v for key, v in index.effective_query_params(k).items() if index.query_params.get(key) != v}
    if used:
        changes += [f"{key} {index.query_params[key]}->{v} (as the library runs it)" for key, v in used.items()]
        index.set_query_params(**used)
    return changes


def points_as_run(index: Index, query_grid: list[dict], k: int, *, on_skip=None) -> Iterator[tuple[int, list[str]]]:
    """Set each query point of ``query_grid`` on ``index`` as it will run for ``k``
    (:func:`set_knobs_for_k`) and yield ``(position in the grid, changes)``; a point that becomes the
    same run as an earlier one is logged, ``on_skip()`` is called, and it is not yielded."""
    done: set[str] = set()
    for q, query_params in enumerate(query_grid):
        changes = set_knobs_for_k(index, query_params, k)
        key = json.dumps(index.query_params, sort_keys=True)
        if key in done:
            log.info("%s %s: same run as an earlier point of the grid (%s); skipped", index.name,
                     index.query_string(), "; ".join(changes))
            if on_skip:
                on_skip()
            continue
        done.add(key)
        yield q, changes


def _rules_note(grid: Grid, b: int, q: int) -> str:
    """Which rules and size bands chose this point's parameters (for the run record)."""
    return "; ".join(filter(None, [*grid.notes, grid.build_rule(b), grid.query_rule(q)]))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=.+-]+", "_", text).strip("_") or "default"


def recall_at(ids: np.ndarray, gold_ids: np.ndarray, k: int) -> float:
    """Official id-only recall@k of ``ids`` against the first k gold columns."""
    from laionknn.evaluation import recall

    return float(recall(ids, gold_ids, k))


def check_metric(backend: str, target: SweepTarget) -> None:
    """A UsageError when ``backend`` cannot search ``target``'s metric (e.g. hamming sketches given to a
    float library), raised before anything costly (gold standard, build) is done."""
    cls = get_backend(backend)
    if target.metric not in cls.metrics:
        kinds = ", ".join(sorted(m.value for m in cls.metrics))
        raise UsageError(f"backend {backend!r} cannot search {target.dataset} ({target.metric.value} data; "
                         f"it supports {kinds})" + ("; use faiss-binary-flat, faiss-binary-ivf or faiss-binary-hnsw"
                                                    if target.metric is Metric.HAMMING else ""))


def sweep(backend: str, target: SweepTarget, k: int, out_dir: "str | os.PathLike[str]", *,
          grid: Grid | None = None, grid_file: "str | os.PathLike[str] | None" = None, threads: int | None = None,
          repeats: int | None = None, use_cache: bool = True, quick: bool = False,
          gold_ids: np.ndarray | None = None, memory_limit: "int | str | None" = None, task: str | None = None,
          append: bool = True, replace_records: bool = False, on_phase=None, on_record=None) -> list[dict]:
    """Run ``backend`` over its grid on ``target``; returns the run records (also appended to
    ``out_dir/runs.jsonl``). Result files go to ``out_dir/results/<backend>/``. A grid point where some
    query got fewer than k neighbours (id -1) is recorded with ``queries_short`` > 0 and ``file`` empty:
    the official format has no way to say "missing".

    ``memory_limit`` (bytes, or a size such as ``2G``): each build configuration runs in a child process
    under that hard limit and an exceeded limit becomes a record (:mod:`laionknn.indexes.memlimit`);
    ``task`` (2024-2, 2024-3) applies that task's rule on originals. ``append=False`` leaves
    ``runs.jsonl`` alone; ``replace_records`` (the main job): records of the same points already in
    ``runs.jsonl`` are replaced, so a rerun after a kill adds no duplicates; ``on_phase(name)`` is called
    with ``"build"`` and ``"search"`` as the sweep enters each phase, ``on_record(record)`` with each
    record as soon as its point is done. ``backend`` may be a plug-in ``module:Class``
    (:func:`laionknn.indexes.registry.resolve_backend`)."""
    from laionknn.indexes.registry import resolve_backend

    backend = resolve_backend(backend)
    cls = get_backend(backend)
    check_metric(backend, target)
    k = check_k(k)
    threads, repeats = check_optional(check_threads, threads), check_optional(check_repeats, repeats)
    memory_limit = check_optional(check_memory_size, memory_limit, "--memory-limit")
    n, dim, _ = source_shape(target.database)
    if k > n:
        raise UsageError(f"k={k} is larger than the database {target.dataset} ({n} rows); ask for at most {n}")
    threads = int(threads or os.cpu_count() or 1)
    grid = grid or load_grid(backend, grid_file, dataset=target.dataset, n_rows=n, k=k, dim=dim)
    if quick:
        grid = grid.quick()
    if memory_limit is not None:
        from laionknn.indexes.memlimit import capped_sweep

        return capped_sweep(backend, target, k, out_dir, grid=grid, memory_limit=int(memory_limit), task=task,
                            threads=threads, repeats=repeats, use_cache=use_cache, gold_ids=gold_ids,
                            append=append, replace_records=replace_records)
    repeats = int(repeats or grid.repeats or 3)
    out_dir = Path(out_dir)
    fingerprint = data_fingerprint(target.database) if use_cache and cls.supports_save else None
    records: list[dict] = []
    facts = backend_facts(backend)
    from threadpoolctl import threadpool_limits

    from laionknn.io import write_result

    with threadpool_limits(limits=threads), progress_bar(f"{backend}", len(grid.build) * len(grid.query),
                                                          unit="points") as bar:
        for b, build_params in enumerate(grid.build):
            if on_phase:
                on_phase("build")
            shown = ",".join(f"{k}={v}" for k, v in build_params.items()) or "defaults"
            bar.describe(f"building {shown}")
            index, buildtime, cached, index_bytes = build_or_load(backend, target, build_params, threads=threads,
                                                                 fingerprint=fingerprint, use_cache=use_cache)
            if on_phase:
                on_phase("search")
            for q, changes in points_as_run(index, grid.query, k, on_skip=lambda: bar.advance(1)):
                bar.describe(f"{'cached' if cached else 'built'} {shown}; searching "
                             + (",".join(f"{key}={v}" for key, v in index.query_params.items()) or "defaults"))
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
                       "metric": Metric.parse(target.metric).value, "params": params, "build_params": dict(sorted(index.build_params.items())),
                       "query_params": dict(sorted(index.query_params.items())), "k": k,
                       "threads": threads, "n_queries": int(len(target.queries)), "buildtime": buildtime,
                       "querytime": querytime, "repeats": repeats, "querytimes": [round(t, 6) for t in times],
                       "qps": len(target.queries) / querytime if querytime > 0 else float("inf"),
                       "peak_rss_bytes": peak_rss_bytes(), "index_bytes": index_bytes, "cached": cached,
                       "queries_short": short, "file": str(path) if path else "",
                       "grid": grid.source, "grid_rules": _rules_note(grid, b, q), "knob_changes": "; ".join(changes),
                       **facts}
                if gold_ids is not None:
                    rec["recall"] = recall_at(result.ids, gold_ids, k)
                records.append(rec)
                if on_record:
                    on_record(rec)
                log.info("%s %s: %.3f s (%.0f QPS)%s", backend, params, querytime, rec["qps"],
                         f" recall {rec['recall']:.4f}" if "recall" in rec else "")
                bar.advance(1)
            del index
    if append:
        if replace_records:  # the main job: a rerun (after a kill) replaces its points, never duplicates them
            replace_run_records(out_dir / "runs.jsonl", records)
        else:  # a sweep of its own adds a measurement, even of a point measured before
            append_run_records(out_dir / "runs.jsonl", records)
    return records
