"""Candidate sets and the one associative top-k merge.

A :class:`Candidates` holds, per query row, a variable number of database rows with an *interval*
``[lo, hi]`` that certainly contains the row's distance (lower is better) and its global 0-based id.
Rows are packed to the left; unused slots have id ``-1``. Exact distances are intervals with
``lo == hi`` (Hamming, or after float64 rescoring).

The merge rule: an entry ``e`` can be dropped as soon as at least ``k`` entries ``f`` are certainly
better, i.e. ``(hi_f, id_f) < (lo_e, id_e)`` lexicographically (``f``'s distance is at most
``hi_f <= lo_e <=`` ``e``'s, and an equal distance is won by the lower id). Equivalently, with
``(H, I)`` the k-th smallest ``(hi, id)`` key of the union, keep ``e`` iff ``(lo_e, id_e) <= (H, I)``.
The k smallest ``(hi, id)`` keys always survive, so pruning a part never changes the k-th key of a
larger union: :func:`merge` is associative and commutative (as a set), which lets the driver loop,
checkpoints and a distributed tree reduction (dask ``argtopk`` style) share it. With exact
distances the rule is the plain top-k by ``(distance, id)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

INT64_MAX = np.iinfo(np.int64).max


@dataclass
class Candidates:
    """Per-query candidate intervals. lo, hi: float64 (nq, W); ids: int64 (nq, W), -1 = empty slot.

    Distances are in the engine's internal units (see :mod:`laionknn.exact.engine`), lower is better.
    """

    lo: np.ndarray
    hi: np.ndarray
    ids: np.ndarray

    @classmethod
    def empty(cls, n_queries: int, width: int = 0) -> "Candidates":
        return cls(np.full((n_queries, width), np.inf), np.full((n_queries, width), np.inf),
                   np.full((n_queries, width), -1, dtype=np.int64))

    @property
    def n_queries(self) -> int:
        return int(self.ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.ids.shape[1])

    def counts(self) -> np.ndarray:
        return (self.ids >= 0).sum(axis=1)

    def rows(self, lo: int, hi: int) -> "Candidates":
        """Queries ``[lo, hi)`` (views; trimmed to their widest row)."""
        c = Candidates(self.lo[lo:hi], self.hi[lo:hi], self.ids[lo:hi])
        return c.trimmed()

    def trimmed(self) -> "Candidates":
        w = int(self.counts().max()) if self.n_queries else 0
        return Candidates(self.lo[:, :w], self.hi[:, :w], self.ids[:, :w])

    def padded(self, width: int) -> "Candidates":
        extra = width - self.width
        if extra <= 0:
            return self
        nq = self.n_queries
        return Candidates(np.concatenate([self.lo, np.full((nq, extra), np.inf)], axis=1),
                          np.concatenate([self.hi, np.full((nq, extra), np.inf)], axis=1),
                          np.concatenate([self.ids, np.full((nq, extra), -1, dtype=np.int64)], axis=1))

    @staticmethod
    def stack(parts: "list[Candidates]") -> "Candidates":
        """Concatenate query batches (rows) into one set, padding to the widest."""
        if not parts:
            return Candidates.empty(0)
        w = max(p.width for p in parts)
        ps = [p.padded(w) for p in parts]
        return Candidates(np.concatenate([p.lo for p in ps]), np.concatenate([p.hi for p in ps]),
                          np.concatenate([p.ids for p in ps]))


@nb.njit(nogil=True, cache=True)
def kth_key(hi, ids, n, k):
    """k-th smallest ``(hi, id)`` key among the first ``n`` entries; ``(inf, INT64_MAX)`` if n < k.

    hi: float64 (>= n,), ids: int64 (>= n,). Ids are unique within a query.
    """
    if n < k or k <= 0:
        return np.inf, INT64_MAX
    tmp = hi[:n].copy()
    h = np.partition(tmp, k - 1)[k - 1]
    less = 0
    eq = 0
    for e in range(n):
        if hi[e] < h:
            less += 1
        elif hi[e] == h:
            eq += 1
    eq_ids = np.empty(eq, dtype=np.int64)
    c = 0
    for e in range(n):
        if hi[e] == h:
            eq_ids[c] = ids[e]
            c += 1
    r = k - less
    i = np.partition(eq_ids, r - 1)[r - 1]
    return h, i


@nb.njit(nogil=True, cache=True)
def keep(lo, idx, h, i):
    """True iff ``(lo, idx) <= (h, i)`` lexicographically: the entry is not yet certainly beaten."""
    return lo < h or (lo == h and idx <= i)


@nb.njit(nogil=True, cache=True)
def compact_row(lo, hi, ids, n, k, h, i):
    """Prune the first ``n`` entries of one row in place with the merge rule, tightening the bound
    ``(h, i)`` with the row's own k-th ``(hi, id)`` key. Returns ``(new_n, h, i)``."""
    h2, i2 = kth_key(hi, ids, n, k)
    if h2 < h or (h2 == h and i2 < i):
        h = h2
        i = i2
    c = 0
    for e in range(n):
        if keep(lo[e], ids[e], h, i):
            lo[c] = lo[e]
            hi[c] = hi[e]
            ids[c] = ids[e]
            c += 1
    for e in range(c, n):
        lo[e] = np.inf
        hi[e] = np.inf
        ids[e] = -1
    return c, h, i


