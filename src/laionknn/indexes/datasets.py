"""From a catalog name to what the runner searches: files made present (downloaded and verified, or
synthesised), the database opened as a block source, the queries read, the gold standard loaded or
computed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from laionknn import catalog
# the function itself: after its first call, `catalog.ensure` names the submodule (import side effect)
from laionknn.catalog.ensure import ensure as ensure_file
from laionknn.errors import CatalogError, UsageError
from laionknn.indexes.base import source_shape
from laionknn.indexes.runner import SweepTarget
from laionknn.types import KnnResult, Metric

log = logging.getLogger(__name__)


def open_target(name: str, *, n_queries: int = 10_000, catalogs=None):
    """``(spec, target, database VectorFile)`` for the database ``name``; close the VectorFile after use."""
    from laionknn.io import VectorFile, read_vectors

    spec = catalog.dataset(name, n_queries=n_queries, extra_catalogs=catalogs)
    db_path = ensure_file(spec.database)
    queries = read_vectors(ensure_file(spec.queries))
    if spec.metric is not Metric.HAMMING:
        queries = queries.astype(np.float32, copy=False)
    database = VectorFile(db_path)
    target = SweepTarget(database=database, queries=queries, metric=spec.metric, data=spec.family,
                         size=spec.subset, dataset=spec.name)
    return spec, target, database


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

    ``gold``: a gold file to use as given (``laionknn gold``'s output, say), checked against ``target``
    (same number of queries, ids inside the database, at least ``k`` columns). Without it, the
    catalog's gold of the dataset: downloaded for official data, computed once by the exact engine
    (``catalog.ensure`` → ``exact.gold_standard``) for synthetic data and reused by every later step.
    """
    from laionknn.io import read_gold

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
