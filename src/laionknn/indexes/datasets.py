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


def open_target(name: str, *, n_queries: int = 10_000, catalogs=None, query_file=None, gold_file=None):
    """``(spec, target, database VectorFile)`` for the database ``name`` (a catalog name, or a plain
    HDF5 file with ``query_file``); close the VectorFile after use."""
    from laionknn.io import VectorFile, read_vectors

    if Path(str(name)).expanduser().is_file():
        return _open_plain(Path(str(name)).expanduser(), query_file, gold_file)
    if query_file is not None or gold_file is not None:
        raise UsageError(f"--query-file and --gold go with a plain database file; {name!r} is not a file "
                         f"(catalog names bring their own queries and gold standard)")
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
    """The gold file of a plain dataset: ``--gold``, or the exact k-NN computed once (resumable)."""
    if spec.gold_path is not None:
        if not spec.gold_path.is_file():
            raise UsageError(f"--gold {spec.gold_path}: no such file; give a gold file or leave --gold out "
                             f"to compute one with the exact engine")
        return spec.gold_path
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


def gold_for(spec) -> tuple[Path, KnnResult]:
    """The gold standard of ``spec`` (0-based ids): downloaded for official data, computed by the
    exact engine (``catalog.ensure`` → ``exact.gold_standard``) for synthetic data and for plain files
    given without ``--gold``."""
    from laionknn.io import read_gold

    if isinstance(spec, PlainDataset):
        path = _plain_gold(spec)
        return path, read_gold(path)
    if spec.gold is None:
        raise CatalogError(f"{spec.name}: the catalog lists no gold standard for this database")
    path = Path(ensure_file(spec.gold))
    return path, read_gold(path)
