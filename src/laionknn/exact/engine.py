"""The exact engine's driver: stream the database block by block, filter in float32 with a rigorous
error bound, merge candidate intervals, then rescore the survivors in float64.

Pass 1 (filter). For each row range (planned by :mod:`laionknn.exact.plan`) the block is read (float16
stays float16 in the read buffer), converted exactly to float32, and for each query batch the score
block ``S = xq @ xb.T`` is computed by float32 BLAS. For any summation order,
``|fl(q.x) - q.x| <= gamma_d * sum_t |q_t||x_t| <= gamma_d * |q| |x|`` with
``gamma_d = d u / (1 - d u)``, ``u = 2**-24`` (Higham, Accuracy and Stability, Thm 3.4 / 3.5), plus
``2u |q||x|`` for rounding float64 inputs to float32 (float16 -> float32 is exact), inflated by
``1 + 1e-6`` to cover the float64 arithmetic of the bound itself and of the final rescoring.
Each (query, row) pair becomes a distance interval in per-query "key" units:

=========  ===========================  ==========================================
metric     key (higher is better)       error radius
=========  ===========================  ==========================================
dot        ``q.x``                      ``g |x|``                (g = gamma' |q|)
cosine     ``q.x / |x|``                ``g``
l2         ``q.x - |x|^2 / 2``          ``g |x| + 1e-12 (|x|^2 + |q|^2)``
=========  ===========================  ==========================================

and the kernel keeps every pair that the merge rule of :mod:`laionknn.exact.merge` cannot exclude with
``K = k + 1`` (one more than asked, to detect a tie between ranks k and k+1).

Pass 2 (rescore). The surviving pairs are recomputed in float64 from the source values (products of
float16/float32 numbers are exact in float64): ``1 - q.x`` (dot), ``1 - q.x / (|q||x|)`` (cosine),
``sum (q - x)^2`` (l2). Sorting them by ``(distance, id)`` gives the float64 answer. Hamming needs no
bound: its distances are exact integers from the start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence

import numpy as np

from laionknn.errors import DataError, UsageError
from laionknn.exact import checkpoint as ckpt
from laionknn import native
from laionknn.exact.blas import describe, resolve_backend, sgemm_nt
from laionknn.exact.kernels import (_CHUNK, chunk_bounds, norms64, pairs_by_row, rescore_into, select_hamming,
                                    select_scores, to_float32)
from laionknn.exact.merge import Candidates, base_buffer, exact_topk, filled_prefix, kth_keys, merge
from laionknn.exact.plan import SCORE_TILE, plan_memory, plan_query_batches, plan_row_ranges
from laionknn.io.vectors import check_vectors, parse_memory
from laionknn.progress import progress_bar
from laionknn.types import KnnResult, Metric

log = logging.getLogger(__name__)

U32 = 2.0 ** -24
RESCORE_ROWS = 32768  # rows converted to float32 at a time by the rescoring pass (a 96 MiB buffer at d = 768)
SLACK = 1e-6
SLEEP_ENV = "LAIONKNN_EXACT_TEST_SLEEP"  # test hook: seconds to sleep after each finished row range


_ANNOUNCED = False


def kernels_compiled(kernel=select_scores) -> bool | None:
    """Whether numba's on-disk cache already holds ``kernel`` (its index file exists): False on the
    first use after an install, when every kernel is compiled once (about 100 s on 2 cores); None when
    numba's cache layout cannot be read."""
    try:
        return os.path.exists(kernel._cache._cache_file._index_path)
    except AttributeError:
        return None


def announce_compilation(metric: Metric) -> None:
    """Say once per process, before the wait, that the first run compiles the numba kernels."""
    global _ANNOUNCED
    if _ANNOUNCED:
        return
    _ANNOUNCED = True
    if kernels_compiled(select_hamming if metric is Metric.HAMMING else select_scores) is False:
        log.warning("first use of the exact engine on this install: numba compiles its kernels once "
                    "(about 100 s on 2 cores); later runs load them from numba's cache")


def gamma(dim: int) -> float:
    """Relative error factor of a float32 dot product of length ``dim`` (inputs rounded from float64
    included), inflated by ``1 + SLACK``: ``(d u / (1 - d u) + 2u) (1 + SLACK)``."""
    du = dim * U32
    if du >= 1:
        raise UsageError(f"dimension {dim} is too large for the float32 error bound (needs d * 2^-24 < 1)")
    return (du / (1 - du) + 2 * U32) * (1 + SLACK)


class _Source:
    """A database given as an ndarray (n, dim) or a :class:`laionknn.io.VectorFile`."""

    def __init__(self, database) -> None:
        self.file = database if hasattr(database, "read") and hasattr(database, "dim") else None
        if self.file is not None:
            self.n, self.dim, self.dtype = int(database.n), int(database.dim), np.dtype(database.dtype)
        else:
            self.array = np.asarray(database)
            if self.array.ndim != 2:
                raise UsageError(f"database must be a 2-d array (one vector per row), got shape {self.array.shape}")
            self.n, self.dim = self.array.shape
            self.dtype = self.array.dtype

    def read(self, lo: int, hi: int) -> np.ndarray:
        return self.file.read(lo, hi) if self.file is not None else self.array[lo:hi]

    def identity(self) -> dict:
        if self.file is not None:
            return {**ckpt.file_identity(self.file.path), "key": getattr(self.file, "key", None)}
        return ckpt.array_identity(self.array)


