"""hnswlib HNSW graph. Space ``ip`` answers ``1 - ip`` and ``l2`` squared L2, both ascending already."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from laionknn.indexes.base import Index, finish, float_blocks
from laionknn.types import KnnResult, Metric


class HnswlibIndex(Index):
    name = "hnswlib"
    library = "hnswlib"
    build_defaults = {"M": 16, "ef_construction": 100, "seed": 100}
    query_defaults = {"ef": 32}

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * (dim * 4 + 2 * int(build_params.get("M", 16)) * 4 + 8)  # vectors, level-0 links, label

    def _space(self) -> str:
        return "l2" if self.metric is Metric.L2 else "ip"

    def _build(self, database) -> None:
        import hnswlib

        self.index = hnswlib.Index(space=self._space(), dim=self.dim)
        self.index.init_index(max_elements=self.n, ef_construction=int(self.build_params["ef_construction"]),
                              M=int(self.build_params["M"]), random_seed=int(self.build_params["seed"]))
        for lo, block in float_blocks(database, self.metric):
            self.index.add_items(block, np.arange(lo, lo + block.shape[0]), num_threads=self.threads)

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            self.index.set_ef(int(self.query_params["ef"]))

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        labels, dists = self.index.knn_query(queries, k=k, num_threads=self.threads)
        return finish(labels.astype(np.int64), dists)

    def _save(self, path: Path) -> None:
        self.index.save_index(str(path / "index.hnsw"))

    def _load(self, path: Path) -> None:
        import hnswlib

        self.index = hnswlib.Index(space=self._space(), dim=self.dim)
        self.index.load_index(str(path / "index.hnsw"), max_elements=self.n)
