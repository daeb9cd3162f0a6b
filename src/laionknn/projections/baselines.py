"""Brute-force baselines over every projection of a dataset, scored against the clip768 gold.

This reproduces the organisers' table (data, size, recall@30, recall@10, query seconds, QPS) for
pca32, pca96, BinWalk and the learned sketches at 64…1024 bits, and writes the rows as a CSV with the
evaluation columns (``data,size,algo,buildtime,querytime,params,recall,k,qps,recall_tie_aware,file``)
so ``laionknn report`` reads it.

Brute force: ``engine='kernels'`` (default) uses the exact numba kernels of
:mod:`laionknn.projections.kernels` (squared L2 for PCA, Hamming for sketches; ties to the lower id, the
same answers as :func:`laionknn.exact.knn`); ``engine='exact'`` calls :func:`laionknn.exact.knn`.
Query time covers all queries, projected vectors already in memory (as in the challenge).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.io import VectorFile, read_gold, read_vectors, write_gold
from laionknn.projections import apply as papply
from laionknn.types import KnnResult, Metric

log = logging.getLogger(__name__)

CSV_COLUMNS = ("data", "size", "algo", "buildtime", "querytime", "params", "recall", "k", "qps",
               "recall_tie_aware", "file")
DEFAULT_BITS = (64, 128, 256, 512, 1024)
DEFAULT_METHODS = ("itq", "hiob", "cfsrp")


@dataclass
class Projection:
    data: str          # table label: pca32v2, pca96v2, hammingv2, sketch-itq-1024 ...
    metric: Metric
    db: np.ndarray
    queries: np.ndarray
    buildtime: float
    params: str
    file: str


def _brute(db: np.ndarray, q: np.ndarray, k: int, metric: Metric, engine: str) -> tuple[KnnResult, float]:
    from laionknn.projections import kernels

    t0 = time.perf_counter()
    if engine == "exact":
        from laionknn import exact

        res = exact.knn(db, q, k, metric)
    elif metric is Metric.HAMMING:
        res = kernels.hamming_knn(db, q, k)
    else:
        res = kernels.l2_knn(db, q, k)
    return res, time.perf_counter() - t0


def _gold(db_path: Path, q_path: Path, gold_path: "Path | None", k: int, engine: str) -> KnnResult:
    """The clip768 gold (k ≥ max ks). Read when given and deep enough; otherwise computed once with the
    exact engine (cosine) and cached in the workspace's gold folder, 20 columns deeper than ``k`` so the
    tie-aware recall can see ties beyond the k-th neighbour."""
    from laionknn import workspace

    if gold_path is not None and Path(gold_path).exists():
        g = read_gold(gold_path)
        if g.k >= k:
            return g
        log.warning("gold %s has k=%d < %d; computing a deeper one", gold_path, g.k, k)
    with VectorFile(db_path) as vf:
        k = min(vf.n, k + 20)
    cache = workspace.gold_dir() / f"bruteforce-gold-{db_path.stem}--{q_path.stem}-k={k}.h5"
    if cache.exists():
        return read_gold(cache)
    from laionknn import exact

    with VectorFile(db_path) as vf:
        queries = read_vectors(q_path)
        log.info("computing the clip768 gold standard (k=%d) for %s", k, db_path.name)
        g = exact.knn(vf, queries, k, Metric.COSINE)
    write_gold(cache, g)
    return g


def _resolve_dataset(dataset_name, database, queries, gold, catalogs):
    if dataset_name is not None:
        from laionknn import catalog

        spec = catalog.dataset(dataset_name, extra_catalogs=catalogs)
        db_path = Path(catalog.ensure(spec.database))
        q_path = Path(catalog.ensure(spec.queries))
        gold_path = None
        if spec.gold is not None:
            local = catalog.local_path(spec.gold)
            gold_path = local if local.exists() else None
        return db_path, q_path, gold_path, spec.subset
    if database is None or queries is None:
        raise UsageError("give a dataset name, or both a database file and a query file")
    from laionknn.types import format_size

    with VectorFile(database) as vf:
        size = format_size(vf.n)
    return Path(database), Path(queries), (Path(gold) if gold else None), size


def build_projections(db_path: Path, q_path: Path, out_dir: Path, *, bits=DEFAULT_BITS, methods=DEFAULT_METHODS,
                      pca_dims=(32, 96), fit_rows: int | None = None, sketch_fit_rows: int = 100_000,
                      binwalk: bool = True, srp: bool = False, seed: int = 0):
    """Yield :class:`Projection` objects one at a time (files written under ``out_dir``)."""
    from laionknn.projections import pca as ppca
    from laionknn.projections import sketches

    def read(p, dim=None):  # projected files are small enough to hold
        return read_vectors(p, expect_dim=dim)

    for dims in pca_dims:
        t0 = time.perf_counter()
        with VectorFile(db_path) as vf:
            model = ppca.fit_pca(vf, dims, fit_rows=fit_rows)
        model.save(out_dir / f"pca{dims}-model-{db_path.stem}.npz")
        fdb = papply.pca_file(model, db_path, out_dir)
        fq = papply.pca_file(model, q_path, out_dir)
        yield Projection(f"pca{dims}v2", Metric.L2, read(fdb), read(fq), time.perf_counter() - t0,
                         f"dims={dims} fit_rows={model.n_fit}", str(fdb))  # rows really fitted on
    if binwalk:
        t0 = time.perf_counter()
        fdb = papply.binwalk_file(db_path, out_dir)
        fq = papply.binwalk_file(q_path, out_dir)
        yield Projection("hammingv2", Metric.HAMMING, read(fdb), read(fq), time.perf_counter() - t0,
                         "binwalk nrefs=1024 permsize=64", str(fdb))
    for method in ((("srp",) if srp else ()) + tuple(methods)):
        for b in bits:
            t0 = time.perf_counter()
            with VectorFile(db_path) as vf:
                model = sketches.fit_sketch(vf, b, method, fit_rows=sketch_fit_rows, seed=seed)
            model.save(out_dir / f"sketch-{method}-{b}-model-{db_path.stem}.npz")
            fdb = papply.sketch_file(model, db_path, out_dir)
            fq = papply.sketch_file(model, q_path, out_dir)
            yield Projection(f"sketch-{method}-{b}", Metric.HAMMING, read(fdb, b // 64), read(fq, b // 64), time.perf_counter() - t0,
                             f"method={method} bits={b} fit_rows={model.meta['n_fit']} seed={seed}", str(fdb))


def run_baselines(dataset_name: str | None = None, ks=(10, 30), out_dir: "str | os.PathLike[str] | None" = None, *,
                  database=None, queries=None, gold=None, bits=DEFAULT_BITS, methods=DEFAULT_METHODS,
                  srp: bool = False, fit_rows: int | None = None, sketch_fit_rows: int = 100_000,
                  engine: str = "kernels", seed: int = 0, catalogs=None, on_row=None) -> Path:
    """Brute-force every projection of a dataset and score it; returns the CSV path.

    ``dataset_name`` (catalog database name) or ``database``/``queries`` files (+ optional ``gold``).
    ``ks``: recall cut-offs (each row of the CSV is one projection at one k). ``on_row(dict)`` is called
    for every CSV row as soon as it is measured (the CLI prints the table from it).
    """
    from laionknn.evaluation import recall, recall_tie_aware

    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise UsageError(f"--k needs positive integers, got {ks}")
    if engine not in ("kernels", "exact"):
        raise UsageError(f"engine must be 'kernels' or 'exact', got {engine!r}")
    from laionknn.projections.sketches import METHODS, check_bits

    for b in bits:
        check_bits(b)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise UsageError(f"unknown sketch method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    db_path, q_path, gold_path, size = _resolve_dataset(dataset_name, database, queries, gold, catalogs)
    out = papply.out_dir_or_default(out_dir)
    kmax = max(ks)
    g = _gold(db_path, q_path, gold_path, max(kmax, 30), engine)
    rows: list[dict] = []
    csv_path = out / f"baselines-{db_path.stem}.csv"
    for proj in build_projections(db_path, q_path, out, bits=bits, methods=methods, fit_rows=fit_rows,
                                  sketch_fit_rows=sketch_fit_rows, srp=srp, seed=seed):
        res, qtime = _brute(proj.db, proj.queries, kmax, proj.metric, engine)
        for k in ks:
            row = {"data": proj.data, "size": size, "algo": f"bruteforce-{proj.metric.name.lower()}",
                   "buildtime": round(proj.buildtime, 3), "querytime": round(qtime, 4), "params": proj.params,
                   "recall": round(recall(res.ids[:, :k], g, k), 5), "k": k,
                   "qps": round(proj.queries.shape[0] / qtime, 2) if qtime > 0 else float("inf"),
                   "recall_tie_aware": round(recall_tie_aware(res.ids[:, :k], g, k), 5), "file": proj.file}
            rows.append(row)
            if on_row is not None:
                on_row(row)
        _write_csv(csv_path, rows)
    return csv_path


def _write_csv(path: Path, rows: list[dict]) -> None:
    from laionknn.fsutil import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def table_rows(rows: list[dict]) -> list[list]:
    """Organisers' layout: one line per projection with recall@30 and recall@10 side by side."""
    by: dict[str, dict] = {}
    for r in rows:
        e = by.setdefault(r["data"], {"data": r["data"], "size": r["size"], "querytime": r["querytime"], "qps": r["qps"]})
        e[f"r{r['k']}"] = r["recall"]
    return [[e["data"], e["size"], e.get("r30", ""), e.get("r10", ""), e["querytime"], e["qps"]] for e in by.values()]
