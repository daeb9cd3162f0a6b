"""usearch HNSW with float32, float16 or int8 storage (one class, three registry lines).

usearch's ``ip`` metric answers ``1 - ip`` and ``l2sq`` squared L2 (ascending already). int8
quantisation scales unit vectors to [-127, 127], so ``usearch-i8`` is offered for COSINE only, with
usearch's ``cos`` metric (``1 - cos``, which equals ``1 - dot`` on the normalised rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from laionknn.indexes.base import Index, finish, float_blocks
from laionknn.types import KnnResult, Metric


class USearchIndex(Index):
    name = "usearch"
    library = "usearch"
    build_defaults = {"connectivity": 16, "expansion_add": 128}
    query_defaults = {"expansion_search": 32}
    dtype = "f32"

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        per_dim = {"f32": 4, "f16": 2, "i8": 1}[cls.dtype]
        return n * (dim * per_dim + 2 * int(build_params.get("connectivity", 16)) * 4)  # vectors + base links

    def _metric(self) -> str:
        if self.metric is Metric.L2:
            return "l2sq"
        return "cos" if self.dtype == "i8" else "ip"

    def _new(self):
        from usearch.index import Index as UIndex

        return UIndex(ndim=self.dim, metric=self._metric(), dtype=self.dtype,
                      connectivity=int(self.build_params["connectivity"]),
                      expansion_add=int(self.build_params["expansion_add"]),
                      expansion_search=int(self.query_params["expansion_search"]))

    def _build(self, database) -> None:
        self.index = self._new()
        for lo, block in float_blocks(database, self.metric):
            self.index.add(np.arange(lo, lo + block.shape[0], dtype=np.uint64), block, threads=self.threads)

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            self.index.expansion_search = int(self.query_params["expansion_search"])

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        matches = self.index.search(queries, k, threads=self.threads)
        keys = np.asarray(matches.keys).astype(np.int64).reshape(len(queries), -1)
        dists = np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)
        counts = np.asarray(matches.counts).reshape(-1)
        keys[np.arange(keys.shape[1])[None, :] >= counts[:, None]] = -1
        return finish(keys, dists)

    def _save(self, path: Path) -> None:
        self.index.save(str(path / "index.usearch"))

    def _load(self, path: Path) -> None:
        self.index = self._new()
        self.index.load(str(path / "index.usearch"))


class USearchF32(USearchIndex):
    name = "usearch-f32"
    dtype = "f32"


class USearchF16(USearchIndex):
    name = "usearch-f16"
    dtype = "f16"


class USearchI8(USearchIndex):
    name = "usearch-i8"
    dtype = "i8"
    keeps_originals = False
    metrics = frozenset({Metric.COSINE})
