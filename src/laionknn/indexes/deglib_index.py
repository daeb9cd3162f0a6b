"""deglib: the Dynamic Exploration Graph (DEG) of the SISAP 2024 LAION winner, float32 or uint8 storage.

Build: an even-regular graph grown entry by entry (``GraphBuilder``), with the winners' SISAP 2024
settings as defaults (``edges_per_vertex`` 24, ``extend_k`` 64, ``extend_eps`` 0.02, low-LID target;
sisap24-deglib ``run_task1.py``). Search knob: ``eps``, the range factor of the graph walk (0 = greedy).

``deglib`` stores float32 and answers inner-product distances ``1 - dot`` (ascending) for DOT/COSINE.
``deglib-u8`` stores one byte per dimension, as the winners did: every coordinate of the normalised
vectors is quantised with one global affine map ``u = round((x - lo) * scale)`` fitted on a sample
(``lo``/``scale`` from its min/max, as deglib's own ``ScalarQuantizerUint8``), and the graph uses uint8
squared L2. One global map scales every squared distance by ``scale**2`` alike, so on unit vectors
``|qu - xu|^2 / (2 scale^2)`` estimates ``1 - dot`` and the ranking is that of the dot products up
to rounding; hence cosine only. The winners' 768 -> 512 learned compression net is not reproduced.

Vectors are added block by block (the builder copies each block into the graph's own storage).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.indexes.base import Index, finish, float_blocks, sample_rows
from laionknn.types import KnnResult, Metric


class DeglibIndex(Index):
    name = "deglib"
    library = "deglib"
    metrics = frozenset({Metric.DOT, Metric.COSINE})
    build_defaults = {"edges_per_vertex": 24, "extend_k": 64, "extend_eps": 0.02, "lid": "low", "seed": 0}
    query_defaults = {"eps": 0.01}
    bytes_per_dim = 4

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        edges = int(build_params.get("edges_per_vertex", cls.build_defaults["edges_per_vertex"]))
        return n * (dim * cls.bytes_per_dim + edges * 4)  # features and the fixed-degree neighbour ids

    # --- storage-specific pieces ------------------------------------------------------------------
    def _metric(self):
        import deglib

        return deglib.Metric.FP32_InnerProduct

    def _encode(self, block: np.ndarray) -> np.ndarray:
        return block

    def _to_distance(self, dists: np.ndarray) -> np.ndarray:
        return dists

    # --- protocol ---------------------------------------------------------------------------------
    def _build(self, database) -> None:
        import deglib

        epv = int(self.build_params["edges_per_vertex"])
        extend_k = int(self.build_params["extend_k"])
        if epv < 2 or epv % 2 or epv >= self.n:
            raise UsageError(f"backend {self.name!r}: edges_per_vertex={epv}; DEG needs an even degree "
                             f"2 <= edges_per_vertex < n ({self.n})")
        if extend_k <= epv:
            raise UsageError(f"backend {self.name!r}: extend_k={extend_k} must be larger than edges_per_vertex={epv}")
        targets = {"low": deglib.builder.OptimizationTarget.LowLID, "high": deglib.builder.OptimizationTarget.HighLID,
                   "streaming": deglib.builder.OptimizationTarget.StreamingData}
        lid = str(self.build_params["lid"]).lower()
        if lid not in targets:
            raise UsageError(f"backend {self.name!r}: lid={lid!r}; choose one of {', '.join(targets)}")
        self._fit_codec(database)
        space = deglib.FloatSpace.create(self.dim, self._metric())
        self.graph = deglib.graph.create_empty(self.n, space, epv)
        builder = deglib.builder.GraphBuilder(self.graph, seed=int(self.build_params["seed"]),
                                              optimization_target=targets[lid], extend_k=extend_k,
                                              extend_eps=float(self.build_params["extend_eps"]), improve_k=0)
        for lo, block in float_blocks(database, self.metric):
            builder.add_entry(np.arange(lo, lo + block.shape[0], dtype=np.uint32), self._encode(block))
        builder.set_thread_count(self.threads)
        builder.build()
        del builder

    def _fit_codec(self, database) -> None:
        """Fit the storage codec before the vectors are added (nothing to fit for float32)."""

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        ids, dists = self.graph.search(self._encode(queries), eps=float(self.query_params["eps"]), k=k,
                                       threads=self.threads)
        ids = np.asarray(ids).astype(np.int64)
        ids[ids == np.iinfo(np.uint32).max] = -1  # deglib pads short answers with uint32 max
        return finish(ids, self._to_distance(np.asarray(dists, dtype=np.float64)))

    def _save(self, path: Path) -> None:
        self.graph.save_graph(str((path / "graph.deg").resolve()))

    def _load(self, path: Path) -> None:
        import deglib

        self.graph = deglib.graph.load_readonly_graph(str((path / "graph.deg").resolve()))


class DeglibF32(DeglibIndex):
    name = "deglib"


class DeglibU8(DeglibIndex):
    name = "deglib-u8"
    metrics = frozenset({Metric.COSINE})
    bytes_per_dim = 1
    build_defaults = {**DeglibIndex.build_defaults, "train_size": 100_000}
    bytes_per_dim = 1

    def _metric(self):
        import deglib

        return deglib.Metric.Uint8_L2

    def _fit_codec(self, database) -> None:
        size = int(self.build_params["train_size"])
        sample = sample_rows(database, self.metric, self.n if size <= 0 else min(self.n, size),
                             seed=int(self.build_params["seed"]))
        lo, hi = float(sample.min()), float(sample.max())
        self.lo, self.scale = lo, 255.0 / max(hi - lo, 1e-12)

    def _encode(self, block: np.ndarray) -> np.ndarray:
        u = np.rint((block - np.float32(self.lo)) * np.float32(self.scale))
        return np.clip(u, 0, 255).astype(np.uint8)

    def _to_distance(self, dists: np.ndarray) -> np.ndarray:
        return dists / (2.0 * self.scale * self.scale)

    def _save(self, path: Path) -> None:
        super()._save(path)
        (path / "codec.json").write_text(json.dumps({"lo": self.lo, "scale": self.scale}))

    def _load(self, path: Path) -> None:
        super()._load(path)
        codec = json.loads((path / "codec.json").read_text())
        self.lo, self.scale = float(codec["lo"]), float(codec["scale"])
