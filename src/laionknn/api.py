"""laionknn's Python API, re-exported at the top level (``laionknn.open_dataset`` ...); docs/api.md.

Conventions, the same in every function:

* **Orientation**: one vector per row. A database is ``(n, dim)``, queries ``(n_queries, dim)``, and
  every k-NN answer ``(n_queries, k)``: row ``i`` holds the neighbours of query ``i``, nearest first.
* **Ids**: 0-based row numbers of the database (int64; -1 where fewer than k were found). The official
  files on disk hold 1-based int32 ``knns``; laionknn converts when reading and writing them, so no id
  handed to or returned by this API is 1-based.
* **Distances**: float32, ascending: ``1 - cos`` for cosine, ``1 - dot`` for dot, squared L2 for l2,
  bit counts for hamming.
* **dtypes**: database rows stay in their file's dtype (float16 for the official clip768 files) and are
  converted to float32 one block at a time; queries are float32 (uint64 words for hamming sketches).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from laionknn.types import KnnResult, Metric

__all__ = ["Dataset", "KnnResult", "open_dataset", "gold", "search", "sweep", "evaluate", "report", "recall"]


@dataclass
class Dataset:
    """A database with its queries, as :func:`open_dataset` returns it. Close it (or use ``with``).

    ``database``: a :class:`laionknn.io.VectorFile` (``n`` rows of ``dim``, read block by block);
    ``queries``: an ndarray ``(n_queries, dim)`` float32 (uint64 for hamming); ``metric``: the
    :class:`laionknn.types.Metric` it is searched with; ``default_k``: 10 (2023 data, user files) or 30
    (2024 data); ``name``: the catalog name or the file's stem."""

    name: str
    metric: Metric
    database: Any
    queries: np.ndarray
    default_k: int
    spec: Any
    target: Any

    @property
    def n(self) -> int:
        return int(self.database.n)

    @property
    def dim(self) -> int:
        return int(self.database.dim)

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_dataset(database: "str | os.PathLike[str]", queries: "str | os.PathLike[str] | None" = None,
                 gold: "str | os.PathLike[str] | None" = None, *, metric: "str | Metric | None" = None,
                 n_queries: int = 10_000, catalogs: "list[str] | None" = None) -> Dataset:
    """Open a database and its queries.

    ``database``: a catalog name (``synthetic-v3-clip768v2-n=100K``, ``laion2B-en-clip768v2-n=300K``) or a
    file: official HDF5, ann-benchmarks HDF5 (``train``/``test``/``neighbors``/``distances``),
    ``FILE#KEY``, ``.npy`` or ``.fbin``. ``queries`` (a file or catalog name) and ``gold`` (an official
    gold file or an ann-benchmarks file) default to the catalog's, or to those inside or beside a file
    (``STEM.queries.npy``, ``STEM.gold.h5``). ``metric`` overrides the file's (ann-benchmarks ``distance``
    attribute; else l2 for ``pcaN`` keys, hamming for ``hamming``, cosine otherwise). ``n_queries``:
    synthetic datasets only. Returns a :class:`Dataset` (database rows are not read yet)."""
    from laionknn.indexes.datasets import open_target

    spec, target, db = open_target(str(database), n_queries=n_queries, catalogs=catalogs,
                                   query_file=None if queries is None else str(queries),
                                   gold_file=None if gold is None else str(gold),
                                   metric=None if metric is None else Metric.parse(metric).value)
    return Dataset(spec.name, target.metric, db, target.queries, spec.default_k, spec, target)


def gold(dataset: Dataset, k: int | None = None) -> KnnResult:
    """The exact k nearest neighbours of every query of ``dataset``: the given or discovered gold file,
    the catalog's (downloaded, or computed once for synthetic data), or, for a file without one, computed
    once by the exact engine and cached in the workspace. Returns :class:`KnnResult` with ``ids`` int64
    ``(n_queries, k)`` 0-based and ``dists`` float32 ascending; all the file's columns when ``k`` is None."""
    from laionknn.indexes.datasets import gold_for

    _, result = gold_for(dataset.spec, target=dataset.target, k=k)
    if k is None:
        return result
    return KnnResult(ids=result.ids[:, :k], dists=result.dists[:, :k], attrs=result.attrs)


def search(index: "str | type", dataset: Dataset, k: int | None = None, *, build: dict | None = None,
           query: dict | None = None, threads: int | None = None) -> KnnResult:
    """Build ``index`` once over ``dataset`` and search all its queries once.

    ``index``: a backend name (``hnswlib``, ``faiss-ivfflat``... see ``laionknn search --list``), a
    plug-in ``"module:Class"``, or an :class:`laionknn.indexes.base.Index` subclass. ``build`` / ``query``:
    parameters (the backend's defaults for those left out; an unknown key raises). Returns
    :class:`KnnResult`: ids int64 ``(n_queries, k)`` 0-based, dists float32 ascending."""
    cls = _index_class(index)
    idx = cls(dataset.metric, threads=threads, **(build or {}))
    idx.build(dataset.database)
    if query:
        idx.set_query_params(**query)
    return idx.search(dataset.queries, int(k or dataset.default_k))


