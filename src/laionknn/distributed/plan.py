"""Pure planners of the Dask engine: database shards and the reduction tree. No I/O, no dask.

Shards reuse :class:`laionknn.exact.plan.RowTask` (shard id, global 0-based half-open row range);
tested exhaustively in tests/test_distributed_plan.py.
"""

from __future__ import annotations

from laionknn.errors import UsageError
from laionknn.exact.plan import RowTask


def plan_shards(n_rows: int, n_shards: int, *, align: int = 1) -> list[RowTask]:
    """Cut rows ``[0, n_rows)`` into consecutive, non-empty, balanced shards.

    The rows are grouped in units of ``align`` rows (the last unit may be shorter) and the units are
    dealt out as evenly as possible: at most ``min(n_shards, number of units)`` shards, every shard
    boundary a multiple of ``align``, unit counts differing by at most one (the larger shards first).
    Shard ids are 0, 1, ... in row order and their union is exactly ``[0, n_rows)`` (each row once).
    ``align=1`` gives shard sizes differing by at most one row; ``n_rows == 0`` gives no shard.
    """
    if n_rows < 0:
        raise UsageError(f"row count must be non-negative, got {n_rows}")
    if n_shards < 1:
        raise UsageError(f"the number of shards must be at least 1, got {n_shards}")
    if align < 1:
        raise UsageError(f"align must be at least 1, got {align}")
    units = -(-n_rows // align)
    n_shards = min(n_shards, units)
    shards: list[RowTask] = []
    start = 0
    for s in range(n_shards):
        size = units // n_shards + (1 if s < units % n_shards else 0)
        stop = min(n_rows, start + size * align)
        shards.append(RowTask(s, start, stop))
        start = stop
    return shards


def plan_tree(n_leaves: int, split_every: int) -> list[list[tuple[int, ...]]]:
    """Levels of a tree reduction over ``n_leaves`` results with fan-in at most ``split_every``.

    Each level is a list of groups; a group lists indices into the previous level's outputs (level 0:
    the leaves), consecutive and covering them in order. Reducing each group gives the next level; the
    last level has one group (so one output). One leaf gives ``[[(0,)]]``.
    """
    if n_leaves < 1:
        raise UsageError(f"a reduction needs at least one leaf, got {n_leaves}")
    if split_every < 2:
        raise UsageError(f"split_every must be at least 2, got {split_every}")
    levels: list[list[tuple[int, ...]]] = []
    n = n_leaves
    while True:
        groups = [tuple(range(lo, min(n, lo + split_every))) for lo in range(0, n, split_every)]
        levels.append(groups)
        n = len(groups)
        if n == 1:
            return levels
