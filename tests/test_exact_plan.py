"""Pure planners of the exact engine, checked for every size (autofaiss/embedding-reader style)."""

from __future__ import annotations

import pytest

from laionknn.errors import UsageError
from laionknn.exact.plan import (BASE_RESERVE, estimate_block_bytes, plan_memory, plan_query_batches,
                                 plan_row_ranges)


@pytest.mark.parametrize("block", [1, 2, 3, 7, 16, 64, 100, 299, 300, 301])
def test_row_ranges_cover_every_size(block):
    for n in range(0, 301):
        tasks = plan_row_ranges(n, block)
        rows = [r for t in tasks for r in range(t.start, t.stop)]
        assert rows == list(range(n))
        assert all(1 <= t.rows <= block for t in tasks)
        assert all(t.shard == 0 for t in tasks)
        assert len(tasks) == -(-n // block)


@pytest.mark.parametrize("shard_rows", [1, 5, 13, 100])
def test_row_ranges_respect_shards(shard_rows):
    for n in range(1, 301, 7):
        for block in (1, 4, 9, 50):
            for start in (0, 1, n // 2):
                tasks = plan_row_ranges(n, block, shard_rows=shard_rows, start=start)
                assert [r for t in tasks for r in range(t.start, t.stop)] == list(range(start, n))
                for t in tasks:
                    assert t.shard == t.start // shard_rows == (t.stop - 1) // shard_rows
                    assert t.rows <= block


def test_row_ranges_reject_bad_sizes():
    with pytest.raises(UsageError):
        plan_row_ranges(10, 0)
    with pytest.raises(UsageError):
        plan_row_ranges(-1, 5)


def test_query_batches_cover_every_size():
    for nq in range(0, 301):
        for batch in (1, 2, 7, 64, 300, 1000):
            b = plan_query_batches(nq, batch)
            assert [q for lo, hi in b for q in range(lo, hi)] == list(range(nq))
            assert all(0 < hi - lo <= batch for lo, hi in b)


@pytest.mark.parametrize("budget_gib", [1, 2, 8, 32])
@pytest.mark.parametrize("n,nq,k", [(10_120_191, 10_000, 1001), (300_000, 10_000, 11), (1000, 5, 3),
                                    (100_000_000, 10_000, 101)])
def test_memory_plan_fits_budget(budget_gib, n, nq, k):
    budget = budget_gib * 1024**3
    state = 2 * nq * 2 * (k + 1) * 24
    if BASE_RESERVE + state + nq * 768 * 12 >= budget:
        with pytest.raises(UsageError, match="raise --memory"):
            plan_memory(budget, n, nq, 768, 2, k)
        return
    plan = plan_memory(budget, n, nq, 768, 2, k)
    assert plan.total_bytes <= budget
    assert 1 <= plan.block_rows <= n
    assert 1 <= plan.query_batch <= nq
    assert plan.block_bytes == estimate_block_bytes(plan.block_rows, plan.query_batch, 768, 2, k)


def test_memory_plan_8g_for_10m_is_large_blocks():
    plan = plan_memory(8 * 1024**3, 10_120_191, 10_000, 768, 2, 1001)
    assert plan.query_batch == 10_000 and plan.block_rows >= 50_000


def test_memory_plan_too_small_is_a_usage_error():
    with pytest.raises(UsageError, match="raise --memory"):
        plan_memory(BASE_RESERVE // 2, 1000, 10, 768, 2, 10)


def test_memory_plan_hamming_needs_no_score_matrix():
    plan = plan_memory(2 * 1024**3, 10_000_000, 10_000, 16, 8, 11, gemm=False)
    assert plan.total_bytes <= 2 * 1024**3 and plan.block_rows > 1_000_000 // 2