@nb.njit(nogil=True, cache=True)
def _collect(hi_x, id_x, q, his, idx, n):
    """Append row ``q``'s used slots' ``(hi, id)`` to ``his``/``idx`` from position ``n``; returns the new n."""
    for e in range(id_x.shape[1]):
        if id_x[q, e] >= 0:
            his[n] = hi_x[q, e]
            idx[n] = id_x[q, e]
            n += 1
    return n


@nb.njit(nogil=True, cache=True)
def _keep_into(lo_x, hi_x, id_x, q, h, i, out_lo, out_hi, out_id, c):
    """Copy row ``q``'s entries that survive the bound ``(h, i)`` to ``out_*[q]`` from slot ``c``."""
    for e in range(id_x.shape[1]):
        if id_x[q, e] >= 0 and keep(lo_x[q, e], id_x[q, e], h, i):
            out_lo[q, c] = lo_x[q, e]
            out_hi[q, c] = hi_x[q, e]
            out_id[q, c] = id_x[q, e]
            c += 1
    return c


@nb.njit(nogil=True, cache=True)
def _count_into(lo_x, id_x, q, h, i, c):
    """``c`` plus the number of row ``q``'s entries that survive the bound ``(h, i)``."""
    for e in range(id_x.shape[1]):
        if id_x[q, e] >= 0 and keep(lo_x[q, e], id_x[q, e], h, i):
            c += 1
    return c


@nb.njit(parallel=True, nogil=True, cache=True)
def _merge_bounds(hi_a, id_a, lo_a, hi_b, id_b, lo_b, k, out_h, out_i, counts):
    """Pass 1 of :func:`merge`: per query the union's k-th ``(hi, id)`` key and the survivor count."""
    for q in nb.prange(hi_a.shape[0]):
        his = np.empty(hi_a.shape[1] + hi_b.shape[1])
        idx = np.empty(hi_a.shape[1] + hi_b.shape[1], dtype=np.int64)
        n = _collect(hi_b, id_b, q, his, idx, _collect(hi_a, id_a, q, his, idx, 0))
        h, i = kth_key(his, idx, n, k)
        out_h[q] = h
        out_i[q] = i
        counts[q] = _count_into(lo_b, id_b, q, h, i, _count_into(lo_a, id_a, q, h, i, 0))


@nb.njit(nogil=True, cache=True)
def _empty_tail(lo, hi, ids, q, start):
    """Mark row ``q``'s slots from ``start`` on as empty."""
    for e in range(start, ids.shape[1]):
        lo[q, e] = np.inf
        hi[q, e] = np.inf
        ids[q, e] = -1


@nb.njit(parallel=True, nogil=True, cache=True)
def _merge_fill(lo_a, hi_a, id_a, lo_b, hi_b, id_b, h, i, out_lo, out_hi, out_id):
    """Pass 2 of :func:`merge`: copy the survivors (a's, then b's) and mark the remaining slots empty."""
    for q in nb.prange(lo_a.shape[0]):
        c = _keep_into(lo_a, hi_a, id_a, q, h[q], i[q], out_lo, out_hi, out_id, 0)
        c = _keep_into(lo_b, hi_b, id_b, q, h[q], i[q], out_lo, out_hi, out_id, c)
        _empty_tail(out_lo, out_hi, out_id, q, c)


@nb.njit(parallel=True, nogil=True, cache=True)
def _mark_tails(lo, hi, ids, counts):
    for q in nb.prange(ids.shape[0]):
        _empty_tail(lo, hi, ids, q, counts[q])


def filled_prefix(buf: Candidates, counts: np.ndarray) -> Candidates:
    """The first ``counts[q]`` entries of each row of a selection buffer whose other slots may hold
    anything (it is allocated uninitialised and reused): a view trimmed to the widest row, with the
    slots past each row's count marked empty."""
    w = int(counts.max()) if counts.size else 0
    out = Candidates(buf.lo[:, :w], buf.hi[:, :w], buf.ids[:, :w])
    if w:
        _mark_tails(out.lo, out.hi, out.ids, np.ascontiguousarray(counts, dtype=np.int64))
    return out


