"""RaBitQ Library (``rabitqlib``): IVF + multi-bit RaBitQ, and the SymphonyQG graph.

``rabitq-ivf``: k-means with the library's own clustering (``RaBitQKMeans`` up to 256 lists,
``QGKMeans`` above, as its docs recommend; spherical k-means for cosine, exact final assignment),
then ``IvfIndex``. ``nbits`` = 1 + extra bits: 5 and 9 store 4 or 8 extra bits per dimension and re-rank
the one-bit candidates with them (the library's "1+4" / "1+8" configurations); 32 keeps the raw float32
vectors and re-ranks with exact distances. Search knob: ``nprobe`` (lists scanned).

``rabitq-symqg``: SymphonyQG, a graph whose vertices store their neighbours' one-bit RaBitQ codes next
to them, walked with batched FastScan estimates and exact re-scoring of the visited vertices
(``quantization_bits`` = 0 keeps float32, 4/8 store codes). Defaults from the library's docs:
``max_degree`` 32 (a multiple of 32), ``ef_construction`` 200, PiPNN initialisation. Search knob:
``ef`` (>= k), batched with ``search_batch``.

Both builders take the whole database as one float32 array (like ScaNN's): these backends hold one
float32 copy while they build. Metric ``ip`` answers ``1 - dot`` (ascending), used for DOT/COSINE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.indexes.base import Index, finish, float_blocks, sample_rows
from laionknn.types import KnnResult, Metric

FLAT_KMEANS_MAX_LISTS = 256  # RaBitQKMeans "for small cluster counts", QGKMeans above


def _gather(database, metric: Metric, n: int, dim: int) -> np.ndarray:
    data = np.empty((n, dim), dtype=np.float32)
    for lo, block in float_blocks(database, metric):
        data[lo:lo + block.shape[0]] = block
    return data


class RabitqIndex(Index):
    library = "rabitqlib"
    metrics = frozenset({Metric.DOT, Metric.COSINE, Metric.L2})

    def _metric(self) -> str:
        return "l2" if self.metric is Metric.L2 else "ip"

    def _answer(self, ids, dists) -> KnnResult:
        ids = np.asarray(ids).astype(np.int64)
        ids[ids == np.iinfo(np.uint32).max] = -1
        return finish(ids, np.asarray(dists, dtype=np.float64))


class RabitqIVF(RabitqIndex):
    name = "rabitq-ivf"
    build_defaults = {"nlist": 1024, "nbits": 9, "train_size": 100_000, "niter": 25, "seed": 42}
    query_defaults = {"nprobe": 16}

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * dim * int(build_params.get("nbits", 9)) // 8  # nbits bits per dimension (32: raw float32)

    def _build(self, database) -> None:
        import rabitqlib

        nlist, nbits = int(self.build_params["nlist"]), int(self.build_params["nbits"])
        if not 1 <= nlist <= self.n:
            raise UsageError(f"backend {self.name!r}: nlist={nlist} lists for {self.n} vectors; choose 1 <= nlist <= {self.n}")
        if not (1 <= nbits <= 9 or nbits == 32):
            raise UsageError(f"backend {self.name!r}: nbits={nbits}; rabitqlib takes 1 to 9 bits, or 32 (raw float32 re-rank)")
        if self.dim < 64:
            raise UsageError(f"backend {self.name!r}: rabitqlib's k-means needs dim >= 64; the data has {self.dim}")
        size = int(self.build_params["train_size"])
        train = sample_rows(database, self.metric, self.n if size <= 0 else min(self.n, size),
                            seed=int(self.build_params["seed"]))
        common = dict(niter=int(self.build_params["niter"]), num_threads=self.threads,
                      seed=int(self.build_params["seed"]), spherical=self.metric is Metric.COSINE,
                      final_assignment=rabitqlib.FinalAssignmentMode.Exact)
        if nlist <= FLAT_KMEANS_MAX_LISTS:
            kmeans = rabitqlib.RaBitQKMeans(self.dim, nlist, **common)
        else:
            kmeans = rabitqlib.QGKMeans(self.dim, nlist, **common)
        kmeans.train(train)
        centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
        del train
        data = _gather(database, self.metric, self.n, self.dim)
        # k-means saw a sample only: every row goes to its nearest centroid before the one build call
        self.index = rabitqlib.IvfIndex(dim=self.dim, max_elements=self.n, num_clusters=nlist, nbits=nbits,
                                        metric=self._metric())
        self.index.build(data, centroids, self._assign(data, centroids), num_threads=self.threads)

    def _assign(self, data: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        """Nearest centroid of every row (exact, float32 products a block at a time)."""
        out = np.empty(len(data), dtype=np.uint32)
        c_sq = (centroids.astype(np.float64) ** 2).sum(1)
        for lo in range(0, len(data), 16384):  # (16384, nlist) float32 scores at a time
            block = data[lo:lo + 16384]
            scores = block @ centroids.T
            if self.metric is Metric.L2:
                scores = 2 * scores - c_sq[None, :]
            out[lo:lo + len(block)] = np.argmax(scores, axis=1)
        return out

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        nprobe = min(int(self.query_params["nprobe"]), int(self.build_params["nlist"]))
        ids, dists = self.index.search(queries, k=k, nprobe=nprobe, num_threads=self.threads)
        return self._answer(ids, dists)

    def _save(self, path: Path) -> None:
        self.index.save(str(path / "ivf.index"))

    def _load(self, path: Path) -> None:
        import rabitqlib

        self.index = rabitqlib.IvfIndex.load(str(path / "ivf.index"))


class RabitqSymQG(RabitqIndex):
    name = "rabitq-symqg"
    build_defaults = {"max_degree": 32, "ef_construction": 200, "quantization_bits": 0, "init": "pipnn"}
    query_defaults = {"ef": 64}

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        bits = int(build_params.get("quantization_bits", 0)) or 32  # 0: float32 vectors
        # each vertex: its vector (float32 or codes) and max_degree uint32 neighbour ids (their codes not counted)
        return n * (dim * bits // 8 + int(build_params.get("max_degree", 32)) * 4)

    def _build(self, database) -> None:
        import rabitqlib

        degree, bits = int(self.build_params["max_degree"]), int(self.build_params["quantization_bits"])
        if degree < 32 or degree % 32 or degree >= self.n:
            raise UsageError(f"backend {self.name!r}: max_degree={degree}; SymphonyQG needs a multiple of 32 "
                             f"smaller than n ({self.n})")
        if bits not in (0, 4, 8):
            raise UsageError(f"backend {self.name!r}: quantization_bits={bits}; choose 0 (float32), 4 or 8")
        init = str(self.build_params["init"])
        if init not in ("pipnn", "random"):
            raise UsageError(f"backend {self.name!r}: init={init!r}; choose pipnn or random")
        self.index = rabitqlib.SymqgIndex(dim=self.dim, max_degree=degree, metric=self._metric(),
                                          quantization_bits=bits)
        self.index.build(_gather(database, self.metric, self.n, self.dim),
                         ef_construction=int(self.build_params["ef_construction"]), num_threads=self.threads,
                         init=init)

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        ef = max(k, int(self.query_params["ef"]))
        ids, dists = self.index.search_batch(queries, k=k, ef=ef, num_threads=self.threads)
        return self._answer(ids, dists)

    def _save(self, path: Path) -> None:
        self.index.save(str(path / "symqg.index"))

    def _load(self, path: Path) -> None:
        import rabitqlib

        self.index = rabitqlib.SymqgIndex.load(str(path / "symqg.index"))
