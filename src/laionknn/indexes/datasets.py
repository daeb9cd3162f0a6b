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
from laionknn.errors import CatalogError
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


def gold_for(spec) -> tuple[Path, KnnResult]:
    """The gold standard of ``spec`` (0-based ids): downloaded for official data, computed by the
    exact engine (``catalog.ensure`` → ``exact.gold_standard``) for synthetic data."""
    from laionknn.io import read_gold

    if spec.gold is None:
        raise CatalogError(f"{spec.name}: the catalog lists no gold standard for this database")
    path = Path(ensure_file(spec.gold))
    return path, read_gold(path)
