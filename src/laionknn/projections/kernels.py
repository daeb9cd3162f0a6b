"""Numba brute-force kernels for projected data: popcount Hamming and squared L2, with exact top-k.

Vocabulary (faiss style, used inside this module only): ``xb`` database rows, ``xq`` query rows,
``D`` distances, ``I`` ids. Rows are vectors; ids are 0-based int64 row numbers of ``xb``.

Every kernel is compiled with an explicit signature, ``nogil=True`` and ``cache=True``; the top-k
drivers run queries in parallel with ``prange`` (all cores numba is allowed to use). Ties are broken by
the lower id, like :func:`laionknn.exact.knn`, so results are identical to that engine's.

- :func:`hamming_distances` / :func:`hamming_knn`: ``D[i, j] = sum_w popcount(xq[i, w] ^ xb[j, w])``
  over uint64 words (bit count, 0..64·words).
- :func:`l2_distances` / :func:`l2_knn`: ``D[i, j] = sum_c (float64(xq[i, c]) - float64(xb[j, c]))**2``,
  accumulated in float64 by direct differences (no ``|q|² - 2q·x + |x|²`` cancellation), returned as
  float32 (rounded once at the end).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from laionknn.errors import UsageError
from laionknn.types import KnnResult

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(numba.uint64(numba.uint64), nogil=True, cache=True, inline="always")
def popcount64(x):
    """Number of set bits of a uint64 (SWAR; LLVM turns it into ``popcnt`` where available)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@njit(numba.int32[:, :](numba.uint64[:, ::1], numba.uint64[:, ::1]), nogil=True, cache=True, parallel=True)
def hamming_distances(xq, xb):
    """``D[i, j] = sum_w popcount(xq[i, w] ^ xb[j, w])``: int32 (nq, nb) Hamming bit counts."""
    nq, w = xq.shape
    nb = xb.shape[0]
    out = np.empty((nq, nb), dtype=np.int32)
    for i in prange(nq):
        for j in range(nb):
            s = np.uint64(0)
            for t in range(w):
                s += popcount64(xq[i, t] ^ xb[j, t])
            out[i, j] = np.int32(s)
    return out


@njit(numba.float32[:, :](numba.float32[:, ::1], numba.float32[:, ::1]), nogil=True, cache=True, parallel=True)
def l2_distances(xq, xb):
    """``D[i, j] = sum_c (xq[i, c] - xb[j, c])**2`` accumulated in float64: float32 (nq, nb)."""
    nq, d = xq.shape
    nb = xb.shape[0]
    out = np.empty((nq, nb), dtype=np.float32)
    for i in prange(nq):
        for j in range(nb):
            s = 0.0
            for c in range(d):
                t = np.float64(xq[i, c]) - np.float64(xb[j, c])
                s += t * t
            out[i, j] = np.float32(s)
    return out


@njit(numba.types.UniTuple(numba.int64, 2)(numba.int64[::1], numba.int32[::1], numba.int64, numba.int64[::1],
                                            numba.int64), nogil=True, cache=True)
def _compact_candidates(cid, cd, n, counts, k):
    """Shrink one query's candidate list (ids ascending, distances ``cd``; ``counts[t]`` = how many
    candidates have distance t) to exactly its current top k: every candidate closer than the
    threshold t* (the distance at which the count reaches k) plus the first candidates at t* (lowest
    ids, which win ties). Returns ``(new length, t*)``: later rows, having larger ids, can enter only
    with a distance below t*."""
    acc = 0
    thr = 0
    while acc + counts[thr] < k:
        acc += counts[thr]
        thr += 1
    left = k - acc  # candidates at distance thr that still fit
    m = 0
    for c in range(n):
        d = cd[c]
        if d < thr or (d == thr and left > 0):
            if d == thr:
                left -= 1
            cid[m] = cid[c]
            cd[m] = d
            m += 1
    counts[thr] = k - acc
    counts[thr + 1:] = 0
    return m, thr


@njit(numba.void(numba.uint64[:, ::1], numba.uint64[:, ::1], numba.int64, numba.int64[:, ::1], numba.int32[:, ::1],
                 numba.int64), nogil=True, cache=True, parallel=True)
