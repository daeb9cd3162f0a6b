"""Datasets: a database file with the query file and gold standard that belong to it.

``dataset(name)`` maps a database name (official or synthetic) to its companions, so the runner can
take ``--data NAME`` alone. Scoring of projections is against the clip768 gold of the same subset.
"""

from __future__ import annotations

from dataclasses import dataclass

from laionknn.catalog.manifest import (Record, all_records, resolve, synthetic_gold_name,
                                       synthetic_queries_name)
from laionknn.errors import CatalogError
from laionknn.types import Metric

FAMILY_METRIC = {"clip768v2": Metric.COSINE, "pca32v2": Metric.L2, "pca96v2": Metric.L2,
                 "hammingv2": Metric.HAMMING}


@dataclass(frozen=True)
class DatasetSpec:
    """A database with its queries and (when known) gold standard. ``default_k`` follows the year
    of the gold standard: 10 for 2023 files, 30 for 2024 ones."""

    name: str
    family: str
    subset: str
    database: Record
    queries: Record
    gold: Record | None
    metric: Metric
    default_k: int

    @property
    def synthetic(self) -> bool:
        return self.database.synthetic


def _official_companions(db: Record, records: dict[str, Record]) -> tuple[Record, Record | None, int]:
    size = db.subset
    if db.family == "clip768v2":
        gold_names = [f"laion2B-en-public-gold-standard-v2-{size}-F64-IEEE754", f"laion2B-en-public-gold-standard-v2-{size}"]
        if all(g not in records for g in gold_names):
            # 1M only has 2024 gold
            q = records["public-queries-2024-laion2B-en-clip768v2-n=10k"]
            g = records.get(f"gold-standard-dbsize={size}--public-queries-2024-laion2B-en-clip768v2-n=10k")
            return q, g, 30
        q = records["public-queries-10k-clip768v2"]
    else:
        q = records[f"public-queries-10k-{db.family}"]
        gold_names = [f"laion2B-en-public-gold-standard-v2-{size}-F64-IEEE754", f"laion2B-en-public-gold-standard-v2-{size}"]
    gold = next((records[g] for g in gold_names if g in records), None)
    return q, gold, 10


def dataset(name: str, n_queries: int = 10_000, extra_catalogs=None) -> DatasetSpec:
    """Resolve a database name into a :class:`DatasetSpec` (no I/O)."""
    db = resolve(name, extra_catalogs)
    if db.kind != "database":
        raise CatalogError(f"{name!r} is a {db.kind} file; --data takes a database name such as "
                           f"synthetic-v3-clip768v2-n=100K or laion2B-en-clip768v2-n=300K")
    if db.synthetic:
        seed = db.seed or 0
        fitted = None if db.family == "clip768v2" else db.subset
        gen = db.generator or "v2"
        q = resolve(synthetic_queries_name(n_queries, seed, db.family, fitted_on=fitted, generator=gen))
        g = resolve(synthetic_gold_name(db.subset, n_queries, seed, generator=gen))
        k = 10
    else:
        records = {r.name: r for r in all_records(extra_catalogs)}
        try:
            q, g, k = _official_companions(db, records)
        except KeyError as exc:
            raise CatalogError(f"{name!r} has no known query file ({exc.args[0]} is not in the catalog)") from None
    return DatasetSpec(name=db.name, family=db.family, subset=db.subset, database=db, queries=q, gold=g,
                       metric=FAMILY_METRIC.get(db.family, Metric.COSINE), default_k=k)
