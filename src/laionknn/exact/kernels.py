"""Numba kernels of the exact engine (pynndescent style: nogil, cache, formula in the docstring).

Vocabulary inside kernels (faiss style): ``xq`` queries (rows), ``xb`` a database block (rows), ``S``
the float32 score matrix ``xq @ xb.T``. Every kernel is tested against a numpy oracle in
tests/test_exact_kernels.py.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.extending import intrinsic

from laionknn.exact.merge import compact_row, keep


# columns per chunk of the selection kernel's skip test (one float32 max per chunk): 64 rather than 256
# skips more chunks once the bound is tight; cut the selection time by 16-26 % at k = 10...1000
# (300K x 2000 queries, docs/BENCHMARKS.md)
_CHUNK = 64
assert _CHUNK == 64  # select_scores's masks are one uint64 per chunk, and it reads two 32-column maxima


@nb.njit(parallel=True, nogil=True, cache=True)
def f16_to_f32(src, lut, out):
    """Exact float16 -> float32 conversion through a 65536-entry table: ``out[r, t] = lut[src[r, t]]``.

    src: uint16 view (n, d) of float16 data; lut: float32 (65536,) built by numpy; out: float32 (n, d).
    """
    for r in nb.prange(src.shape[0]):
        for t in range(src.shape[1]):
            out[r, t] = lut[src[r, t]]


F16_LUT = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def to_float32(block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A C-contiguous float32 version of a block (float16 converted exactly, in parallel); a
    C-contiguous float32 block is returned as it is.

    out: optional float32 C-contiguous buffer of at least ``block.shape[0]`` rows and the same width,
    reused across blocks (a fresh multi-hundred-MB array per block pays its page faults every time);
    the result is then a view of its first rows.
    """
    if block.dtype == np.float32 and block.flags.c_contiguous:
        return block
    if out is not None and out.dtype == np.float32 and out.ndim == block.ndim == 2 and out.flags.c_contiguous \
            and out.shape[1] == block.shape[1] and out.shape[0] >= block.shape[0]:
        dest = out[:block.shape[0]]
    else:
        dest = np.empty(block.shape, dtype=np.float32)
    if block.size:
        if block.dtype == np.float16:
            f16_to_f32(np.ascontiguousarray(block).view(np.uint16), F16_LUT, dest)
        else:
            dest[...] = block
    return dest


@intrinsic
def _popcount64(typingctx, x):
    """popcount of a uint64 (LLVM ``ctpop``; one POPCNT instruction on x86-64)."""
    sig = nb.types.uint64(nb.types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _cttz64(typingctx, x):
    """index of the lowest set bit of a non-zero uint64 (LLVM ``cttz``; one TZCNT instruction)."""
    sig = nb.types.uint64(nb.types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.cttz", [ir.IntType(64), ir.IntType(1)])
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])

    return sig, codegen


@nb.njit(nogil=True, cache=True)
def _push(out_lo, out_hi, out_id, cnt, lo, hi, idx, k, h, i):
    """Append one entry to a row buffer, pruning the buffer with the merge rule when full.

    Returns ``(cnt, h, i, ok)``; ``ok`` is False when pruning freed less than a quarter of the buffer
    (too many overlapping intervals: the caller retries the row with a wider buffer).
    """
    w = out_lo.shape[0]
    if cnt == w:
        cnt, h, i = compact_row(out_lo, out_hi, out_id, cnt, k, h, i)
        if cnt > w - w // 4 or cnt == w:
            return cnt, h, i, False
        if not keep(lo, idx, h, i):
            return cnt, h, i, True
    out_lo[cnt] = lo
    out_hi[cnt] = hi
    out_id[cnt] = idx
    return cnt + 1, h, i, True


@nb.njit(nogil=True, cache=True, fastmath=True)
def _chunk_max(S, q, j0, j1):
    """max of ``S[q, j0:j1]`` in float32 (vectorised; the data hold no NaN)."""
    m = np.float32(-np.inf)
    for j in range(j0, j1):
        m = max(m, S[q, j])
    return m