def merge(a: Candidates, b: Candidates, k: int, out: "Candidates | None" = None) -> Candidates:
    """Union of two candidate sets for the same queries, pruned by the rule above (see module doc).

    Associative and commutative as a set; the output lists a's survivors, then b's. Inputs are not
    modified. Both must have the same number of query rows and disjoint ids per row.

    out: optional buffer (C-contiguous, as many rows, sharing no memory with ``a`` or ``b``) that the
    result is written into when it is wide enough, as a view of its first columns: a caller merging once
    per block reuses two buffers instead of paying fresh pages for a new result each time. When it is
    too narrow the result is a view of a fresh buffer a quarter wider than needed (:func:`base_buffer`
    gives that buffer back for the next call).
    """
    if a.n_queries != b.n_queries:
        raise ValueError(f"merge needs the same queries on both sides, got {a.n_queries} and {b.n_queries} rows")
    nq = a.n_queries
    if not (nq and a.width + b.width):
        return Candidates.empty(nq, 0)
    # two passes (bound and count, then fill) so that the output is allocated at its final width once:
    # at k = 1000 and 10k queries the union is over a GB, the survivors a fraction of it
    h = np.empty(nq)
    i = np.empty(nq, dtype=np.int64)
    counts = np.empty(nq, dtype=np.int64)
    _merge_bounds(a.hi, a.ids, a.lo, b.hi, b.ids, b.lo, int(k), h, i, counts)
    w = int(counts.max())
    if out is not None and out.n_queries == nq and out.width >= w and out.ids.flags.c_contiguous:
        out = Candidates(out.lo[:, :w], out.hi[:, :w], out.ids[:, :w])
    else:  # a caller that reuses buffers gets a quarter of slack, so that the next merges fit
        wa = w + w // 4 if out is not None else w
        out = Candidates(np.empty((nq, wa)), np.empty((nq, wa)), np.empty((nq, wa), dtype=np.int64))
        out = Candidates(out.lo[:, :w], out.hi[:, :w], out.ids[:, :w]) if wa > w else out
    _merge_fill(a.lo, a.hi, a.ids, b.lo, b.hi, b.ids, h, i, out.lo, out.hi, out.ids)
    return out


def base_buffer(c: Candidates) -> Candidates:
    """The whole buffer a :func:`merge` result is a column view of (itself when it is not a view)."""
    if c.ids.base is not None and c.lo.base is not None and c.hi.base is not None and c.ids.base.ndim == 2:
        return Candidates(c.lo.base, c.hi.base, c.ids.base)
    return c


@nb.njit(parallel=True, nogil=True, cache=True)
def _kth_keys_kernel(hi, ids, k, out_h, out_i):
    for q in nb.prange(hi.shape[0]):
        n = 0
        for e in range(ids.shape[1]):
            if ids[q, e] >= 0:
                n += 1
        out_h[q], out_i[q] = kth_key(hi[q], ids[q], n, k)


def kth_keys(c: Candidates, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the k-th smallest ``(hi, id)`` key: float64 (nq,), int64 (nq,); (inf, max) when < k."""
    h = np.full(c.n_queries, np.inf)
    i = np.full(c.n_queries, INT64_MAX, dtype=np.int64)
    if c.n_queries and c.width:
        _kth_keys_kernel(c.hi, c.ids, int(k), h, i)
    return h, i


@nb.njit(parallel=True, nogil=True, cache=True)
def _exact_topk_kernel(dists, ids, k, out_d, out_i):
    for q in nb.prange(ids.shape[0]):
        n = 0
        for e in range(ids.shape[1]):
            n += ids[q, e] >= 0
        d = np.empty(n)
        i = np.empty(n, dtype=np.int64)
        c = 0
        for e in range(ids.shape[1]):
            if ids[q, e] >= 0:
                d[c] = dists[q, e]
                i[c] = ids[q, e]
                c += 1
        # (distance, id) order: sort by id, then a stable sort by distance
        o1 = np.argsort(i, kind="mergesort")
        d1 = d[o1]
        o2 = np.argsort(d1, kind="mergesort")
        m = min(k, n)
        for r in range(m):
            out_d[q, r] = d1[o2[r]]
            out_i[q, r] = i[o1[o2[r]]]
        for r in range(m, k):
            out_d[q, r] = np.inf
            out_i[q, r] = -1


def exact_topk(dists: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort exact candidates by ``(distance, id)`` and keep ``k`` per row (ids -1 are empty slots; rows
    with fewer than ``k`` entries end in distance inf and id -1).

    dists: float64 (nq, W); ids: int64 (nq, W). Returns float64 (nq, k), int64 (nq, k). One numba pass per
    row, in parallel (a numpy lexsort over the whole array took 1.8 s at 10k queries x 1,100 here).
    """
    dists = np.asarray(dists, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    k = int(k)
    out_d = np.empty((ids.shape[0], k))
    out_i = np.empty((ids.shape[0], k), dtype=np.int64)
    if ids.shape[0]:
        _exact_topk_kernel(dists, ids, k, out_d, out_i)
    return out_d, out_i
