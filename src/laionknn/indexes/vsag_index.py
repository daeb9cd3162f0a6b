"""VSAG (``pyvsag``, Ant Group) HGraph: a graph over quantised codes with re-ordering by float32 codes.

Configuration from VSAG's ``hgraph_params.md``: ``base_quantization_type`` sq8 (the graph walk runs on
8-bit codes; also fp16, sq4_uniform, rabitq, ...), ``use_reorder`` with ``precise_quantization_type``
fp32 (the candidates are re-ranked exactly), ``max_degree`` 32, ``ef_construction`` 200. Search knob:
``ef_search``.

pyvsag's Python binding searches **one query per call** (``knn_search`` takes a 1-d vector and returns
``(ids, distances)``, not the ``(distances, ids)`` its docstring says), so this backend loops over the
queries in Python on one thread; run records say ``search_mode: single-query``. Building takes the whole
database as one float32 array (one full copy while it builds). Metric ``ip`` answers ``1 - dot``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.indexes.base import Index, finish, float_blocks
from laionknn.types import KnnResult, Metric

QUANTISATIONS = ("fp32", "fp16", "bf16", "sq8", "sq8_uniform", "sq4_uniform", "rabitq")
#: bits per dimension of each storage (for the lower bound of the index size)
QUANTISATION_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "sq8": 8, "sq8_uniform": 8, "sq4_uniform": 4, "rabitq": 1}


class VsagHGraph(Index):
    name = "vsag-hgraph"
    library = "pyvsag"
    metrics = frozenset({Metric.DOT, Metric.COSINE, Metric.L2})
    build_defaults = {"base_quantization_type": "sq8", "precise_quantization_type": "fp32", "use_reorder": True,
                      "max_degree": 32, "ef_construction": 200}
    query_defaults = {"ef_search": 64}
    batch_search = False

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        p = {**cls.build_defaults, **build_params}
        bits = QUANTISATION_BITS.get(str(p["base_quantization_type"]), 1)
        if p["use_reorder"]:
            bits += QUANTISATION_BITS.get(str(p["precise_quantization_type"]), 1)
        return n * dim * bits // 8  # the base codes and the precise copy for re-ranking (graph not counted)

    def _parameters(self) -> str:
        p = self.build_params
        for key in ("base_quantization_type", "precise_quantization_type"):
            if p[key] not in QUANTISATIONS:
                raise UsageError(f"backend {self.name!r}: {key}={p[key]!r}; choose one of {', '.join(QUANTISATIONS)}")
        param = {"base_quantization_type": p["base_quantization_type"], "max_degree": int(p["max_degree"]),
                 "ef_construction": int(p["ef_construction"]), "build_thread_count": self.threads}
        if p["use_reorder"]:
            param.update(use_reorder=True, precise_quantization_type=p["precise_quantization_type"])
        return json.dumps({"dtype": "float32", "metric_type": "l2" if self.metric is Metric.L2 else "ip",
                           "dim": self.dim, "index_param": param})

    def _new(self):
        import pyvsag

        return pyvsag.Index("hgraph", self._parameters())

    def _build(self, database) -> None:
        data = np.empty((self.n, self.dim), dtype=np.float32)
        for lo, block in float_blocks(database, self.metric):
            data[lo:lo + block.shape[0]] = block
        self.index = self._new()
        self.index.build(vectors=data.reshape(-1), ids=np.arange(self.n, dtype=np.int64), num_elements=self.n,
                         dim=self.dim)

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        knobs = json.dumps({"hgraph": {"ef_search": max(k, int(self.query_params["ef_search"]))}})
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        dists = np.full((len(queries), k), np.inf, dtype=np.float64)
        for i, q in enumerate(queries):
            got_ids, got_d = self.index.knn_search(vector=q, k=k, parameters=knobs)
            m = min(k, len(got_ids))
            ids[i, :m], dists[i, :m] = got_ids[:m], got_d[:m]
        return finish(ids, dists)

    def _save(self, path: Path) -> None:
        self.index.save(str(path / "hgraph.vsag"))

    def _load(self, path: Path) -> None:
        self.index = self._new()
        self.index.load(str(path / "hgraph.vsag"))
