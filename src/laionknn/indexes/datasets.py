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


def open_target(name: str, *, n_queries: int = 10_000, catalogs=None, query_file=None, gold_file=None,
                metric=None):
    """``(spec, target, database VectorFile)`` for the database ``name``; close the VectorFile after use.

    ``name`` is a catalog name, or a user's file in any layout of :mod:`laionknn.io.formats` (official
    HDF5, ann-benchmarks HDF5, ``FILE#KEY``, ``.npy``, ``.fbin``). ``query_file`` (``--queries``: a file
    or a catalog name) and ``gold_file`` (``--gold``) name its companions; left out, they are found
    inside the file (ann-benchmarks ``test``/``neighbors``) or beside it (``my-db.queries.npy``,
    ``my-db.gold.h5``), and a missing gold standard is computed once by the exact engine. A catalog
    name given with ``query_file`` is searched with those queries (its own gold no longer applies).
    ``metric`` overrides the one the file states or its key implies."""
    from laionknn.io import VectorFile, read_vectors
    from laionknn.io.formats import is_user_file

    if is_user_file(name):
        return _open_plain(str(name), query_file, gold_file, metric=metric, catalogs=catalogs)
    spec = catalog.dataset(name, n_queries=n_queries, extra_catalogs=catalogs)
    if query_file is not None:
        return _open_plain(str(ensure_file(spec.database)), query_file, gold_file, metric=metric or spec.metric,
                           name=spec.name, catalogs=catalogs)
    db_path = ensure_file(spec.database)
    queries = read_vectors(ensure_file(spec.queries))
    if spec.metric is not Metric.HAMMING:
        queries = queries.astype(np.float32, copy=False)
    database = VectorFile(db_path)
    target = SweepTarget(database=database, queries=queries, metric=spec.metric, data=spec.family,
                         size=spec.subset, dataset=spec.name)
    return spec, target, database


def input_path(text: str, role: str = "database", catalogs=None) -> Path:
    """A file (any layout of :mod:`laionknn.io.formats`, as an official-layout path) or a catalog
    name (made present locally)."""
    from laionknn.io.formats import as_official, is_user_file

    if is_user_file(text):
        return as_official(text, role)
    return Path(ensure_file(catalog.resolve(str(text), catalogs)))


def key_metric(key: str) -> Metric:
    """The metric a vector key implies: l2 for ``pca32``/``pca96``/any ``pcaN``, hamming for
    ``hamming``, cosine otherwise (``emb`` and views)."""
    if key.startswith("pca") and key[3:].isdigit():
        return Metric.L2
    return KEY_FAMILY.get(key, ("", Metric.COSINE))[1]


def family_of(key: str, dim: int, metric: Metric) -> str:
    """The ``data`` label written into result files: the official family when the key, width and metric
    are those of one (``emb``/768/cosine -> clip768v2), else ``<metric>-d<dim>`` (``l2-d100``)."""
    family, default_metric = KEY_FAMILY.get(key, ("", None))
    official_dim = {"clip768v2": 768, "pca32v2": 32, "pca96v2": 96}.get(family)
    if family and metric is default_metric and (official_dim is None or official_dim == dim):
        return family
    return f"{metric.value}-d{dim}"


def _open_plain(text: str, query_file, gold_file, *, metric=None, name: str | None = None, catalogs=None):
    from laionknn.io import VectorFile, read_vectors
    from laionknn.io.formats import companions, detect, split_key, view_metric
    from laionknn.io.formats import gold_file as official_gold

    layout = detect(text)
    found_queries, found_gold = companions(text)
    queries_text = query_file or found_queries
    if queries_text is None:
        raise UsageError(f"{text} is a database file without queries: give them with --queries FILE (one query per "
                         f"row, same dimension), or put {layout.path.stem}.queries.npy (or .h5, .fbin) beside it")
    gold_text = gold_file or (found_gold if query_file is None else None)
    db_path = input_path(text, "database", catalogs)
    queries_path = input_path(str(queries_text), "queries", catalogs)
    database = VectorFile(db_path)
    try:
        stated = metric or layout.metric or view_metric(db_path)
        metric = Metric.parse(stated) if stated else key_metric(database.key)
        family = family_of(database.key, database.dim, metric)
        queries = read_vectors(queries_path)
        if queries.ndim != 2 or queries.shape[1] != database.dim:
            raise UsageError(f"--queries {queries_text}: queries have shape {queries.shape} but the database "
                             f"{text} has {database.dim} dimensions; give queries of the same dimension")
        if metric is not Metric.HAMMING:
            queries = queries.astype(np.float32, copy=False)
        spec = PlainDataset(name=name or split_key(text)[0].stem, family=family, subset=format_size(database.n),
                            metric=metric, database_path=db_path, queries_path=queries_path,
                            gold_path=official_gold(gold_text) if gold_text else None)
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
        from laionknn.io.formats import gold_file

        path = check_gold_path(gold_file(gold), spec.name)
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
