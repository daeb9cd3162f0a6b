"""From a catalog name to what the runner searches: files made present, database opened as a block
source, queries read, gold standard loaded or computed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from laionknn import catalog
from laionknn.errors import CatalogError
from laionknn.indexes.runner import SweepTarget
from laionknn.types import KnnResult, Metric

log = logging.getLogger(__name__)
GOLD_K = 100


def ensure_file(record) -> Path:
    """Local path of ``record``'s file, synthesised or downloaded (and verified) when needed.

    A synthetic file already present is used as is (it has no published checksum to verify)."""
    local = catalog.local_path(record)
    if record.synthetic and local.is_file():
        return local
    try:
        return Path(catalog.ensure(record))
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("laionknn"):
            raise CatalogError(f"{record.name}: not present at {local}, and this build cannot fetch or synthesise "
                               f"it ({exc.name} is missing); put the file there or install the full package") from None
        raise


def open_target(name: str, *, n_queries: int = 10_000, catalogs=None):
    """``(spec, target, database VectorFile)`` for the database ``name``; close the VectorFile after use."""
    from laionknn.io import VectorFile, read_vectors

    spec = catalog.dataset(name, n_queries=n_queries, extra_catalogs=catalogs)
    db_path = ensure_file(spec.database)
    q_path = ensure_file(spec.queries)
    queries = read_vectors(q_path)
    if spec.metric is not Metric.HAMMING:
        queries = queries.astype(np.float32, copy=False)
    database = VectorFile(db_path)
    target = SweepTarget(database=database, queries=queries, metric=spec.metric, data=spec.family,
                         size=spec.subset, dataset=spec.name)
    return spec, target, database


def gold_for(spec, *, k: int = GOLD_K, catalogs=None) -> tuple[Path, KnnResult]:
    """The gold standard of ``spec``: loaded when present (downloaded for official data), computed by
    the exact engine for synthetic data (against the clip768v2 database of the same subset)."""
    from laionknn.io import read_gold

    if spec.gold is None:
        raise CatalogError(f"{spec.name}: the catalog lists no gold standard for this database")
    path = catalog.local_path(spec.gold)
    if not path.is_file():
        if spec.gold.synthetic:
            path = _compute_synthetic_gold(spec, path, k, catalogs)
        else:
            path = ensure_file(spec.gold)
    return path, read_gold(path)


def _compute_synthetic_gold(spec, path: Path, k: int, catalogs) -> Path:
    from laionknn import exact
    from laionknn.io import VectorFile, read_vectors, write_gold

    seed = spec.database.seed or 0
    clip = spec
    if spec.family != "clip768v2":  # projections are scored against the clip768v2 gold of their subset
        name = f"synthetic-clip768v2-n={spec.subset}" + (f"-seed={seed}" if seed else "")
        clip = catalog.dataset(name, n_queries=spec.gold.extra.get("n_queries", 10_000), extra_catalogs=catalogs)
    db_path, q_path = ensure_file(clip.database), ensure_file(clip.queries)
    with VectorFile(db_path) as vf:
        k = min(k, vf.n)
    log.info("computing the gold standard of %s (k=%d)", spec.name, k)
    if hasattr(exact, "gold_standard"):
        return Path(exact.gold_standard(db_path, q_path, k, normalize=True, out=path, memory=None, resume=True))
    with VectorFile(db_path) as vf:
        res = exact.knn(vf, read_vectors(q_path), k, Metric.COSINE)
    return write_gold(path, res, attrs={"algo": "laionknn.exact", "metric": "cosine"})
