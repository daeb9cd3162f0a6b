"""Exact brute force through :func:`laionknn.exact.knn` (float64-identical, ties → lower id).

The index keeps a reference to the database (no copy): ``build`` costs nothing and the exact engine
streams the source block by block at every search. It is not saved (there is nothing to save); after
a cache load the runner calls :meth:`attach` with the database again.
"""

from __future__ import annotations

import numpy as np

from laionknn.indexes.base import BINARY_METRICS, FLOAT_METRICS, Index, prepare_queries
from laionknn.types import KnnResult


class ExactIndex(Index):
    name = "exact"
    library = "laionknn"
    metrics = FLOAT_METRICS | BINARY_METRICS
    supports_save = False

    def _build(self, database) -> None:
        self.database = database

    def attach(self, database) -> None:
        self.database = database

    def search(self, queries: np.ndarray, k: int) -> KnnResult:
        """Validated like every backend, but the *original* queries go to the exact engine, whose
        float64 normalisation must not be preceded by a float32 one."""
        from threadpoolctl import threadpool_limits

        from laionknn import exact

        k = self._check_k(k)
        prepare_queries(queries, self.metric, self.dim)
        with threadpool_limits(limits=self.threads):
            res = exact.knn(self.database, queries, k, self.metric)
        return KnnResult(ids=np.asarray(res.ids, dtype=np.int64), dists=np.asarray(res.dists, dtype=np.float32))

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        return self.search(queries, k)