@nb.njit(nogil=True, cache=True, inline="always")
def _lo_mask_full(S, q, j0, a, b, w, h_col, gq, cq, hh, tmp):
    """For the ``_CHUNK`` columns from ``j0``: ``tmp[e]`` = the lower bound of column ``j0 + e`` (see
    :func:`select_scores`), and the mask with bit ``e`` set iff ``tmp[e] <= hh``."""
    for e in range(_CHUNK):
        j = j0 + e
        tmp[e] = -(np.float64(S[q, j]) * a[j] - b[j]) - (gq * w[j] + h_col[j] + cq)
    bits = np.uint64(0)
    for e in range(_CHUNK):
        bits |= np.uint64(tmp[e] <= hh) << np.uint64(e)
    return bits


@nb.njit(nogil=True, cache=True, inline="always")
def _lo_mask_part(S, q, j0, j1, a, b, w, h_col, gq, cq, hh, tmp):
    """:func:`_lo_mask_full` for columns ``[j0, j1)``, ``j1 - j0 <= _CHUNK`` (bit ``e`` is column ``j0 + e``)."""
    bits = np.uint64(0)
    for j in range(j0, j1):
        lo = -(np.float64(S[q, j]) * a[j] - b[j]) - (gq * w[j] + h_col[j] + cq)
        tmp[j - j0] = lo
        bits |= np.uint64(lo <= hh) << np.uint64(j - j0)
    return bits


@nb.njit(nogil=True, cache=True)
def chunk_bounds(a, b, w, h_col, chunk):
    """Per chunk of ``chunk`` columns: ``(max a, min b, max w, max h)`` for the cheap chunk test.

    With ``a >= 0``: ``lo_j = -s_j a_j + b_j - g w_j - h_j - c >= -max(s, 0) max(a) + min(b) - g max(w)
    - max(h) - c``, so a chunk whose bound exceeds the running threshold holds no candidate.
    """
    n = a.shape[0]
    m = (n + chunk - 1) // chunk
    out = np.empty((m, 4))
    for t in range(m):
        j0 = t * chunk
        j1 = min(n, j0 + chunk)
        out[t, 0] = a[j0:j1].max()
        out[t, 1] = b[j0:j1].min()
        out[t, 2] = w[j0:j1].max()
        out[t, 3] = h_col[j0:j1].max()
    return out


