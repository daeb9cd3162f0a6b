"""Exact k-NN: certified float32 filtering plus float64 rescoring, streamed, checkpointed.

* :func:`knn` — exact k nearest neighbours (ndarray or :class:`laionknn.io.VectorFile` database),
  float64-identical, ties broken by the lower id.
* :func:`gold_standard` — the same engine writing an official gold-standard file, resumable.

Pieces a distributed engine reuses: :mod:`laionknn.exact.plan` (pure planners),
:mod:`laionknn.exact.kernels` (per-block kernels) and :func:`laionknn.exact.merge.merge` (the one
associative top-k merge). See docs/exact.md.
"""

from laionknn.exact.engine import gamma, knn
from laionknn.exact.gold import gold_standard
from laionknn.exact.merge import Candidates, merge
from laionknn.exact.plan import RowTask, plan_memory, plan_query_batches, plan_row_ranges

__all__ = ["Candidates", "RowTask", "gamma", "gold_standard", "knn", "merge", "plan_memory",
           "plan_query_batches", "plan_row_ranges"]
