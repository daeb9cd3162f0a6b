"""Pure planners for the exact engine: row ranges over (sharded) databases, query batches, and block
sizes derived from a memory budget. No I/O, no numpy work: every function here is a small pure
function tested exhaustively (tests/test_exact_plan.py).

Row ids are global, 0-based; a row range is half-open ``[start, stop)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from laionknn.errors import UsageError


@dataclass(frozen=True)
class RowTask:
    """One unit of database work: rows ``[start, stop)`` (global 0-based ids) of shard ``shard``."""

    shard: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def plan_row_ranges(n_rows: int, block_rows: int, *, shard_rows: int | None = None,
                    start: int = 0) -> list[RowTask]:
    """Cover rows ``[start, n_rows)`` with consecutive tasks of at most ``block_rows`` rows.

    With ``shard_rows`` the database is cut into shards ``[s*shard_rows, (s+1)*shard_rows)`` and no
    task crosses a shard boundary (a distributed engine hands out one shard per worker). Tasks are
    returned in increasing row order, disjoint, and their union is exactly ``[start, n_rows)``.
    """
    if n_rows < 0 or start < 0:
        raise UsageError(f"row counts must be non-negative, got n_rows={n_rows}, start={start}")
    if block_rows < 1:
        raise UsageError(f"block_rows must be at least 1, got {block_rows}")
    shard_rows = n_rows if shard_rows is None else shard_rows
    if shard_rows < 1 and n_rows > 0:
        raise UsageError(f"shard_rows must be at least 1, got {shard_rows}")
    tasks: list[RowTask] = []
    lo = start
    while lo < n_rows:
        shard = lo // shard_rows
        shard_end = min(n_rows, (shard + 1) * shard_rows)
        hi = min(shard_end, lo + block_rows)
        tasks.append(RowTask(shard, lo, hi))
        lo = hi
    return tasks


def plan_query_batches(n_queries: int, batch: int) -> list[tuple[int, int]]:
    """Consecutive half-open query ranges ``(lo, hi)`` of at most ``batch`` queries covering ``[0, n_queries)``."""
    if batch < 1:
        raise UsageError(f"query batch must be at least 1, got {batch}")
    return [(lo, min(n_queries, lo + batch)) for lo in range(0, n_queries, batch)]


@dataclass(frozen=True)
class MemoryPlan:
    """Block sizes chosen for a memory budget and the bytes each part is expected to take."""

    block_rows: int
    query_batch: int
    budget: int
    fixed_bytes: int  # interpreter + libraries reserve, queries, candidate state for all queries
    block_bytes: int  # read buffer + float32 copy + score matrix + block candidates

    @property
    def total_bytes(self) -> int:
        return self.fixed_bytes + self.block_bytes


# What the interpreter with numpy, h5py, numba and BLAS buffers takes before any data (measured ~350 MB).
BASE_RESERVE = 640 * 1024**2
STATE_ENTRY_BYTES = 3 * 8  # lo, hi (float64) and id (int64) of one candidate
STATE_WIDTH_FACTOR = 2  # state width expected ~K; merging holds old + new + output at once
DEFAULT_BUDGET = 4 * 1024**3
SCORE_TILE = (4096, 1024)  # (queries, rows) of one float32 score tile; see laionknn.exact.engine


def estimate_block_bytes(block_rows: int, query_batch: int, dim: int, db_itemsize: int, k: int,
                         *, gemm: bool = True) -> int:
    """Bytes held while one block is processed (see :func:`plan_memory`)."""
    buf = block_rows * dim * db_itemsize
    f32 = block_rows * dim * 4 if gemm else 0
    scores = min(query_batch, SCORE_TILE[0]) * min(block_rows, SCORE_TILE[1]) * 4 if gemm else 0
    cand = query_batch * STATE_WIDTH_FACTOR * (k + 1) * STATE_ENTRY_BYTES
    return buf + f32 + scores + cand + block_rows * 8 * 4  # + per-row norms/scales


def plan_memory(budget: int | None, n_rows: int, n_queries: int, dim: int, db_itemsize: int, k: int, *,
                gemm: bool = True, query_itemsize: int = 4, max_block_rows: int = 1 << 20,
                max_query_batch: int = 16384) -> MemoryPlan:
    """Choose ``block_rows`` and ``query_batch`` so that everything fits in ``budget`` bytes.

    Held at once: a reserve for the interpreter and libraries (:data:`BASE_RESERVE`), all queries in
    float32 and float64, the candidate state of every query (``~2 (k+1)`` entries of 24 bytes, twice
    while merging), and per block: the read buffer (``block_rows x dim`` in the file's dtype, float16
    stays float16), its float32 copy, the float32 score matrix ``query_batch x block_rows`` and the
    block's candidates. ``gemm=False`` (Hamming) needs no float copy and no score matrix. Scores are
    computed tile by tile (:data:`SCORE_TILE`), so the score matrix is small and fixed.

    Queries are batched only when the candidate buffers of all queries would not fit beside a block of
    4096 rows.
    Raises :class:`UsageError` when even one row per block does not fit.
    """
    budget = DEFAULT_BUDGET if budget is None else int(budget)
    n_queries = max(1, n_queries)
    fixed = (BASE_RESERVE + n_queries * dim * (query_itemsize + 8)
             + 2 * n_queries * STATE_WIDTH_FACTOR * (k + 1) * STATE_ENTRY_BYTES)
    avail = budget - fixed
    if avail <= 0:
        raise UsageError(f"memory budget {budget / 1024**3:.2f} GiB is too small: the fixed part (libraries, "
                         f"{n_queries} queries, top-{k} state) needs {fixed / 1024**3:.2f} GiB; raise --memory")
    query_batch = min(n_queries, max_query_batch)
    while query_batch > 1 and estimate_block_bytes(min(4096, n_rows), query_batch, dim, db_itemsize, k,
                                                   gemm=gemm) > avail:
        query_batch = (query_batch + 1) // 2
    per_row = estimate_block_bytes(1, query_batch, dim, db_itemsize, k, gemm=gemm) - \
        estimate_block_bytes(0, query_batch, dim, db_itemsize, k, gemm=gemm)
    fixed_block = estimate_block_bytes(0, query_batch, dim, db_itemsize, k, gemm=gemm)
    block_rows = (avail - fixed_block) // per_row
    if block_rows < 1:
        raise UsageError(f"memory budget {budget / 1024**3:.2f} GiB leaves no room for a database block; "
                         f"raise --memory")
    block_rows = int(min(block_rows, n_rows, max_block_rows))
    if block_rows >= 4096:
        block_rows -= block_rows % 1024  # keep BLAS panels and HDF5 chunks aligned
    block_bytes = estimate_block_bytes(block_rows, query_batch, dim, db_itemsize, k, gemm=gemm)
    return MemoryPlan(block_rows=max(1, block_rows), query_batch=query_batch, budget=budget,
                      fixed_bytes=fixed, block_bytes=block_bytes)