def _hamming_knn_kernel(xq, xb, k, I, D, tile):
    """Exact Hamming top-k in bounded memory. Queries go in groups of 16 (one group per thread), the
    database in tiles of ``tile`` rows that stay in cache while the group's 16 queries scan them. Each
    query keeps a candidate list (ids ascending) and a limit: a row enters only if its distance is
    below the limit; when the list is full it is compacted to its current top k (see
    :func:`_compact_candidates`), which lowers the limit. A counting selection over the final list keeps
    ids ascending within equal distances, i.e. ties go to the lower id."""
    nq, w = xq.shape
    nb = xb.shape[0]
    maxd = 64 * w
    group = 16
    cap = max(4 * k, 1024)
    ngroups = (nq + group - 1) // group
    for g in prange(ngroups):
        q0 = g * group
        q1 = min(nq, q0 + group)
        gq = q1 - q0
        cid = np.empty((gq, cap), dtype=np.int64)
        cd = np.empty((gq, cap), dtype=np.int32)
        ncand = np.zeros(gq, dtype=np.int64)
        limit = np.full(gq, maxd + 1, dtype=np.int64)
        counts = np.zeros((gq, maxd + 2), dtype=np.int64)
        for b0 in range(0, nb, tile):
            b1 = min(nb, b0 + tile)
            for i in range(gq):
                qi = q0 + i
                lim = limit[i]
                n = ncand[i]
                for j in range(b0, b1):
                    s = np.uint64(0)
                    for t in range(w):
                        s += popcount64(xq[qi, t] ^ xb[j, t])
                    d = np.int64(s)
                    if d < lim:
                        if n == cap:
                            n, thr = _compact_candidates(cid[i], cd[i], n, counts[i], k)
                            lim = thr  # the list now holds exactly k rows
                            if d >= lim:
                                continue
                        cid[i, n] = j
                        cd[i, n] = np.int32(d)
                        counts[i, d] += 1
                        n += 1
                ncand[i] = n
                limit[i] = lim
        for i in range(gq):
            # counting selection over the candidates (ids ascending): exactly the k nearest
            n, thr = _compact_candidates(cid[i], cd[i], ncand[i], counts[i], k)
            start = np.empty(thr + 2, dtype=np.int64)
            pos = 0
            for t in range(thr + 1):
                start[t] = pos
                pos += counts[i, t]
            for c in range(n):
                d = cd[i, c]
                p = start[d]
                I[q0 + i, p] = cid[i, c]
                D[q0 + i, p] = d
                start[d] = p + 1


@njit(numba.void(numba.float32[:, ::1], numba.float32[:, ::1], numba.int64, numba.int64[:, ::1], numba.float64[:, ::1],
                 numba.int64), nogil=True, cache=True, parallel=True)
def _l2_knn_kernel(xq, xb, k, I, D, tile):
    """Exact squared-L2 top-k with float64 accumulation and a sorted insertion list per query; an
    equal distance never displaces an earlier (lower) id."""
    nq, d = xq.shape
    nb = xb.shape[0]
    group = 32
    ngroups = (nq + group - 1) // group
    for g in prange(ngroups):
        q0 = g * group
        q1 = min(nq, q0 + group)
        xbt = np.empty((d, tile), dtype=np.float64)
        acc = np.empty(tile, dtype=np.float64)
        for i in range(q0, q1):
            for r in range(k):
                D[i, r] = np.inf
                I[i, r] = -1
        for b0 in range(0, nb, tile):
            b1 = min(nb, b0 + tile)
            m = b1 - b0
            # transposed float64 copy of the tile: the inner loop then runs over rows (SIMD-friendly)
            # while each row's sum keeps the column order 0..d-1
            for j in range(m):
                for c in range(d):
                    xbt[c, j] = xb[b0 + j, c]
            for i in range(q0, q1):
                acc[:m] = 0.0
                for c in range(d):
                    qc = np.float64(xq[i, c])
                    for j in range(m):
                        t = qc - xbt[c, j]
                        acc[j] += t * t
                worst = D[i, k - 1]
                for j in range(m):
                    s = acc[j]
                    if s < worst:
                        p = k - 1
                        while p > 0 and D[i, p - 1] > s:
                            D[i, p] = D[i, p - 1]
                            I[i, p] = I[i, p - 1]
                            p -= 1
                        D[i, p] = s
                        I[i, p] = b0 + j
                        worst = D[i, k - 1]


def _check_k(k: int, nb: int) -> None:
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    if k > nb:
        raise UsageError(f"k={k} is larger than the database ({nb} rows); ask for at most {nb}")


def _run_knn(kernel, xb, xq, k, tile, dtype, dist_dtype, what) -> KnnResult:
    xb = np.ascontiguousarray(xb, dtype=dtype)
    xq = np.ascontiguousarray(xq, dtype=dtype)
    if xb.ndim != 2 or xq.ndim != 2 or xb.shape[1] != xq.shape[1]:
        raise UsageError(f"{what} differ: database {xb.shape}, queries {xq.shape}; both need the same row width")
    _check_k(k, xb.shape[0])
    ids = np.empty((xq.shape[0], k), dtype=np.int64)
    dists = np.empty((xq.shape[0], k), dtype=dist_dtype)
    kernel(xq, xb, int(k), ids, dists, int(tile))
    return KnnResult(ids=ids, dists=dists.astype(np.float32))


def hamming_knn(xb: np.ndarray, xq: np.ndarray, k: int, *, tile: int = 4096) -> KnnResult:
    """Exact k nearest neighbours under Hamming distance of packed uint64 sketches.

    ``xb`` (nb, words) and ``xq`` (nq, words) uint64, one sketch per row. Returns 0-based int64 ids and
    float32 bit counts ascending, ties to the lower id. Uses all numba threads.
    """
    return _run_knn(_hamming_knn_kernel, xb, xq, k, tile, np.uint64, np.int32, "sketch widths")


def l2_knn(xb: np.ndarray, xq: np.ndarray, k: int, *, tile: int = 2048) -> KnnResult:
    """Exact k nearest neighbours under squared L2 (float64 accumulation) of float32 rows.

    ``xb`` (nb, d), ``xq`` (nq, d). Returns 0-based int64 ids and float32 squared distances ascending,
    ties (equal float64 distances) to the lower id. Uses all numba threads.
    """
    return _run_knn(_l2_knn_kernel, xb, xq, k, tile, np.float32, np.float64, "dimensions")
