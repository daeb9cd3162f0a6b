"""Exports of a run folder (``runs.jsonl`` and the official result files it names) in the layouts the
field's other tools read.

``ann-benchmarks``: one HDF5 file per run at ``results/<dataset>/<count>/<algo>/<name>.hdf5``, as
ann-benchmarks' ``ann_benchmarks/results.py`` (``store_results``, ``load_all_results``) writes and its
``data_export.py`` / ``plot.py`` read: attributes ``algo``, ``dataset``, ``count``, ``distance``,
``build_time``, ``best_search_time`` (seconds per query), ``candidates``, ``name``, ``run_count``,
``expect_extra``, ``batch_mode``, ``index_size`` (kB); datasets ``times`` (per query, seconds),
``neighbors`` (int32, 0-based, -1 missing) and ``distances`` (float32, in ann-benchmarks' metric:
euclidean not squared, angular ``1 - cos``). laionknn times all queries in one batch call, so each
query's time is the batch's median time divided by the number of queries (``batch_mode`` true).

``big-ann``: the same path layout with ``.hdf5`` files as big-ann-benchmarks' ``benchmark/results.py``
(``store_results``, ``add_results_to_h5py``) writes for ``knn`` runs: attributes ``algo``, ``dataset``,
``count``, ``distance``, ``type`` (knn), ``build_time``, ``best_search_time``, ``name``, ``run_count``,
``index_size``, ``private_queries``; dataset ``neighbors`` (int32, 0-based).

In both, ``<name>`` is the run's build and query parameters as their ``get_result_filename`` spells them:
the JSON text of ``[build_params, query_params]`` with every run of non-word characters made ``_``.

``csv``: one row per run record (nested parameters as JSON text); ``json``: a list of the run records.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.fsutil import atomic_path

FORMATS = ("ann-benchmarks", "big-ann", "csv", "json")
#: laionknn metric -> the distance names of ann-benchmarks and big-ann-benchmarks
DISTANCE = {"cosine": "angular", "l2": "euclidean", "hamming": "hamming", "dot": "ip"}
FAMILY_METRIC = {"clip768v2": "cosine", "pca32v2": "l2", "pca96v2": "l2", "hammingv2": "hamming"}


def record_metric(rec: dict) -> str:
    """The metric of a run record: its ``metric`` field, else implied by its ``data`` label (an official
    family, or a user file's ``<metric>-d<dim>``)."""
    if rec.get("metric"):
        return str(rec["metric"])
    data = str(rec.get("data", ""))
    if data in FAMILY_METRIC:
        return FAMILY_METRIC[data]
    head, sep, _ = data.partition("-d")
    return head if sep and head in DISTANCE else "cosine"


def run_name(rec: dict) -> str:
    """``<name>`` of the file: the JSON of ``[build_params, query_params]`` with non-word runs as ``_``
    (big-ann-benchmarks keeps the last 149 characters of a longer one)."""
    params = [rec.get("build_params") or {}, rec.get("query_params") or {}]
    name = re.sub(r"\W+", "_", json.dumps(params, sort_keys=True)).strip("_") or "defaults"
    return name if len(name) <= 150 else name[-149:]


def _records(run_dir: Path) -> list[dict]:
    from laionknn.results.records import read_run_records

    path = run_dir / "runs.jsonl"
    if not path.is_file():
        raise UsageError(f"{run_dir}: no runs.jsonl; give the folder `laionknn search --out` or `laionknn run` wrote")
    records = [r for r in read_run_records(path) if r.get("file")]
    if not records:
        raise UsageError(f"{path}: no run with a result file to export")
    return records


def export_runs(run_dir: "str | Path", fmt: str, out: "str | Path", *, dataset: str | None = None) -> list[Path]:
    """Write the runs of ``run_dir`` in ``fmt`` (:data:`FORMATS`) under ``out``; ``dataset`` replaces the
    records' dataset name in the paths and attributes (e.g. ``glove-100-angular``). Returns the files."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run_dir, out = Path(run_dir), Path(out)
    records = _records(run_dir)
    if fmt == "json":
        path = out / "runs.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
        return [path]
    if fmt == "csv":
        return [_write_csv(records, out / "runs.csv")]
    return [_write_hdf5(rec, out, fmt, dataset) for rec in records]


def _write_csv(records: list[dict], path: Path) -> Path:
    columns: list[str] = []
    for r in records:
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({c: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else ("" if v is None else v)
                    for c, v in ((c, r.get(c)) for c in columns)})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _write_hdf5(rec: dict, out: Path, fmt: str, dataset: str | None) -> Path:
    import h5py

    from laionknn.io import read_result

    result = read_result(rec["file"])
    ids = result.ids.astype(np.int32)
    n_queries, count = ids.shape
    metric = record_metric(rec)
    name = dataset or str(rec.get("dataset") or rec.get("data"))
    path = out / "results" / name / str(count) / str(rec["algo"]) / f"{run_name(rec)}.hdf5"
    per_query = float(rec["querytime"]) / n_queries
    attrs = {"algo": str(rec["algo"]), "dataset": name, "count": int(count), "distance": DISTANCE.get(metric, metric),
             "build_time": float(rec["buildtime"]), "best_search_time": per_query,
             "name": f"{rec['algo']}({rec.get('params', '')})", "run_count": int(rec.get("repeats") or 1),
             "index_size": float(rec.get("index_bytes") or 0) / 1024}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        if fmt == "ann-benchmarks":
            attrs.update(candidates=float(count), expect_extra=False, batch_mode=True)
            dists = np.asarray(result.dists, dtype=np.float64)
            if metric == "l2":
                dists = np.sqrt(np.maximum(dists, 0.0))
            f.create_dataset("times", data=np.full(n_queries, per_query, dtype=np.float32))
            f.create_dataset("neighbors", data=ids)
            f.create_dataset("distances", data=dists.astype(np.float32))
        else:
            attrs.update(type="knn", private_queries=False)
            f.create_dataset("neighbors", data=ids)
        for key, value in attrs.items():
            f.attrs[key] = value
    return path

