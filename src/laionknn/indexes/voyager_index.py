"""Voyager (Spotify): HNSW with float32 or float8 E4M3 storage.

Defaults from Voyager's documentation: ``M`` 12, ``ef_construction`` 200. ``voyager-e4m3`` stores each
coordinate as an 8-bit float (1 sign, 4 exponent, 3 mantissa bits; range +-448), a quarter of float32's
memory, at the cost of about 3 significant bits per coordinate. Search knob: ``query_ef``; queries are
searched as one batch (``query(vectors, k, num_threads, query_ef)``).

Space ``InnerProduct`` answers ``1 - dot`` (ascending) for DOT/COSINE; ``Euclidean`` squared L2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from laionknn.indexes.base import Index, finish, float_blocks
from laionknn.types import KnnResult, Metric


class VoyagerIndex(Index):
    library = "voyager"
    metrics = frozenset({Metric.DOT, Metric.COSINE, Metric.L2})
    build_defaults = {"M": 12, "ef_construction": 200, "seed": 1}
    query_defaults = {"query_ef": 64}
    storage = "Float32"
    bytes_per_dim = 4

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        # hnswlib's layout: vectors, 2*M uint32 level-0 links and an 8-byte label per element
        return n * (dim * cls.bytes_per_dim + 2 * int(build_params.get("M", 12)) * 4 + 8)

    def _space(self):
        import voyager

        return voyager.Space.Euclidean if self.metric is Metric.L2 else voyager.Space.InnerProduct

    def _build(self, database) -> None:
        import voyager

        self.index = voyager.Index(self._space(), num_dimensions=self.dim, M=int(self.build_params["M"]),
                                   ef_construction=int(self.build_params["ef_construction"]),
                                   random_seed=int(self.build_params["seed"]), max_elements=self.n,
                                   storage_data_type=getattr(voyager.StorageDataType, self.storage))
        for lo, block in float_blocks(database, self.metric):
            self.index.add_items(block, ids=np.arange(lo, lo + block.shape[0]), num_threads=self.threads)

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        ids, dists = self.index.query(queries, k=k, num_threads=self.threads,
                                      query_ef=max(k, int(self.query_params["query_ef"])))
        return finish(np.asarray(ids).astype(np.int64), np.asarray(dists, dtype=np.float64))

    def _save(self, path: Path) -> None:
        self.index.save(str(path / "index.voy"))

    def _load(self, path: Path) -> None:
        import voyager

        self.index = voyager.Index.load(str(path / "index.voy"))


class VoyagerF32(VoyagerIndex):
    name = "voyager-f32"
    storage = "Float32"


class VoyagerE4M3(VoyagerIndex):
    name = "voyager-e4m3"
    storage = "E4M3"
    bytes_per_dim = 1
