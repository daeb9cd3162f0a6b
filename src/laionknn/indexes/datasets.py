"""From a catalog name or a plain file to what the runner searches: files made present (downloaded and
verified, or synthesised), the database opened as a block source, the queries read, the gold standard
loaded or computed.

A plain file (``--data my-vectors.h5``, any name) needs its queries (``--query-file``); its gold
standard is ``--gold FILE`` when given, else computed once by the exact engine (k = 100, cosine for
768-d float data, squared L2 for pca files, Hamming for sketches) into the workspace's gold folder.
Grids treat both alike: they are chosen by the database's row count, never by its name."""

from __future__ import annotations

import logging
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laionknn import catalog
# the function itself: after its first call, `catalog.ensure` names the submodule (import side effect)
from laionknn.catalog.ensure import ensure as ensure_file
from laionknn import workspace
from laionknn.errors import CatalogError, UsageError
from laionknn.indexes.base import source_shape
from laionknn.indexes.runner import SweepTarget
from laionknn.types import KnnResult, Metric, format_size

log = logging.getLogger(__name__)

#: file family (as written into result files) and metric of a plain file, by its HDF5 key
KEY_FAMILY = {"emb": ("clip768v2", Metric.COSINE), "pca32": ("pca32v2", Metric.L2),
              "pca96": ("pca96v2", Metric.L2), "hamming": ("hammingv2", Metric.HAMMING)}
PLAIN_GOLD_K = 100


@dataclass(frozen=True)
class PlainDataset:
    """A database given as a file path rather than a catalog name (the fields the runner uses of a
    :class:`laionknn.catalog.DatasetSpec`)."""

    name: str
    family: str
    subset: str
    metric: Metric
    database_path: Path
    queries_path: Path
    gold_path: Path | None
    default_k: int = 10
    synthetic: bool = False


def open_target(name: str, *, n_queries: int = 10_000, catalogs=None, query_file=None, gold_file=None):
    """``(spec, target, database VectorFile)`` for the database ``name`` (a catalog name, or a plain
    HDF5 file with ``query_file`` and optionally ``gold_file``, kept for :func:`gold_for`); close the
    VectorFile after use. A catalog name takes no ``query_file``; its ``--gold`` goes to :func:`gold_for`."""
    from laionknn.io import VectorFile, read_vectors

    if Path(str(name)).expanduser().is_file():
        return _open_plain(Path(str(name)).expanduser(), query_file, gold_file)
    if query_file is not None:
        raise UsageError(f"--query-file: given queries go with a plain database file; {name!r} is not a file "
                         f"(catalog names bring their own queries; --gold FILE may replace their gold standard)")
    spec = catalog.dataset(name, n_queries=n_queries, extra_catalogs=catalogs)
    db_path = ensure_file(spec.database)
    queries = read_vectors(ensure_file(spec.queries))
    if spec.metric is not Metric.HAMMING:
        queries = queries.astype(np.float32, copy=False)
    database = VectorFile(db_path)
    target = SweepTarget(database=database, queries=queries, metric=spec.metric, data=spec.family,
                         size=spec.subset, dataset=spec.name)
    return spec, target, database


def _open_plain(path: Path, query_file, gold_file):
    from laionknn.io import VectorFile, read_vectors

    if query_file is None:
        raise UsageError(f"{path} is a plain database file: give its queries with --query-file FILE "
                         f"(one query per row, same dimension)")
    database = VectorFile(path)
    try:
        family, metric = KEY_FAMILY.get(database.key, ("clip768v2", Metric.COSINE))
        queries = read_vectors(Path(query_file).expanduser())
        if queries.ndim != 2 or queries.shape[1] != database.dim:
            raise UsageError(f"--query-file {query_file}: queries have shape {queries.shape} but the database "
                             f"{path} has {database.dim} dimensions; give queries of the same dimension")
        if metric is not Metric.HAMMING:
            queries = queries.astype(np.float32, copy=False)
        spec = PlainDataset(name=path.stem, family=family, subset=format_size(database.n), metric=metric,
                            database_path=path, queries_path=Path(query_file).expanduser(),
                            gold_path=Path(gold_file).expanduser() if gold_file else None)
    except BaseException:
        database.close()
        raise
    target = SweepTarget(database=database, queries=queries, metric=metric, data=family, size=spec.subset,
                         dataset=spec.name)
    return spec, target, database


