"""NGT (Yahoo Japan, ``ngtpy``): ANNG and ONNG graphs.

``ngt-anng`` is NGT's incrementally built graph with its defaults (``edge_size_for_creation`` 10,
``edge_size_for_search`` 40). ``ngt-onng`` is the optimised graph of NGT's README and of
ann-benchmarks' NGT-onng: an ANNG with 100 edges per vertex, then degree adjustment by
``ngtpy.Optimizer`` to ``outdegree`` 10 / ``indegree`` 120, searched with every edge (``edge_size``
-2). Search knob of both: ``epsilon``, the search range coefficient (0 = greedy, larger = wider).
Queries go through ``batch_search`` (one call for the batch, on NGT's OpenMP threads, capped to the
run's thread count with threadpoolctl).

NGT's quantised graph (QG / NGT-QG) is not reachable from Python: ``ngtpy.QuantizedIndex`` only
opens an index that the ``ngtq``/``qbg`` command-line tools built, so it is not offered here.

Cosine only: the index uses ``Normalized Cosine``, whose distance is ``1 - cos`` (ascending). NGT keeps
its index in a folder: it is built in a temporary folder of the index cache owned by the backend
(``.tmp-<pid>-ngt-build-*``), and ``save`` copies it.
"""

from __future__ import annotations

import shutil
import weakref
from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.indexes.base import Index, finish, float_blocks
from laionknn.types import KnnResult, Metric


class NgtIndex(Index):
    library = "ngtpy"
    metrics = frozenset({Metric.COSINE})
    query_defaults = {"epsilon": 0.1}
    search_edge_size: int | None = None  # None: the index's own setting

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * dim * 4  # float objects; the graph's edges come on top

    def _create(self, folder: Path, database, creation_edges: int, search_edges: int) -> None:
        import ngtpy

        ngtpy.create(str(folder), self.dim, edge_size_for_creation=creation_edges,
                     edge_size_for_search=search_edges, distance_type="Normalized Cosine", object_type="Float")
        index = ngtpy.Index(str(folder), log_disabled=True)
        for _, block in float_blocks(database, self.metric):  # appended in row order: ids = row numbers
            index.batch_insert(block, num_threads=self.threads)
        index.save()
        index.close()

    def _open(self, folder: Path) -> None:
        import ngtpy

        self.index = ngtpy.Index(str(folder), read_only=True, log_disabled=True)
        self._apply_query_params()

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            knobs = {"epsilon": float(self.query_params["epsilon"])}
            if self.search_edge_size is not None:
                knobs["edge_size"] = self.search_edge_size
            self.index.set(**knobs)

    def _workdir(self) -> Path:
        from laionknn import workspace
        from laionknn.fsutil import make_temp_dir

        # in the index cache as .tmp-<pid>-ngt-build-*: removed with the backend object, and by the next
        # writer there when a kill left it
        work = make_temp_dir(workspace.index_cache_dir(), "ngt-build")
        self._cleanup = weakref.finalize(self, shutil.rmtree, work, True)
        return work

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        import ngtpy

        from threadpoolctl import threadpool_limits

        results = ngtpy.BatchResults()
        # batch_search has no thread argument: it runs on the OpenMP pool of NGT's bundled libgomp,
        # capped here to the run's thread count like every other backend
        with threadpool_limits(limits=self.threads, user_api="openmp"):
            self.index.batch_search(queries, results, k)
        flat_ids = np.asarray(results.get_indexed_ids()).astype(np.int64)
        flat_d = np.asarray(results.get_indexed_distances(), dtype=np.float64)
        bounds = np.asarray(results.get_index(), dtype=np.int64)  # n_queries + 1 offsets into the flat lists
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        dists = np.full((len(queries), k), np.inf)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            m = min(k, b - a)
            ids[i, :m], dists[i, :m] = flat_ids[a:a + m], flat_d[a:a + m]
        return finish(ids, dists)

    def _save(self, path: Path) -> None:
        shutil.copytree(self.folder, path / "ngt", dirs_exist_ok=True)

    def _load(self, path: Path) -> None:
        self.folder = path / "ngt"
        self._open(self.folder)


class NgtANNG(NgtIndex):
    name = "ngt-anng"
    build_defaults = {"edge_size_for_creation": 10, "edge_size_for_search": 40}

    def _build(self, database) -> None:
        self.folder = self._workdir() / "anng"
        self._create(self.folder, database, int(self.build_params["edge_size_for_creation"]),
                     int(self.build_params["edge_size_for_search"]))
        self._open(self.folder)


class NgtONNG(NgtIndex):
    name = "ngt-onng"
    build_defaults = {"edge_size_for_creation": 100, "edge_size_for_search": 40, "outdegree": 10, "indegree": 120}
    search_edge_size = -2

    def _build(self, database) -> None:
        import ngtpy

        out_deg, in_deg = int(self.build_params["outdegree"]), int(self.build_params["indegree"])
        if out_deg < 1 or in_deg < 1:
            raise UsageError(f"backend {self.name!r}: outdegree={out_deg}, indegree={in_deg}; both must be >= 1")
        work = self._workdir()
        self._create(work / "anng", database, int(self.build_params["edge_size_for_creation"]),
                     int(self.build_params["edge_size_for_search"]))
        optimizer = ngtpy.Optimizer(num_of_outgoings=out_deg, num_of_incomings=in_deg, log_disabled=True)
        # `ngt reconstruct-graph -mS` (ann-benchmarks, NGT README): degree adjustment and shortcut
        # reduction only; the search-parameter and accuracy-table passes probe with sample queries
        # and take minutes for nothing the epsilon sweep needs
        optimizer.set_processing_modes(shortcut_reduction=True, search_parameter_optimization=False,
                                       prefetch_parameter_optimization=False, accuracy_table_generation=False)
        self.folder = work / "onng"
        optimizer.execute(str(work / "anng"), str(self.folder))
        shutil.rmtree(work / "anng", ignore_errors=True)
        self._open(self.folder)