@nb.njit(parallel=True, nogil=True, cache=True)
def select_scores(S, a, b, w, h_col, bounds, g, c_row, thr_h, thr_i, id0, k, out_lo, out_hi, out_id, counts, pos,
                  rows, cmax):
    """Certified candidate selection from a float32 score tile, appending to per-query buffers.

    For query ``q`` and tile row ``j`` (global id ``id0 + j``), with ``s = S[q, j]`` the float32 dot
    product: ``key = s * a[j] - b[j]`` estimates the true key to within
    ``err = g[q] * w[j] + h_col[j] + c_row[q]``; the distance interval is ``[-key - err, -key + err]``.
    An entry is appended to ``out_*[q]`` (after ``counts[q]`` existing ones) unless ``k`` entries are
    certainly better (see :mod:`laionknn.exact.merge`); ``(thr_h[q], thr_i[q])`` carries that bound in
    and out. Only queries ``rows`` are processed, each from column ``pos[q]``; ``pos[q]`` ends at the
    tile width, or at the first column not appended when the buffer could not be pruned enough (the
    caller widens the buffers and calls again for those rows). ``bounds`` = :func:`chunk_bounds` of the
    columns skips whole chunks with one float32 max. ``cmax`` (float32 (nq, ceil(nbk / 32)), or shape
    (0, 0)): each row's maximum over every 32 columns of ``S``, computed by the GEMM kernel; the chunk's
    maximum is then taken from it (the maximum over a whole chunk is at least the one over its columns
    from ``pos[q]`` on, so a chunk is skipped only when the tile's own maximum would skip it too).
    """
    nbk = S.shape[1]
    width = out_lo.shape[1]
    for r in nb.prange(rows.shape[0]):
        tmp_lo = np.empty(_CHUNK)
        q = rows[r]
        hh = thr_h[q]
        ii = thr_i[q]
        gq = g[q]
        cq = c_row[q]
        cnt = counts[q]
        ok = True
        stop = nbk
        j_first = pos[q]
        for t in range(j_first // _CHUNK, (nbk + _CHUNK - 1) // _CHUNK):
            j0 = max(j_first, t * _CHUNK)
            j1 = min(nbk, (t + 1) * _CHUNK)
            # one float32 max per chunk; most chunks hold no candidate once the bound is tight
            if cmax.shape[1] > 0:
                c0 = t * (_CHUNK // 32)  # _CHUNK = 64: two maxima per chunk
                m32 = cmax[q, c0]
                if c0 + 1 < cmax.shape[1]:
                    m32 = max(m32, cmax[q, c0 + 1])
                smax = max(np.float64(m32), 0.0)
            else:
                smax = max(np.float64(_chunk_max(S, q, j0, j1)), 0.0)
            if -smax * bounds[t, 0] + bounds[t, 1] - gq * bounds[t, 2] - bounds[t, 3] - cq > hh:
                continue
            # every column's lower bound, vectorised (the push's own expression), then one bit per column
            # that may pass; only the set bits are visited (no branch per column). Full chunks take the
            # constant-length loops (vectorised without a remainder)
            if j0 == t * _CHUNK and j1 - j0 == _CHUNK:
                bits = _lo_mask_full(S, q, j0, a, b, w, h_col, gq, cq, hh, tmp_lo)
            else:
                bits = _lo_mask_part(S, q, j0, j1, a, b, w, h_col, gq, cq, hh, tmp_lo)
            while bits:
                j = j0 + np.int64(_cttz64(bits))
                bits &= bits - np.uint64(1)
                key = np.float64(S[q, j]) * a[j] - b[j]
                err = gq * w[j] + h_col[j] + cq
                lo = -key - err
                idx = id0 + j
                if lo > hh or (lo == hh and idx > ii):
                    continue
                if cnt < width:  # the common case inline: a call with row views costs reference counting
                    out_lo[q, cnt] = lo
                    out_hi[q, cnt] = -key + err
                    out_id[q, cnt] = idx
                    cnt += 1
                    continue
                cnt, hh, ii, ok = _push(out_lo[q], out_hi[q], out_id[q], cnt, lo, -key + err, idx, k, hh, ii)
                if not ok:
                    stop = j
                    break
            if not ok:
                break
        counts[q] = cnt
        thr_h[q] = hh
        thr_i[q] = ii
        pos[q] = stop


@nb.njit(parallel=True, nogil=True, cache=True)
def select_hamming(xq, xb, thr_h, thr_i, id0, k, out_lo, out_hi, out_id, counts):
    """Exact top-k selection by Hamming distance ``d(q, j) = sum_w popcount(xq[q, w] ^ xb[j, w])``.

    xq: uint64 (nq, words); xb: uint64 (nb, words). Distances are exact integers stored as float64
    intervals with ``lo == hi``; ids are ``id0 + j``. Same contract as :func:`select_scores`.
    """
    nq = xq.shape[0]
    nbk, words = xb.shape
    for q in nb.prange(nq):
        hh = thr_h[q]
        ii = thr_i[q]
        cnt = 0
        ok = True
        for j in range(nbk):
            d = 0
            for t in range(words):
                d += _popcount64(xq[q, t] ^ xb[j, t])
            dist = np.float64(d)
            idx = id0 + j
            if dist > hh or (dist == hh and idx > ii):
                continue
            if cnt < out_lo.shape[1]:
                out_lo[q, cnt] = dist
                out_hi[q, cnt] = dist
                out_id[q, cnt] = idx
                cnt += 1
                continue
            cnt, hh, ii, ok = _push(out_lo[q], out_hi[q], out_id[q], cnt, dist, dist, idx, k, hh, ii)
            if not ok:
                break
        if ok and cnt > k:
            cnt, hh, ii = compact_row(out_lo[q], out_hi[q], out_id[q], cnt, k, hh, ii)
        counts[q] = cnt if ok else -1


# Reassociation lets LLVM vectorise the float64 sums (a fixed order per compiled kernel, so equal rows
# still give equal sums); contraction allows FMA, which only reduces rounding.
_FM = {"reassoc", "contract"}


@nb.njit(nogil=True, cache=True, fastmath=_FM)
def _dot8(x, y):
    """float64 dot product ``sum_t x_t y_t`` of two float vectors (products of float16/float32 values are
    exact in float64; the sum has relative error below ``d 2^-53``)."""
    s = 0.0
    for t in range(x.shape[0]):
        s += np.float64(x[t]) * np.float64(y[t])
    return s


@nb.njit(nogil=True, cache=True, fastmath=_FM)
def _sqdist8(x, y):
    """float64 squared Euclidean distance ``sum_t (x_t - y_t)^2``."""
    s = 0.0
    for t in range(x.shape[0]):
        d = np.float64(x[t]) - np.float64(y[t])
        s += d * d
    return s


@nb.njit(parallel=True, nogil=True, cache=True)
def norms64(x):
    """Euclidean norms ``sqrt(sum_t x[r, t]^2)`` of every row, accumulated in float64. x: (n, d) float."""
    out = np.empty(x.shape[0])
    for r in nb.prange(x.shape[0]):
        out[r] = np.sqrt(_dot8(x[r], x[r]))
    return out


@nb.njit(nogil=True, cache=True)
def pairs_by_row(ids, start, stop):
    """The used slots ``(q, e)`` of ``ids`` (int64 (nq, W), -1 = empty, others in ``[start, stop)``) grouped by
    database row: ``(rows, qs, slots)``, rows ascending, and within a row by query (the order of a stable
    argsort of the row-major entries, by a counting sort: O(pairs + rows) instead of a sort)."""
    n = stop - start
    off = np.zeros(n + 1, dtype=np.int64)
    for q in range(ids.shape[0]):
        for e in range(ids.shape[1]):
            r = ids[q, e]
            if r >= 0:
                if r < start or r >= stop:
                    raise ValueError("pairs_by_row: a candidate id lies outside the row range")
                off[r - start + 1] += 1
    for r in range(n):
        off[r + 1] += off[r]
    total = off[n]
    rows = np.empty(total, dtype=np.int64)
    qs = np.empty(total, dtype=np.int64)
    slots = np.empty(total, dtype=np.int64)
    for q in range(ids.shape[0]):
        for e in range(ids.shape[1]):
            r = ids[q, e]
            if r >= 0:
                p = off[r - start]
                off[r - start] = p + 1
                rows[p] = r
                qs[p] = q
                slots[p] = e
    return rows, qs, slots


@nb.njit(parallel=True, nogil=True, cache=True)
def rescore_into(xb, xq, rows, qs, slots, mode, qnorm, bnorm, out):
    """float64 distance of pairs ``(xq[qs[p]], xb[rows[p]])`` into ``out[qs[p], slots[p]]`` (distinct slots).

    mode 0 (dot): ``1 - <q, x>``; mode 1 (cosine): ``1 - <q, x> / (qnorm[q] * bnorm[row])``;
    mode 2 (l2): ``sum_t (q_t - x_t)^2``. Products of float16/float32 values are exact in float64;
    sums use :func:`_dot8`'s fixed order, so equal rows give equal distances.
    """
    for p in nb.prange(rows.shape[0]):
        r = rows[p]
        q = qs[p]
        if mode == 2:
            v = _sqdist8(xq[q], xb[r])
        elif mode == 1:
            v = 1.0 - _dot8(xq[q], xb[r]) / (qnorm[q] * bnorm[r])
        else:
            v = 1.0 - _dot8(xq[q], xb[r])
        out[q, slots[p]] = v