def _plain_gold(spec: PlainDataset) -> Path:
    """The exact k-NN of a plain dataset given without ``--gold``, computed once (resumable)."""
    from laionknn.exact import gold_standard

    stamp = hashlib.sha256(f"{spec.database_path.resolve()}:{spec.database_path.stat().st_mtime_ns}:"
                           f"{spec.queries_path.resolve()}:{spec.queries_path.stat().st_mtime_ns}".encode())
    out = workspace.gold_dir() / f"gold-{spec.name}--{spec.queries_path.stem}-k={PLAIN_GOLD_K}-{stamp.hexdigest()[:12]}.h5"
    if not out.is_file():
        log.info("computing the exact gold standard of %s (k=%d) into %s", spec.name, PLAIN_GOLD_K, out)
        from laionknn.io import VectorFile

        with VectorFile(spec.database_path) as vf:
            k = min(PLAIN_GOLD_K, vf.n)
        gold_standard(spec.database_path, spec.queries_path, k, metric=spec.metric, out=out, resume=True)
    return out


def check_gold_path(gold: "str | Path", dataset: str = "") -> Path:
    """``gold`` (a ``--gold`` file) as a path, refused in one line unless it is an existing file; the
    main job calls it before any data is made, :func:`gold_for` again before reading it."""
    path = Path(gold).expanduser()
    if not path.is_file():
        raise UsageError(f"--gold {path}: {'is a folder' if path.is_dir() else 'no such file'}; pass the file "
                         f"`laionknn gold` wrote, or leave --gold out to use the catalog's gold standard"
                         + (f" of {dataset}" if dataset else ""))
    return path


def gold_for(spec, gold: "str | Path | None" = None, *, target: SweepTarget | None = None,
             k: int | None = None) -> tuple[Path, KnnResult]:
    """The gold standard of ``spec`` (0-based ids).

    ``gold``: a gold file to use as given (``laionknn gold``'s output, say; for a plain database file
    also its ``--gold``), checked against ``target`` (same number of queries, ids inside the database,
    at least ``k`` columns). Without it, the catalog's gold of the dataset: downloaded for official
    data, computed once by the exact engine (``catalog.ensure`` → ``exact.gold_standard``) for
    synthetic data and for plain files, and reused by every later step.
    """
    from laionknn.io import read_gold

    if gold is None and isinstance(spec, PlainDataset):
        gold = spec.gold_path  # a plain file's --gold given to open_target
        if gold is None:
            path = _plain_gold(spec)
            return path, read_gold(path)
    if gold is not None:
        path = check_gold_path(gold, spec.name)
        g = read_gold(path)
        if target is not None:
            n_q, n_db = len(target.queries), source_shape(target.database)[0]
            if g.n_queries != n_q:
                raise UsageError(f"--gold {path.name} has {g.n_queries} queries but {spec.name} is searched with "
                                 f"{n_q}; compute the gold on the same query file")
            if g.ids.size and int(g.ids.max()) >= n_db:
                raise UsageError(f"--gold {path.name} refers to row {int(g.ids.max()) + 1} but {spec.name} has "
                                 f"{n_db} rows; compute the gold on this database")
        if k is not None and g.k < k:
            raise UsageError(f"--gold {path.name} holds {g.k} neighbours per query, fewer than k={k}; "
                             f"compute it with `laionknn gold --k {k}` or more")
        log.info("gold standard: %s (given)", path)
        return path, g
    if spec.gold is None:
        raise CatalogError(f"{spec.name}: the catalog lists no gold standard for this database")
    from laionknn.catalog import local_path

    if not local_path(spec.gold).exists():
        log.warning("no gold standard for %s yet: %s %s (once; later steps reuse it; pass --gold FILE to use "
                    "another)", spec.name, "computing the exact" if spec.gold.synthetic else "fetching",
                    local_path(spec.gold))
    path = Path(ensure_file(spec.gold))
    return path, read_gold(path)
