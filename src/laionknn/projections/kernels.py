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


@njit(numba.void(numba.uint64[:, ::1], numba.uint64[:, ::1], numba.int64, numba.int64[:, ::1], numba.int32[:, ::1],
                 numba.int64), nogil=True, cache=True, parallel=True)
def _hamming_knn_kernel(xq, xb, k, I, D, tile):
    """Exact Hamming top-k: per query, all distances (tiled over xb for cache reuse across a group of
    queries), then a counting selection (distances are small integers) that keeps ids ascending within
    equal distances, i.e. ties go to the lower id."""
    nq, w = xq.shape
    nb = xb.shape[0]
    maxd = 64 * w
    group = 16
    ngroups = (nq + group - 1) // group
    for g in prange(ngroups):
        q0 = g * group
        q1 = min(nq, q0 + group)
        dist = np.empty((q1 - q0, nb), dtype=np.int32)
        for b0 in range(0, nb, tile):
            b1 = min(nb, b0 + tile)
            for i in range(q0, q1):
                for j in range(b0, b1):
                    s = np.uint64(0)
                    for t in range(w):
                        s += popcount64(xq[i, t] ^ xb[j, t])
                    dist[i - q0, j] = np.int32(s)
        counts = np.empty(maxd + 2, dtype=np.int64)
        for i in range(q0, q1):
            row = dist[i - q0]
            counts[:] = 0
            for j in range(nb):
                counts[row[j]] += 1
            # threshold t: the distance where the cumulative count reaches k
            acc = 0
            thr = 0
            for t in range(maxd + 1):
                if acc + counts[t] >= k:
                    thr = t
                    break
                acc += counts[t]
            take_at_thr = k - acc
            # start offsets of each distance value in the output row (counting sort, ids ascending)
            start = np.empty(thr + 1, dtype=np.int64)
            pos = 0
            for t in range(thr):
                start[t] = pos
                pos += counts[t]
            start[thr] = pos
            for j in range(nb):
                dj = row[j]
                if dj < thr:
                    p = start[dj]
                    I[i, p] = j
                    D[i, p] = dj
                    start[dj] = p + 1
                elif dj == thr and take_at_thr > 0:
                    p = start[dj]
                    I[i, p] = j
                    D[i, p] = dj
                    start[dj] = p + 1
                    take_at_thr -= 1


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
