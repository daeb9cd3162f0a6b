"""Small value types shared by every layer (no I/O here).

Conventions inside the package: ids are 0-based int64; distances are float32 and *ascending*
(lower is better). For dot-product metrics the distance is ``1 - dot``; for L2 it is the squared
Euclidean distance; for Hamming it is the number of differing bits.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import numpy as np

from laionknn.errors import UsageError


class Metric(enum.Enum):
    """Distance functions. Parse user strings once with :meth:`parse`."""

    DOT = "dot"  # distance 1 - <x, y>, raw vectors (2024 private gold)
    COSINE = "cosine"  # distance 1 - <x/|x|, y/|y|> (2023 and 2024 public gold)
    L2 = "l2"  # squared Euclidean distance (PCA projections)
    HAMMING = "hamming"  # popcount(xor) over packed uint64 words (sketches)

    @classmethod
    def parse(cls, value: "str | Metric") -> "Metric":
        if isinstance(value, Metric):
            return value
        aliases = {
            "ip": cls.DOT, "dot": cls.DOT, "inner_product": cls.DOT,
            "cos": cls.COSINE, "cosine": cls.COSINE, "angular": cls.COSINE, "normalized_dot": cls.COSINE,
            "l2": cls.L2, "euclidean": cls.L2, "sqeuclidean": cls.L2,
            "hamming": cls.HAMMING, "bits": cls.HAMMING,
        }
        key = str(value).strip().lower()
        if key not in aliases:
            raise UsageError(
                f"unknown metric {value!r}: expected one of dot, cosine, l2, hamming"
            )
        return aliases[key]


@dataclass(frozen=True)
class KnnResult:
    """k-NN answer for a batch of queries.

    ids: int64 (n_queries, k), 0-based database row numbers, -1 where fewer than k exist.
    dists: float32 (n_queries, k), ascending along each row (lower is better).
    """

    ids: np.ndarray
    dists: np.ndarray
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ids.shape != self.dists.shape or self.ids.ndim != 2:
            raise ValueError(
                f"KnnResult needs ids and dists of the same 2-d shape, got {self.ids.shape} and {self.dists.shape}"
            )

    @property
    def n_queries(self) -> int:
        return int(self.ids.shape[0])

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMbBgG]?)\s*$")
_SIZE_MULT = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}

# The official subsets' exact row counts (the website's names are rounded).
OFFICIAL_SIZES = {
    "100K": 100_000,
    "300K": 300_000,
    "1M": 1_000_000,
    "3M": 3_000_000,
    "10M": 10_120_191,
    "30M": 30_000_000,
    "100M": 102_144_212,
}


def parse_size(text: "str | int") -> int:
    """Parse a row count such as ``100K``, ``1M``, ``2500`` into an integer (K = 1e3, M = 1e6)."""
    if isinstance(text, (int, np.integer)):
        return int(text)
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"cannot read size {text!r}: expected a number with an optional K/M/B suffix, e.g. 100K")
    value = float(m.group(1)) * _SIZE_MULT[m.group(2).lower()]
    if value != int(value) or value <= 0:
        raise UsageError(f"size {text!r} is not a positive whole number of rows")
    return int(value)


def format_size(n: int) -> str:
    """Inverse of :func:`parse_size` for round numbers: 100000 -> '100K', 2500 -> '2500'."""
    for suffix, mult in (("B", 1_000_000_000), ("M", 1_000_000), ("K", 1_000)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{suffix}"
    return str(n)


#: Versions of the synthetic generator. The version is part of a synthetic dataset's identity: v3 names
#: carry it (``synthetic-v3-clip768v2-n=100K``); v2 names are the original ones without a version token
#: (``synthetic-clip768v2-n=100K``), kept so earlier figures can be reproduced.
SYNTHETIC_GENERATORS = ("v2", "v3", "v4")
DEFAULT_GENERATOR = "v3"

#: backends that search exhaustively (float and Hamming): the main job sweeps them only when named, and
#: reports draw them as reference lines rather than curves
BRUTE_FORCE_BACKENDS = ("exact", "faiss-flat", "faiss-binary-flat")
