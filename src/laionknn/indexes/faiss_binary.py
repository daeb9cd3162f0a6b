"""faiss binary indexes over packed Hamming sketches (uint64 words, e.g. hammingv2's 16 × 64 bits):
IndexBinaryFlat (exact), IndexBinaryIVF, IndexBinaryHNSW. Distances are bit counts (ascending).

A uint64 block is handed to faiss as a uint8 *view* (no copy): faiss packs bits little-endian per
byte, which on little-endian machines is the same bit set, so Hamming distances are unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.indexes.base import BINARY_METRICS, Index, finish, raw_blocks
from laionknn.types import KnnResult


def _faiss():
    import faiss

    return faiss


def _bytes(block: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(block, dtype=np.uint64).view(np.uint8)


class FaissBinary(Index):
    library = "faiss"
    metrics = BINARY_METRICS
    keeps_originals = False  # it searches packed sketches, never the float originals

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * dim * 8  # the packed uint64 words

    def _make(self, bits: int):
        raise NotImplementedError

    def _build(self, database) -> None:
        faiss = _faiss()
        faiss.omp_set_num_threads(self.threads)
        self.index = self._make(self.dim * 64)
        if not self.index.is_trained:
            self.index.train(self._sample(database))
        for _, block in raw_blocks(database):
            self.index.add(_bytes(block))

    def _sample(self, database) -> np.ndarray:
        size = int(self.build_params.get("train_size", 0))
        count = self.n if size <= 0 else min(self.n, size)
        rng = np.random.default_rng(int(self.build_params.get("seed", 0)))
        chosen = np.sort(rng.choice(self.n, size=count, replace=False))
        parts = []
        for lo, block in raw_blocks(database):
            a, b = np.searchsorted(chosen, [lo, lo + block.shape[0]])
            if b > a:
                parts.append(_bytes(block[chosen[a:b] - lo]))
        return np.concatenate(parts)

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        _faiss().omp_set_num_threads(self.threads)
        dists, ids = self.index.search(_bytes(queries), k)
        return finish(ids, dists.astype(np.float32))

    def _save(self, path: Path) -> None:
        _faiss().write_index_binary(self.index, str(path / "index.faissbin"))

    def _load(self, path: Path) -> None:
        self.index = _faiss().read_index_binary(str(path / "index.faissbin"))


class FaissBinaryFlat(FaissBinary):
    """Exact Hamming brute force (popcount)."""

    name = "faiss-binary-flat"

    def _make(self, bits: int):
        return _faiss().IndexBinaryFlat(bits)


class FaissBinaryIVF(FaissBinary):
    name = "faiss-binary-ivf"
    build_defaults = {"nlist": 1024, "train_size": 100_000, "seed": 0}
    query_defaults = {"nprobe": 16}

    def _make(self, bits: int):
        faiss = _faiss()
        nlist = int(self.build_params["nlist"])
        if nlist < 1 or nlist > self.n:
            raise UsageError(f"backend {self.name!r}: nlist={nlist} lists for {self.n} vectors; choose 1 <= nlist <= {self.n}")
        self._quantizer = faiss.IndexBinaryFlat(bits)  # the IVF index borrows it: keep it alive
        return faiss.IndexBinaryIVF(self._quantizer, bits, nlist)

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            self.index.nprobe = int(self.query_params["nprobe"])


class FaissBinaryHNSW(FaissBinary):
    name = "faiss-binary-hnsw"
    build_defaults = {"M": 16, "ef_construction": 100}
    query_defaults = {"ef_search": 32}

    def _make(self, bits: int):
        index = _faiss().IndexBinaryHNSW(bits, int(self.build_params["M"]))
        index.hnsw.efConstruction = int(self.build_params["ef_construction"])
        return index

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            self.index.hnsw.efSearch = int(self.query_params["ef_search"])


__all__ = ["FaissBinaryFlat", "FaissBinaryHNSW", "FaissBinaryIVF"]
