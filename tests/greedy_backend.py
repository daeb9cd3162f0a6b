"""A deliberately greedy test backend: exact search, but its build first allocates and touches
``waste_mb`` MiB (memory-capped sweep tests register it under the name ``greedy``)."""

from __future__ import annotations

import numpy as np

from laionknn.indexes.exact_index import ExactIndex

ENTRY = ("greedy_backend:GreedyIndex", "numpy")


class GreedyIndex(ExactIndex):
    name = "greedy"
    build_defaults = {"waste_mb": 0}

    def _build(self, database) -> None:
        self.waste = np.ones(int(self.build_params["waste_mb"]) * 2**20, dtype=np.uint8)  # touched: resident
        super()._build(database)
