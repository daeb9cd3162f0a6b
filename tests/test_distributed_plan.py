"""The Dask engine's pure planners: shards cover every row once, in order, balanced; the merge tree
covers every leaf once with bounded fan-in and ends in one root."""

from __future__ import annotations

import pytest

from laionknn.distributed import plan_shards, plan_tree
from laionknn.errors import UsageError


@pytest.mark.parametrize("n_shards", [1, 2, 3, 4, 7, 8, 16, 100, 499, 1000])
def test_shards_cover_every_row_once_in_order_balanced(n_shards):
    for n in range(2, 501):
        shards = plan_shards(n, n_shards)
        assert len(shards) == min(n, n_shards)
        assert [s.shard for s in shards] == list(range(len(shards)))
        assert shards[0].start == 0 and shards[-1].stop == n
        covered = []
        for a, b in zip(shards, shards[1:]):
            assert a.stop == b.start  # consecutive, disjoint, in order
        for s in shards:
            assert s.stop > s.start  # no empty shard
            covered.extend(range(s.start, s.stop))
        assert covered == list(range(n))  # every row exactly once
        sizes = [s.rows for s in shards]
        assert max(sizes) - min(sizes) <= 1  # balanced
        assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("align", [2, 3, 16, 1024])
def test_aligned_shards_start_on_the_grid_and_are_balanced_in_units(align):
    for n in list(range(1, 200)) + [align * 7 - 1, align * 7, align * 7 + 1, 10 * align + 3]:
        for n_shards in (1, 2, 3, 5, 50):
            shards = plan_shards(n, n_shards, align=align)
            units = -(-n // align)
            assert len(shards) == min(n_shards, units)
            covered = [r for s in shards for r in range(s.start, s.stop)]
            assert covered == list(range(n))
            assert all(s.start % align == 0 and s.stop > s.start for s in shards)
            full = [-(-s.rows // align) for s in shards]  # units per shard
            assert max(full) - min(full) <= 1


def test_shards_edge_cases_and_bad_input():
    assert plan_shards(0, 3) == []
    assert [(s.start, s.stop) for s in plan_shards(1, 5)] == [(0, 1)]
    assert [(s.start, s.stop) for s in plan_shards(10, 3)] == [(0, 4), (4, 7), (7, 10)]
    with pytest.raises(UsageError):
        plan_shards(10, 0)
    with pytest.raises(UsageError):
        plan_shards(-1, 2)
    with pytest.raises(UsageError):
        plan_shards(10, 2, align=0)


@pytest.mark.parametrize("split_every", [2, 3, 4, 8, 32])
def test_tree_reduces_every_leaf_once_with_bounded_fan_in(split_every):
    for n in range(1, 300):
        levels = plan_tree(n, split_every)
        width = n
        for level in levels:
            flat = [i for g in level for i in g]
            assert flat == list(range(width))  # each node of the level below used once, in order
            assert all(1 <= len(g) <= split_every for g in level)
            width = len(level)
        assert width == 1
        # depth is the smallest with split_every**depth >= n
        depth = 1
        while split_every ** depth < n:
            depth += 1
        assert len(levels) == depth


def test_tree_bad_input():
    with pytest.raises(UsageError):
        plan_tree(0, 4)
    with pytest.raises(UsageError):
        plan_tree(5, 1)
