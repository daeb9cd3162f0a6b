"""Intel Scalable Vector Search (``scalable-vs``, module ``svs``): the Vamana graph, over float32,
LVQ or LeanVec storage.

* ``svs-vamana``: float32 vectors; runs on any x86-64 CPU.
* ``svs-lvq``: LVQ-4x8 (4-bit primary codes walked by the graph, 8-bit residuals re-rank), the
  configuration of SVS's own LVQ examples.
* ``svs-leanvec``: LeanVec, a learned linear reduction to ``leanvec_dims`` dimensions for the graph walk
  (LVQ-4 codes) with an LVQ-8 full-dimension secondary for re-ranking.

LVQ and LeanVec are Intel-only in the PyPI wheel: on any other CPU the library prints "not supported on
non-Intel hardware" and ends the process, so the registry marks ``svs-lvq`` and ``svs-leanvec``
unavailable there (``registry.CPU_REQUIREMENTS``) and this module never reaches that code.

Build defaults from SVS's examples: ``graph_max_degree`` 64, ``window_size`` 128 (``alpha`` is SVS's
default for the distance: 0.95 for inner product). Search knob: ``search_window_size``; queries are
searched as one batch. SVS answers inner products (higher is better) for DOT/COSINE, turned into
``1 - dot`` here, and squared L2 for L2.

The vectors reach SVS through a float32 ``.fvecs`` file written block by block into a temporary folder
of the index cache (``.tmp-<pid>-svs-build-*``, cleaned by the next writer if a kill leaves it; SVS's
loaders read files, its numpy path would need one full array), removed after the build.
``svs-vamana`` is saved as SVS's three folders (config, graph, float32 data) and loaded with its
float32 loader. ``svs-lvq``/``svs-leanvec`` are not saved (``supports_save = False``): their reload path
takes storage-specific loaders that cannot be checked on the non-Intel machines this project also
runs on, so the runner rebuilds them instead of trusting an untested reload.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.indexes.base import Index, finish, float_blocks
from laionknn.types import KnnResult, Metric


def write_fvecs(path: Path, database, metric: Metric, dim: int) -> None:
    """``.fvecs``: per row an int32 dimension then ``dim`` float32 values, written one block at a time."""
    with open(path, "wb") as fh:
        for _, block in float_blocks(database, metric):
            rows = np.empty((block.shape[0], dim + 1), dtype=np.float32)
            rows.view(np.int32)[:, 0] = dim
            rows[:, 1:] = block
            fh.write(rows.tobytes())


class SvsIndex(Index):
    library = "svs"
    metrics = frozenset({Metric.DOT, Metric.COSINE, Metric.L2})
    build_defaults = {"graph_max_degree": 64, "window_size": 128}
    query_defaults = {"search_window_size": 40}
    supports_save = False

    def _distance(self, svs):
        return svs.DistanceType.L2 if self.metric is Metric.L2 else svs.DistanceType.MIP

    def _loader(self, svs, raw):
        return raw

    def _build(self, database) -> None:
        import svs

        degree, window = int(self.build_params["graph_max_degree"]), int(self.build_params["window_size"])
        if degree < 2 or window < degree:
            raise UsageError(f"backend {self.name!r}: graph_max_degree={degree}, window_size={window}; "
                             f"need 2 <= graph_max_degree <= window_size")
        distance = self._distance(svs)
        params = svs.VamanaBuildParameters(graph_max_degree=degree, window_size=window)
        from laionknn import workspace
        from laionknn.fsutil import temp_dir

        with temp_dir(workspace.index_cache_dir(), "svs-build") as tmp:
            file = tmp / "data.fvecs"
            write_fvecs(file, database, self.metric, self.dim)
            raw = svs.VectorDataLoader(str(file), svs.DataType.float32, dims=self.dim)
            self.index = svs.Vamana.build(params, self._loader(svs, raw), distance, num_threads=self.threads)

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            self.index.search_window_size = int(self.query_params["search_window_size"])

    def knob_floors(self, k: int) -> dict[str, int]:
        return {"search_window_size": k}

    def effective_query_params(self, k: int) -> dict:
        # _search widens a window narrower than k (SVS needs room for k answers)
        return {**self.query_params, "search_window_size": max(int(self.query_params["search_window_size"]), k)}

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        self.index.num_threads = self.threads
        if self.index.search_window_size < k:
            self.index.search_window_size = k
        ids, dists = self.index.search(queries, k)
        self._apply_query_params()
        return finish(np.asarray(ids).astype(np.int64), np.asarray(dists, dtype=np.float64),
                      similarity=self.metric is not Metric.L2)


class SvsVamana(SvsIndex):
    name = "svs-vamana"
    supports_save = True

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        degree = int(build_params.get("graph_max_degree", cls.build_defaults["graph_max_degree"]))
        return n * (dim * 4 + degree * 4)  # float32 vectors, a fixed-degree adjacency list per vertex

    def _save(self, path: Path) -> None:
        self.index.save(str(path / "config"), str(path / "graph"), str(path / "data"))

    def _load(self, path: Path) -> None:
        import svs

        self.index = svs.Vamana(str(path / "config"), svs.GraphLoader(str(path / "graph")),
                                svs.VectorDataLoader(str(path / "data"), svs.DataType.float32, dims=self.dim),
                                distance=self._distance(svs), num_threads=self.threads)


class SvsLVQ(SvsIndex):
    name = "svs-lvq"
    build_defaults = {**SvsIndex.build_defaults, "primary_bits": 4, "residual_bits": 8}

    def _loader(self, svs, raw):
        primary, residual = int(self.build_params["primary_bits"]), int(self.build_params["residual_bits"])
        if (primary, residual) not in ((4, 0), (8, 0), (4, 4), (4, 8), (8, 8)):
            raise UsageError(f"backend {self.name!r}: LVQ{primary}x{residual} is not built into the wheel; "
                             f"choose 4x8, 4x4, 8x8, 4x0 or 8x0")
        return svs.LVQLoader(raw, primary=primary, residual=residual)


class SvsLeanVec(SvsIndex):
    name = "svs-leanvec"
    build_defaults = {**SvsIndex.build_defaults, "leanvec_dims": 160}

    def _loader(self, svs, raw):
        dims = int(self.build_params["leanvec_dims"])
        if not 1 <= dims <= self.dim:
            raise UsageError(f"backend {self.name!r}: leanvec_dims={dims}; choose 1 <= leanvec_dims <= {self.dim}")
        return svs.LeanVecLoader(raw, dims, primary_kind=svs.LeanVecKind.lvq4, secondary_kind=svs.LeanVecKind.lvq8)