def sweep(index: "str | type", dataset: Dataset, k: int | None = None, out: "str | os.PathLike[str] | None" = None,
          *, grid_file: "str | os.PathLike[str] | None" = None, quick: bool = False, threads: int | None = None,
          repeats: int | None = None, use_cache: bool = True) -> list[dict]:
    """Sweep ``index`` over its grid (its own, or ``grid_file``) on ``dataset``, exactly as ``laionknn
    search`` does: one official result file per point under ``out/results/<backend>/`` (1-based ``knns``
    on disk; ``laionknn.io.read_result`` gives them back 0-based) and one run record per point appended to ``out/runs.jsonl``. Returns the run records (dicts:
    ``algo``, ``params``, ``buildtime``, ``querytime`` (median seconds for all queries), ``qps``,
    ``recall`` (against :func:`gold` when one is known), ``file`` ...). ``out`` defaults to the
    workspace's ``runs/<dataset>-k<k>``."""
    from laionknn.indexes.mainjob import default_out_dir
    from laionknn.indexes.runner import sweep as run_sweep

    k = int(k or dataset.default_k)
    name = _index_name(index)
    try:
        gold_ids = gold(dataset, k).ids
    except Exception:  # no gold known: the records carry no recall, as in `laionknn search`
        gold_ids = None
    return run_sweep(name, dataset.target, k, Path(out) if out else default_out_dir(dataset.name, k),
                     grid_file=grid_file, quick=quick, threads=threads, repeats=repeats, use_cache=use_cache,
                     gold_ids=gold_ids)


def evaluate(results: "str | os.PathLike[str] | Iterable", gold: "str | os.PathLike[str] | Dataset",
             k: int | None = None, *, out: "str | os.PathLike[str] | None" = None, rule: str | None = None) -> list[dict]:
    """Score result files (files, or folders searched for ``*.h5``; a sweep's ``out`` folder) against a
    gold standard (a gold file, an ann-benchmarks file, a catalog name, or a :class:`Dataset`, whose gold
    :func:`gold` finds). One dict per file with the official columns (``data``, ``size``, ``algo``,
    ``buildtime``, ``querytime``, ``params``, ``recall``) and ``k``, ``qps``, ``recall_tie_aware``, ``file``;
    ``out`` also writes them as an evaluation CSV (the input of :func:`report`)."""
    from laionknn.evaluation import evaluate as score, write_eval_csv

    if isinstance(gold, Dataset):
        from laionknn.indexes.datasets import gold_for

        gold = gold_for(gold.spec, target=gold.target, k=k)[0]
    paths = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    rows = score([str(p) for p in paths], str(gold), k, rule=rule)
    if out is not None:
        write_eval_csv(rows, out)
    return rows


def report(evaluations: "str | os.PathLike[str] | Iterable", out: "str | os.PathLike[str]") -> dict[str, Path]:
    """Write the report (report.md, report.html, recall-QPS figures, operating points and Pareto
    frontiers as CSV/JSON) into ``out`` from evaluation CSVs (paths) or from :func:`evaluate`'s rows.
    Returns the paths written, by kind (``markdown``, ``html``, ``plot:<data>:<size>:k<k>`` ...)."""
    from laionknn.reporting import write_report

    out = Path(out)
    items = [evaluations] if isinstance(evaluations, (str, os.PathLike)) else list(evaluations)
    if items and isinstance(items[0], dict):
        from laionknn.evaluation import write_eval_csv

        out.mkdir(parents=True, exist_ok=True)
        items = [write_eval_csv(items, out / "evaluation.csv")]
    return dict(write_report([str(p) for p in items], out))


def recall(ids: np.ndarray, gold: "KnnResult | np.ndarray", k: int) -> float:
    """Recall@k by the challenge's rule: the share of each query's first ``k`` gold ids found among its
    first ``k`` answered ids, averaged over queries. ``ids``: ``(n_queries, >= k)`` 0-based; ``gold``: a
    :class:`KnnResult` or an ids array of the same orientation and id base."""
    from laionknn.evaluation.recall import recall as official

    return float(official(np.asarray(ids), gold, k))


def _index_class(index: "str | type") -> type:
    from laionknn.indexes.base import Index
    from laionknn.indexes.registry import get_backend

    if isinstance(index, type):
        from laionknn.indexes.registry import check_plugin

        if not issubclass(index, Index):
            check_plugin(index.__name__, index)  # raises the one-line UsageError
        return index
    return get_backend(_index_name(index))


def _index_name(index: "str | type") -> str:
    """The registry name of ``index`` (a class is registered as a plug-in under its module:Class)."""
    from laionknn.indexes.registry import register_class, resolve_backend

    if isinstance(index, type):
        return register_class(index)
    return resolve_backend(str(index))
