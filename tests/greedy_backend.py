"""A deliberately greedy test backend: exact search, but its build allocates and touches ``waste_mb``
MiB and each search ``search_waste_mb`` MiB (memory-capped sweep tests register it as ``greedy``)."""

from __future__ import annotations

import numpy as np

from laionknn.indexes.exact_index import ExactIndex

ENTRY = ("greedy_backend:GreedyIndex", "numpy")


class GreedyIndex(ExactIndex):
    name = "greedy"
    build_defaults = {"waste_mb": 0}
    query_defaults = {"search_waste_mb": 0}

    def _build(self, database) -> None:
        self.waste = np.ones(int(self.build_params["waste_mb"]) * 2**20, dtype=np.uint8)  # touched: resident
        super()._build(database)

    def search(self, queries, k):
        waste = np.ones(int(self.query_params["search_waste_mb"]) * 2**20, dtype=np.uint8)
        del waste
        return super().search(queries, k)
