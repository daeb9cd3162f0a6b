"""Exact k-NN: certified float32 filtering plus float64 rescoring, streamed, checkpointed.

* :func:`knn` — exact k nearest neighbours (ndarray or :class:`laionknn.io.VectorFile` database),
  float64-identical, ties broken by the lower id.
* :func:`gold_standard` — the same engine writing an official gold-standard file, resumable.

Pieces a distributed engine reuses: :mod:`laionknn.exact.plan` (pure planners),
:mod:`laionknn.exact.kernels` (per-block kernels) and :func:`laionknn.exact.merge.merge` (the one
associative top-k merge). See docs/exact.md.
"""

import os

# Two OpenMP runtimes share the cores here: numba's kernels and the (faiss-bundled) OpenBLAS. libgomp's
# default active waiting makes each pool's idle threads spin for milliseconds after every parallel
# region, stealing the cores from the other pool (measured: selection 3.5x slower, whole run 1.5x).
# Passive waiting must be chosen before the runtimes load; a value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from laionknn.exact.engine import finish, gamma, knn, knn_rows, validate  # noqa: E402
from laionknn.exact.gold import gold_standard  # noqa: E402
from laionknn.exact.merge import Candidates, merge  # noqa: E402
from laionknn.exact.plan import RowTask, plan_memory, plan_query_batches, plan_row_ranges  # noqa: E402

__all__ = ["Candidates", "RowTask", "finish", "gamma", "gold_standard", "knn", "knn_rows", "merge", "plan_memory",
           "plan_query_batches", "plan_row_ranges", "validate"]