@contextlib.contextmanager
def _threads(n: int | None):
    if not n:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        numba.set_num_threads(old)


def _thread_count() -> int:
    """Threads the kernels may use now (numba's setting, which :func:`_threads` limits)."""
    import numba

    return int(numba.get_num_threads())


NARROW = ("bf16", "int16")  # backends of a certified filter on 16-bit images (bf16 or int16)


def _bf16_block_rows(block_rows: int, planned: bool) -> int:
    """The bf16 and int16 filters hold the block packed in 16-bit values (2 bytes per value beside the read buffer; after a
    hand-over to float32 the float32 copy too, for one block): a planned block shrinks by a quarter to
    stay inside the memory budget."""
    return max(min(block_rows, R_TILE), block_rows * 3 // 4 // R_TILE * R_TILE) if planned else block_rows


def _validate(src: _Source, queries: np.ndarray, k: int, metric: Metric) -> None:
    if src.n == 0:
        raise DataError("the database is empty (0 rows); nothing can be searched; check the file or subset")
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    if k > src.n:
        raise UsageError(f"k={k} is larger than the database ({src.n} rows); ask for at most k={src.n}")
    if queries.ndim != 2:
        raise UsageError(f"queries must be a 2-d array (one query per row), got shape {queries.shape}")
    if queries.shape[1] != src.dim:
        raise UsageError(f"dimension mismatch: queries have {queries.shape[1]} columns, the database has "
                         f"{src.dim}; use queries of the same family (clip768, pca32, pca96, hamming)")
    if metric is Metric.HAMMING:
        for what, dt in (("database", src.dtype), ("queries", queries.dtype)):
            if dt.kind not in "iu" or dt.itemsize != 8:
                raise UsageError(f"Hamming distance needs packed 64-bit words, the {what} are {dt}; "
                                 f"use the hammingv2 files (uint64)")
    elif src.dtype.kind not in "fiu" or queries.dtype.kind not in "fiu":
        raise UsageError(f"{metric.value} needs numeric vectors, got database {src.dtype} and queries {queries.dtype}")
    else:
        check_vectors(queries, what="queries", nonzero=metric is Metric.COSINE)


def validate(database, queries: np.ndarray, k: int, metric: "str | Metric") -> int:
    """Check a search before any work (the local engine's checks: empty database, k, dimensions, dtypes,
    NaN/zero-norm queries); raises :class:`UsageError`/:class:`DataError`. Returns ``kk = min(k + 1, n)``,
    the number of candidates each query keeps."""
    src = _Source(database)
    _validate(src, np.asarray(queries), int(k), Metric.parse(metric))
    return min(int(k) + 1, src.n)


def _select(run, nq: int, rows_in_block: int, k: int) -> Candidates:
    """Run a selection kernel through ``run(sel, out, counts)`` for query rows ``sel`` (a slice or an
    index array), retrying rows whose buffer overflowed (count -1) with a 4x wider buffer."""
    width = min(rows_in_block, 2 * k + 64)
    out = Candidates.empty(nq, width)
    counts = np.zeros(nq, dtype=np.int64)
    run(slice(None), out, counts)
    bad = np.flatnonzero(counts < 0)
    while bad.size:
        width = min(rows_in_block, width * 4)
        sub = Candidates.empty(bad.size, width)
        sub_counts = np.zeros(bad.size, dtype=np.int64)
        run(bad, sub, sub_counts)
        out = out.padded(width)
        out.lo[bad], out.hi[bad], out.ids[bad] = sub.lo, sub.hi, sub.ids
        counts[bad] = sub_counts
        bad = bad[sub_counts < 0]
    return out.trimmed()


def knn(database, queries: np.ndarray, k: int, metric: "str | Metric" = Metric.COSINE, *,
        memory: "int | str | None" = None, block_rows: int | None = None, query_batch: int | None = None,
        threads: int | None = None, blas: str | None = None, checkpoint: "str | os.PathLike[str] | None" = None,
        resume: bool = False, checkpoint_every: float = 0.0, tie_ranks: "Sequence[int]" = (),
        dists64: bool = False) -> KnnResult:
    """Exact k nearest neighbours of each query row in ``database``; float64-identical.

    database: ndarray (n, dim) or :class:`laionknn.io.VectorFile` (read block by block).
    queries: (n_queries, dim). metric: dot (``1 - q.x``), cosine (vectors L2-normalised in float64),
    l2 (squared Euclidean) or hamming (uint64 words, bit count).
    Returns :class:`KnnResult`: ids int64 (n_queries, k) 0-based, dists float32 ascending (the float64
    distance rounded once), ties at equal float64 distance broken by the lower id. ``attrs`` holds
    ``n_rescored`` (pairs recomputed in float64), ``tie_at_k`` (uint8 per query: rank k and k+1 have
    the same float64 distance), ``block_rows``, ``query_batch``, ``filter`` (``float32``, ``bf16`` or ``int16``,
    or the hand-over point when the bf16/int16 filter gave way) and ``gemm`` (the kernel that ran, e.g.
    ``faiss-cpu OpenBLAS 0.3.15 core=Zen`` or ``int16 avx512vnni (laionknn._native)``).

    tie_ranks: extra ranks ``r`` (1 <= r <= k) whose float64 tie with rank ``r + 1`` is reported in
    ``attrs["tie_at"][r]`` (uint8 per query, computed exactly as ``tie_at_k``), so one search for a deep
    k also answers "is the 10-NN set ambiguous?". dists64: also return ``attrs["dists64"]``, float64
    (n_queries, k), the distances before their rounding to float32 (same order as ``ids``).

    memory: budget in bytes or text ('8G'); block sizes are planned from it unless given explicitly.
    checkpoint: file for the state after each finished row range (atomic); with ``resume`` an
    existing one is continued (it must match inputs and parameters, else CheckpointError).
    """
    metric = Metric.parse(metric)
    src = _Source(database)
    q_in = np.asarray(queries)
    _validate(src, q_in, int(k), metric)
    k = int(k)
    tie_ranks = sorted({int(r) for r in tie_ranks})
    if tie_ranks and not 1 <= tie_ranks[0] <= tie_ranks[-1] <= k:
        raise UsageError(f"tie_ranks {tie_ranks}: each rank must be between 1 and k={k}")
    nq, n = q_in.shape[0], src.n
    kk = min(k + 1, n)
    gemm = metric is not Metric.HAMMING
    plan = plan_memory(parse_memory(memory), n, nq, src.dim, src.dtype.itemsize, kk, gemm=gemm)
    explicit_rows = block_rows is not None
    block_rows = int(block_rows or plan.block_rows)
    query_batch = int(query_batch or plan.query_batch)
    log.info("exact %s k=%d: %d queries x %d rows (dim %d, %s), blocks of %d rows, query batches of %d",
             metric.value, k, nq, n, src.dim, src.dtype, block_rows, query_batch)
    announce_compilation(metric)
    info: dict = {}
    backend = resolve_backend(blas) if gemm else "numpy"
    filter_rows = _bf16_block_rows(block_rows, not explicit_rows) if backend in NARROW else block_rows
    if nq == 0:
        dd = np.zeros((0, k))
        return KnnResult(np.zeros((0, k), np.int64), dd.astype(np.float32),
                         _result_attrs(dd, k, tie_ranks, dists64, n_rescored=0))

    fingerprint = None
    if checkpoint is not None:  # hashing an in-memory database costs a pass over it: only when needed
        fingerprint = {"database": src.identity(), "queries": ckpt.array_identity(q_in), "k": k,
                       "metric": metric.value, "n_queries": nq, "n_rows": n, "dim": src.dim}
    parts: list[Candidates] = []
    batches = plan_query_batches(nq, query_batch)
    start_row = 0
    loaded = ckpt.load_latest(checkpoint, fingerprint) if checkpoint is not None and resume else None
    if loaded is not None:
        state, start_row = loaded
        parts = [state.rows(lo, hi) for lo, hi in batches]
        log.info("resuming from %s at row %d of %d", checkpoint, start_row, n)
    else:
        parts = [Candidates.empty(hi - lo) for lo, hi in batches]

    with _threads(threads):
        if metric is Metric.HAMMING:
            parts = _pass_hamming(src, q_in, parts, batches, kk, block_rows, start_row, checkpoint,
                                  fingerprint, checkpoint_every)
            state = Candidates.stack(parts)
            dd, ii = exact_topk(state.lo, state.ids, kk)
            n_rescored = 0
        else:
            parts = _pass_filter(src, q_in, parts, batches, kk, metric, filter_rows, start_row, checkpoint,
                                 fingerprint, checkpoint_every, backend, info=info)
            state = Candidates.stack(parts)
            dd, ii, n_rescored = _pass_rescore(src, q_in, state, kk, metric, max(block_rows, 4096))
    return finish(dd, ii, k, tie_ranks=tie_ranks, dists64=dists64, n_rescored=int(n_rescored),
                  block_rows=block_rows, query_batch=query_batch, **info)


def finish(dd: np.ndarray, ii: np.ndarray, k: int, *, tie_ranks=(), dists64: bool = False, **extra) -> KnnResult:
    """The answer from the exact top-``kk`` (``kk`` = k+1 unless the database has only k rows):
    dd float64 (nq, kk) ascending, ii int64 (nq, kk) 0-based. dists are rounded once to float32;
    ``attrs`` as :func:`knn` documents (``tie_at_k``, optional ``tie_at``/``dists64``, plus ``extra``)."""
    attrs = _result_attrs(dd, k, tie_ranks, dists64, **extra)
    return KnnResult(ids=ii[:, :k].copy(), dists=dd[:, :k].astype(np.float32), attrs=attrs)


def knn_rows(database, queries: np.ndarray, kk: int, metric: "str | Metric", start: int, stop: int, *,
             memory: "int | str | None" = None, block_rows: int | None = None, query_batch: int | None = None,
             threads: int | None = None, blas: str | None = None) -> tuple[Candidates, Candidates]:
    """The per-row-range engine: the local engine's two passes restricted to database rows ``[start, stop)``.

    database: ndarray or :class:`laionknn.io.VectorFile`; queries: (n_queries, dim), already validated
    by the caller (see :func:`validate`); kk: candidates to keep per query (``min(k + 1, n_rows)`` of the
    whole database). Returns ``(exact, certified)``:

    * ``exact`` -- the top-``kk`` of these rows by float64 ``(distance, id)``, as :class:`Candidates`
      with ``lo is hi`` (the float64 distance: ``1 - q.x``, cosine, squared L2 or bit count) and
      global 0-based ids. Merging the ``exact`` parts of all row ranges with
      :func:`laionknn.exact.merge.merge` (any grouping) gives the local engine's top-``kk``.
    * ``certified`` -- the float32 filter's survivors (distance intervals in key units) before
      rescoring; merging those of all ranges gives exactly the pairs the local engine rescores (its
      ``n_rescored`` is the merged count). Hamming: empty (nothing needs rescoring).
    """
    metric = Metric.parse(metric)
    src = _Source(database)
    q_in = np.asarray(queries)
    nq, gemm = q_in.shape[0], metric is not Metric.HAMMING
    plan = plan_memory(parse_memory(memory), max(1, stop - start), nq, src.dim, src.dtype.itemsize, kk, gemm=gemm)
    block_rows = int(block_rows or plan.block_rows)
    if block_rows > R_TILE and start % R_TILE == 0:  # keep score tiles on the global 1024-row grid
        block_rows -= block_rows % R_TILE
    batches = plan_query_batches(nq, int(query_batch or plan.query_batch))
    parts = [Candidates.empty(hi - lo) for lo, hi in batches]
    with _threads(threads):
        if metric is Metric.HAMMING:
            parts = _pass_hamming(src, q_in, parts, batches, kk, block_rows, start, None, None, 0.0, stop=stop)
            state = Candidates.stack(parts)
            dd, ii = exact_topk(state.lo, state.ids, kk)
            return Candidates(dd, dd, ii), Candidates.empty(nq)
        backend = resolve_backend(blas)
        rows = _bf16_block_rows(block_rows, False) if backend in NARROW else block_rows
        parts = _pass_filter(src, q_in, parts, batches, kk, metric, rows, start, None, None, 0.0, backend, stop=stop)
        state = Candidates.stack(parts)
        dd, ii, _ = _pass_rescore(src, q_in, state, kk, metric, max(block_rows, 4096), start=start, stop=stop)
    return Candidates(dd, dd, ii), state


def tie_flags(dd: np.ndarray, rank: int) -> np.ndarray:
    """uint8 (n_queries,): 1 where ranks ``rank`` and ``rank + 1`` (1-based) have the same float64
    distance. dd: float64 (n_queries, >= rank) ascending; no rank ``rank + 1`` (database of ``rank``
    rows) means no tie."""
    if dd.shape[1] <= rank:
        return np.zeros(dd.shape[0], dtype=np.uint8)
    return (dd[:, rank - 1] == dd[:, rank]).astype(np.uint8)


def _result_attrs(dd: np.ndarray, k: int, tie_ranks, dists64: bool, **extra) -> dict:
    """``attrs`` of a :func:`knn` answer from the float64 top-(k+1) distances ``dd``."""
    attrs = {**extra, "tie_at_k": tie_flags(dd, k)}
    if tie_ranks:
        attrs["tie_at"] = {r: tie_flags(dd, r) for r in tie_ranks}
    if dists64:
        attrs["dists64"] = dd[:, :k].copy()
    return attrs


def _after_block(checkpoint, parts, fingerprint, next_row, last_save, every) -> float:
    now = time.monotonic()
    if checkpoint is not None and (now - last_save >= every):
        ckpt.save(checkpoint, Candidates.stack(parts), fingerprint, next_row)
        last_save = now
    pause = float(os.environ.get(SLEEP_ENV, "0") or 0)
    if pause > 0:
        time.sleep(pause)
    return last_save


def _pass_hamming(src, q_in, parts, batches, kk, block_rows, start_row, checkpoint, fingerprint, every, *,
                  stop=None):
    xq = np.ascontiguousarray(q_in).view(np.uint64)
    last = time.monotonic()
    stop, first = (src.n, 0) if stop is None else (stop, start_row)
    with progress_bar("exact hamming", stop - first) as bar:
        bar.update(start_row - first)
        for task in plan_row_ranges(stop, block_rows, start=start_row):
            xb = np.ascontiguousarray(src.read(task.start, task.stop)).view(np.uint64)
            for b, (lo, hi) in enumerate(batches):
                h, i = kth_keys(parts[b], kk)
                xq_b = xq[lo:hi]

                def run(sel, o, cnt, xq_b=xq_b, h=h, i=i, xb=xb, row0=task.start):
                    select_hamming(np.ascontiguousarray(xq_b[sel]), xb, h[sel], i[sel], row0, kk, o.lo, o.hi, o.ids, cnt)

                cands = _select(run, hi - lo, xb.shape[0], kk)
                parts[b] = merge(parts[b], cands, kk)
            bar.advance(task.rows)
            # the state after the last block is always saved: a failed final write resumes without a pass
            last = _after_block(checkpoint, parts, fingerprint, task.stop, last, every if task.stop < stop else 0.0)
    return parts


def _metric_columns(metric: Metric, nx: np.ndarray):
    """Per-row key scale ``a``, offset ``b``, error weight ``w`` and absolute error ``h`` (see module doc)."""
    zero = np.zeros_like(nx)
    if metric is Metric.COSINE:
        return 1.0 / nx, zero, np.ones_like(nx), zero
    if metric is Metric.L2:
        sq = nx * nx
        return np.ones_like(nx), 0.5 * sq, nx, 1e-12 * sq
    return np.ones_like(nx), zero, nx, zero


# queries x rows per sgemm call (faiss's exhaustive search uses the same tile): the 16 MiB score tile
# stays in cache while it is scanned, instead of a block-sized score matrix streaming through memory
Q_TILE, R_TILE = SCORE_TILE


def _check_norms(nx: np.ndarray, first_row: int, nonzero: bool) -> None:
    """NaN/inf rows have a non-finite float64 norm (no float16/float32 value overflows x^2 in float64);
    zero rows have norm 0. Raises DataError naming the first bad row."""
    bad = ~np.isfinite(nx)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + first_row
        raise DataError(f"database: row {row} contains NaN or infinite values; clean or drop that row")
    if nonzero and not nx.all():
        row = int(np.flatnonzero(nx == 0)[0]) + first_row
        raise DataError(f"database: row {row} has zero norm and cannot be L2-normalised; drop that row "
                        f"or run without normalisation")


_NO_MAX = np.empty((0, 0), dtype=np.float32)


def _scan_tile(s, cols, g, c, th, ti, row0, kk, buf: Candidates, counts, pos, cmax=_NO_MAX):
    """Select from one score tile into ``buf`` (rows of this tile), widening it when a row overflows.
    ``cmax``: the tile's per-32-column row maxima from the GEMM kernel, or empty. Returns the (possibly
    new) buffer."""
    rows = np.arange(s.shape[0], dtype=np.int64)
    pos[:] = 0
    while rows.size:
        select_scores(s, *cols, g, c, th, ti, row0, kk, buf.lo, buf.hi, buf.ids, counts, pos, rows, cmax)
        rows = np.flatnonzero(pos < s.shape[1]).astype(np.int64)
        if rows.size:
            buf = buf.padded(buf.width * 4)
    return buf


def _block_buffer(src: _Source, rows: int) -> np.ndarray | None:
    """A float32 (rows, dim) buffer for converted blocks, or None when blocks are float32 already."""
    return None if src.dtype == np.float32 or rows <= 0 else np.empty((rows, src.dim), dtype=np.float32)


# Denormal inputs are flushed by the conversion (their value moves into the residual); what the bf16
# instructions may still flush is a product or a partial sum below 2^-126: at most 3 * 2^-126 per term.
TINY = 2.0 ** -126
# switch back to the float32 filter when the bf16 bound leaves more survivors per query than this
# (1.3 (k + 1) on LAION-like data at k = 10 and k = 1000)
BF16_SURVIVORS = (1.5, 64)


class _Bf16Filter:
    """The certified bf16 filter's per-query terms (once) and per-block columns (see docs/exact.md).

    With ``q^ = bf16(q)``, ``x^ = bf16(x)`` and residuals ``dq = q - q^``, ``dx = x - x^`` (exact),
    ``q.x = q^.x^ + q^.dx + dq.x``, hence for the float32 sum ``s`` of the exact bf16 products
    ``|s - q.x| <= gamma'_d |q^||x^| + |q^||dx| + |dq||x| + 3 d 2^-126``,
    ``gamma'_d = d u / (1 - d u)``, ``u = 2^-24``. With ``rho = max_q |dq| / |q^|`` this is at most
    ``|q^| (gamma'_d |x^| + |dx| + rho |x|) + 3 d 2^-126``: the float32 filter's ``g[q] * w[j]`` form, so the
    selection kernel, merge and rescoring are unchanged. Queries whose bf16 image is zero add
    ``|dq| max_j(a_j |x_j|)`` to their constant term instead.
    """

    def __init__(self, q_in: np.ndarray, dim: int, threads: int | None) -> None:
        q = q_in if q_in.dtype in (np.float16, np.float32, np.float64) else q_in.astype(np.float64)
        self.threads = threads
        self.q = native.prepare_queries(q, threads=threads)
        du = dim * U32
        self.gamma = du / (1 - du)
        self.dim = dim
        nz = self.q.nhat > 0
        self.rho = float((self.q.nres[nz] / self.q.nhat[nz]).max()) if nz.any() else 0.0
        self.zero = np.where(nz, 0.0, self.q.nres) * (1 + SLACK)
        self.g = self.q.nhat * (1 + SLACK)
        self.usable = bool(np.isfinite(self.q.nhat).all() and np.isfinite(self.q.nres).all())
        self.active = self.usable
        self.switched_at: int | None = None
        self.tiles: dict[int, native.Packed] = {}
        self.nhat = self.nres = np.zeros(0)

    def pack(self, block: np.ndarray) -> np.ndarray | None:
        """Pack a block (float16/32/64 as read: no float32 copy) tile by tile, keeping the tiles and their
        radii for :meth:`columns`; returns the float64 row norms, or None when the bf16 image of a row
        overflows or a row is not finite (the float32 filter then takes the block and reports it)."""
        self.tiles = {}
        for r0 in range(0, block.shape[0], R_TILE):
            self.tiles[r0] = native.pack_rows(block[r0:r0 + R_TILE], threads=self.threads)
        self.nhat = np.concatenate([t.nhat for t in self.tiles.values()])
        self.nres = np.concatenate([t.nres for t in self.tiles.values()])
        nx = np.concatenate([t.norm for t in self.tiles.values()])
        if not (np.isfinite(self.nhat).all() and np.isfinite(self.nres).all() and np.isfinite(nx).all()):
            self.tiles = {}
            return None
        return nx

    tiny = 3 * TINY  # per product term: what the bf16 instructions may flush

    def columns(self, a, nx, h, c):
        """``(w, h, c)`` of the block last packed by :meth:`pack`."""
        w = a * (self.gamma * self.nhat + self.nres + self.rho * nx)
        h = h + a * (self.dim * self.tiny * (1 + SLACK))
        c = c + self.zero * float((a * nx).max(initial=0.0))
        return w, h, c

    def scores(self, q0: int, q1: int, r0: int, r1: int, out: np.ndarray) -> None:
        native.gemm_bf16(self.q.a[q0:q1], self.tiles[r0], out, ncols=r1 - r0, threads=self.threads)


class _I16Filter(_Bf16Filter):
    """The certified int16 filter (see docs/exact.md): ``q~ = 2^e_q Q``, ``x~ = 2^e_x X`` with int16 ``Q``,
    ``X`` (:func:`laionknn.native.quantize_rows`) and residuals ``dq = q - q~``, ``dx = x - x~`` (exact in
    float64). The int32 sum ``Q.X`` is exact (``|Q||X| < 2^31``), rounded once to float32 and scaled by
    ``2^(e_q + e_x)`` (exact in the exponent range :data:`laionknn.native.I16_EXP_RANGE`), hence
    ``|s - q.x| <= u |q~||x~| + |q~||dx| + |dq||x|`` with ``u = 2^-24``: the bf16 filter's form with
    ``gamma'_d`` replaced by ``u`` and no underflow term.
    """

    tiny = 0.0

    def __init__(self, q_in: np.ndarray, dim: int, threads: int | None) -> None:
        q = q_in if q_in.dtype in (np.float16, np.float32, np.float64) else q_in.astype(np.float64)
        self.threads = threads
        self.q = native.quantize_queries(q, threads=threads)
        self.gamma = U32
        self.dim = dim
        nz = self.q.nhat > 0
        self.rho = float((self.q.nres[nz] / self.q.nhat[nz]).max()) if nz.any() else 0.0
        self.zero = np.where(nz, 0.0, self.q.nres) * (1 + SLACK)
        self.g = self.q.nhat * (1 + SLACK)
        lo, hi = native.I16_EXP_RANGE
        self.usable = bool(np.isfinite(self.q.norm).all() and np.isfinite(self.q.nres).all()
                           and (self.q.e >= lo).all() and (self.q.e <= hi).all())
        self.active = self.usable
        self.switched_at = None
        self.tiles = {}
        self.buf = None
        self.nhat = self.nres = np.zeros(0)

    def pack(self, block: np.ndarray) -> np.ndarray | None:
        """As :meth:`_Bf16Filter.pack`, quantising to int16; None also when a row's exponent leaves
        :data:`laionknn.native.I16_EXP_RANGE` (tiny or huge rows: the float32 filter takes the block)."""
        self.tiles = {}
        # the whole block in one call, into a buffer kept across blocks (fresh pages cost more than the
        # conversion); score tiles are column ranges of it (R_TILE is a multiple of 32)
        p = native.quantize_rows(block, threads=self.threads, buf=self.buf)
        self.buf = p.data
        self.nhat, self.nres, nx = p.nhat, p.nres, p.norm
        lo, hi = native.I16_EXP_RANGE
        if not (np.isfinite(nx).all() and np.isfinite(self.nres).all() and (p.e >= lo).all() and (p.e <= hi).all()):
            return None
        self.tiles = {0: p}
        return nx

    def scores(self, q0: int, q1: int, r0: int, r1: int, out: np.ndarray, cmax: np.ndarray | None = None) -> None:
        native.gemm_i16(self.q, self.tiles[0], out, rows=slice(q0, q1), col0=r0, ncols=r1 - r0, threads=self.threads,
                        cmax=cmax)


def _pass_filter(src, q_in, parts, batches, kk, metric, block_rows, start_row, checkpoint, fingerprint, every,
                 backend, *, stop=None, info: dict | None = None):
    """Pass 1 over rows ``[start_row, stop)`` (default: to the end; progress counts from row 0 then).

    backend ``bf16`` / ``int16``: the certified bf16 / int16 filter (:class:`_Bf16Filter`,
    :class:`_I16Filter`); it hands over to the float32 filter (numpy's sgemm) for the remaining blocks
    when its bound keeps too many survivors. Returns the parts; ``info`` (a dict, optional) receives
    ``filter`` and ``gemm`` for the run record."""
    kinds = {"bf16": _Bf16Filter, "int16": _I16Filter}
    bf = kinds[backend](q_in, src.dim, _thread_count()) if backend in kinds else None
    if bf is not None and not bf.usable:
        log.info("queries do not fit the %s filter (overflow or exponent range): using the float32 filter", backend)
        bf, backend = None, "numpy"
    narrow = backend if bf is not None else None
    if info is not None:
        info["filter"] = narrow or "float32"
        info["gemm"] = describe(backend)
    f32_backend = "numpy" if backend in NARROW else backend
    xq = np.ascontiguousarray(q_in, dtype=np.float32)
    qn = np.linalg.norm(np.asarray(q_in, dtype=np.float64), axis=1)
    g = gamma(src.dim) * qn
    c = {Metric.DOT: np.full_like(qn, 1e-15), Metric.COSINE: np.zeros_like(qn),
         Metric.L2: 1e-12 * qn * qn}[metric]
    qt = min(Q_TILE, max(hi - lo for lo, hi in batches))
    stop, first = (src.n, 0) if stop is None else (stop, start_row)
    scores = np.empty(qt * min(R_TILE, block_rows, stop - start_row), dtype=np.float32)
    # the int16 kernel also writes each row's maximum per 32 columns (fused into the GEMM)
    fused = isinstance(bf, _I16Filter)
    maxima = np.empty(qt * -(-R_TILE // 32), dtype=np.float32) if fused else None
    last = time.monotonic()
    bufs: list[Candidates | None] = [None] * len(batches)  # per-batch selection buffers, kept across blocks
    # per batch, the buffer the next merge writes into (the one the state lived in before the last merge;
    # empty at first, so that merge allocates one with slack)
    spares = [Candidates.empty(0)] * len(batches)
    conv = _block_buffer(src, min(block_rows, stop - start_row))  # float32 block, reused across blocks
    n_q = xq.shape[0]
    # one unit = one database row scored against one query: the bar moves with every query tile of
    # every block, not once per row range (a single 100K block of 10k queries is minutes of work)
    what = narrow or "float32"
    with progress_bar(f"exact {metric.value} ({what} filter)", (stop - first) * n_q, unit="row·query") as bar:
        bar.update((start_row - first) * n_q)
        for task in plan_row_ranges(stop, block_rows, start=start_row):
            raw = src.read(task.start, task.stop)
            nbk = raw.shape[0]
            # bf16: one pass over the block as read gives the packed tiles, the norms and the radii
            nx = bf.pack(raw) if bf is not None and bf.active else None
            packed = nx is not None
            if not packed:
                xb = to_float32(raw, out=conv)
                nx = norms64(xb)
            _check_norms(nx, task.start, metric is Metric.COSINE)
            a, b, w, h = _metric_columns(metric, nx)
            gb, cb, bf_cols = g, c, None
            if packed:
                bf_cols = bf.columns(a, nx, h, c)
                w, h, cb = bf_cols
                gb = bf.g
            for bi, (lo, hi) in enumerate(batches):
                th, ti = kth_keys(parts[bi], kk)
                buf = bufs[bi]
                if buf is None:  # uninitialised: the kernels only read each row's first counts[q] slots
                    width = min(nbk, 2 * kk + 256)
                    buf = Candidates(np.empty((hi - lo, width)), np.empty((hi - lo, width)),
                                     np.empty((hi - lo, width), dtype=np.int64))
                counts = np.zeros(hi - lo, dtype=np.int64)
                pos = np.zeros(hi - lo, dtype=np.int64)
                for q0 in range(lo, hi, qt):
                    q1 = min(hi, q0 + qt)
                    sl = slice(q0 - lo, q1 - lo)
                    for r0 in range(0, nbk, R_TILE):
                        r1 = min(nbk, r0 + R_TILE)
                        s = scores[: (q1 - q0) * (r1 - r0)].reshape(q1 - q0, r1 - r0)
                        cm = _NO_MAX
                        if bf_cols is not None and fused:
                            cm = maxima[: (q1 - q0) * -(-(r1 - r0) // 32)].reshape(q1 - q0, -1)
                            bf.scores(q0, q1, r0, r1, s, cm)
                        elif bf_cols is not None:
                            bf.scores(q0, q1, r0, r1, s)
                        else:
                            sgemm_nt(xq[q0:q1], xb[r0:r1], s, f32_backend)
                        part = Candidates(buf.lo[sl], buf.hi[sl], buf.ids[sl])
                        cols = (a[r0:r1], b[r0:r1], w[r0:r1], h[r0:r1])
                        part = _scan_tile(s, cols + (chunk_bounds(*cols, _CHUNK),), gb[q0:q1], cb[q0:q1],
                                          th[sl], ti[sl], task.start + r0, kk, part, counts[sl], pos[sl], cm)
                        if part.width > buf.width:  # a row overflowed: widen the whole batch buffer
                            buf = buf.padded(part.width)
                            buf.lo[sl], buf.hi[sl], buf.ids[sl] = part.lo, part.hi, part.ids
                    bar.advance((q1 - q0) * nbk)
                # the merged state alternates between two buffers kept across blocks (fresh pages for each
                # block's result cost about 1 s per 250 MB on the project's VMs)
                merged = merge(parts[bi], filled_prefix(buf, counts), kk, out=spares[bi])
                spares[bi], parts[bi] = base_buffer(parts[bi]), merged
                bufs[bi] = buf  # reused by the next block (counts start again at 0)
            if bf_cols is not None and task.stop < stop:
                kept = sum(int((p.ids >= 0).sum()) for p in parts) / n_q
                if kept > BF16_SURVIVORS[0] * kk + BF16_SURVIVORS[1]:
                    bf.active, bf.switched_at, bf.tiles, bf.buf = False, task.stop, {}, None
                    log.info("%s bound keeps %.0f survivors per query (k+1 = %d): float32 filter from row %d",
                             narrow, kept, kk, task.stop)
                    if info is not None:
                        info["filter"] = f"{narrow} to row {task.stop}, then float32"
                        info["gemm"] += f"; then {describe(f32_backend)}"
            # the state after the last block is always saved: a failed final write resumes without a pass
            last = _after_block(checkpoint, parts, fingerprint, task.stop, last, every if task.stop < stop else 0.0)
    return parts


def _pass_rescore(src, q_in, state: Candidates, kk: int, metric: Metric, block_rows: int, *, start: int = 0,
                  stop: int | None = None):
    """float64 distances of every surviving pair (all in rows ``[start, stop)``), then the exact top-kk
    by (distance, id)."""
    stop = src.n if stop is None else stop
    ids = np.ascontiguousarray(state.ids, dtype=np.int64)
    rid_s, q_s, pos_s = pairs_by_row(ids, int(start), int(stop))
    d = np.full(ids.shape, np.inf)
    # float16/float32 queries stay float32 (their products with the database are exact in float64
    # either way) so that all queries fit in cache while pairs stream by database row
    exact32 = q_in.dtype in (np.float16, np.float32) or (q_in.dtype.kind in "iu" and q_in.dtype.itemsize <= 2)
    xq = np.ascontiguousarray(q_in, dtype=np.float32 if exact32 else np.float64)
    qn = norms64(xq)
    mode = {Metric.DOT: 0, Metric.COSINE: 1, Metric.L2: 2}[metric]
    # blocks that are not float32 are converted RESCORE_ROWS rows at a time into one small buffer (fresh
    # pages for a block-sized copy cost more than the rescoring itself), and only where pairs fall
    step = RESCORE_ROWS if src.dtype != np.float32 else max(1, stop - start)
    conv = _block_buffer(src, min(step, block_rows, stop - start))  # reused across blocks
    with progress_bar("exact rescoring (float64)", stop - start) as bar:
        for task in plan_row_ranges(stop, block_rows, start=start):
            a0, a1 = np.searchsorted(rid_s, [task.start, task.stop])
            if a1 > a0:
                raw = src.read(task.start, task.stop)
                for c0 in range(task.start, task.stop, step):
                    c1 = min(task.stop, c0 + step)
                    b0, b1 = np.searchsorted(rid_s, [c0, c1])
                    if b1 == b0:
                        continue
                    xb = to_float32(raw[c0 - task.start:c1 - task.start], out=conv)
                    nx = norms64(xb) if mode == 1 else qn[:1]
                    rescore_into(xb, xq, rid_s[b0:b1] - c0, q_s[b0:b1], pos_s[b0:b1], mode, qn, nx, d)
            bar.advance(task.rows)
    dd, ii = exact_topk(d, ids, kk)
    return dd, ii, int(rid_s.size)
