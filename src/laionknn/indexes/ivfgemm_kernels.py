"""numba kernels of laionknn's own index (:mod:`laionknn.indexes.ivfgemm_index`).

Every kernel is ``nogil``: the index runs them from its own thread pool, one query range per thread,
and keeps numpy's BLAS at one thread meanwhile. Scores are similarities (higher is better).

* :func:`scan_list` folds the scores of one inverted list (a matrix product done by the caller) into
  per-query running top-C heaps;
* :func:`rerank_f16` re-scores each query's candidates exactly on float16 originals (stored as
  their uint16 bit patterns: numba has no float16 type) and keeps the top k;
* :func:`heaps_to_topk` turns the heaps into sorted answers when there is no re-rank;
* :func:`accumulate` sums rows per cluster for k-means;
* :func:`probe_lists` picks each query's ``nprobe`` nearest lists (sorted, nearest first) and the exact
  part of their estimates, and :func:`quantize_weights` turns the query head weights into int8 codes
  (both for every kernel: the search's set-up, run over query ranges on the index's threads).

These are the fallback path (``numba`` kernel of :mod:`laionknn.indexes.ivfgemm_native`); the compiled
kernels replace :func:`scan_list` and :func:`rerank_f16` where AVX-512 VNNI is available.
"""

from __future__ import annotations

import numba as nb
import numpy as np

#: 2**112: a float16 bit pattern shifted into a float32's exponent/mantissa is the value / 2**112
#: (subnormal float16 values included); the query is scaled by it instead of each stored value
F16_SCALE = np.float32(2.0 ** 112)


@nb.njit(nogil=True, cache=True)
def _sift_in(vals, ids, s, p):
    """Replace the root of the min-heap (``vals[0]`` the smallest) by ``(s, p)`` and restore the heap."""
    size = vals.shape[0]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        right = child + 1
        if right < size and vals[right] < vals[child]:
            child = right
        if vals[child] >= s:
            break
        vals[i] = vals[child]
        ids[i] = ids[child]
        i = child
    vals[i] = s
    ids[i] = p


#: scores are screened this many at a time: a chunk whose maximum cannot enter the heap is skipped
#: with one vectorised maximum instead of a compare per score
SCAN_CHUNK = 16


@nb.njit(nogil=True, cache=True, fastmath={"reassoc", "nsz"})
def _chunk_max(row, j0, j1):
    m = row[j0]
    for j in range(j0 + 1, j1):
        m = max(m, row[j])
    return m


@nb.njit(nogil=True, cache=True)
def scan_list(scores, qrows, base, first, heap_v, heap_i):
    """Fold one list's scores into the heaps of its queries.

    scores: (m, rows) float32, row ``a`` the head scores of query ``qrows[a]`` against the list's rows;
    base: (m,) the exact part of each query's score shared by the whole list (query . centroid);
    first: position of the list's first row in the index; heap_v/heap_i: (nq, C) min-heaps of
    estimated similarity and row position, one per query (``heap_v[q, 0]`` the C-th best so far).
    """
    m, rows = scores.shape
    for a in range(m):
        q = qrows[a]
        hv = heap_v[q]
        hi = heap_i[q]
        b = base[a]
        bar = hv[0] - b
        row = scores[a]
        for j0 in range(0, rows, SCAN_CHUNK):
            j1 = min(j0 + SCAN_CHUNK, rows)
            if _chunk_max(row, j0, j1) <= bar:
                continue
            for j in range(j0, j1):
                s = row[j]
                if s > bar:
                    _sift_in(hv, hi, s + b, first + j)
                    bar = hv[0] - b


@nb.njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz"})
def _dot(x, y):
    s = np.float32(0.0)
    for t in range(x.shape[0]):
        s += x[t] * y[t]
    return s


@nb.njit(nogil=True, cache=True)
def _f16_bits(row, buf):
    """The float16 bit patterns of ``row`` (uint16) as float32 bit patterns of value / 2**112."""
    for t in range(row.shape[0]):
        h = np.uint32(row[t])
        buf[t] = ((h & np.uint32(0x7FFF)) << np.uint32(13)) | ((h & np.uint32(0x8000)) << np.uint32(16))


#: the re-rank touches one uint16 per cache line of the candidate this many ahead (the loads are
#: independent of the current dot product, so the row arrives while the current one is scored)
TOUCH_AHEAD = 2


@nb.njit(nogil=True, cache=True)
def rerank_f16(orig, inv_norm, qscaled, cand, lo, hi, k, out_pos, out_sim):
    """Exact similarities of each query's candidates on the float16 originals, top k kept.

    orig: (n, dim) uint16 bit patterns of the float16 rows, in index order; inv_norm: (n,) float32
    factor per row (1 / norm for cosine, ones for dot); qscaled: (nq, dim) float32 queries times
    :data:`F16_SCALE`; cand: (nq, C) candidate positions (-1: none); queries ``lo..hi-1`` are done.
    out_pos/out_sim: (nq, k), written sorted by similarity, best first (-1 / -inf where missing).
    Candidates are visited in position order (rows of one list are adjacent in memory).
    """
    dim = orig.shape[1]
    buf = np.empty(dim, dtype=np.uint32)
    fbuf = buf.view(np.float32)
    hv = np.empty(k, dtype=np.float32)
    hp = np.empty(k, dtype=np.int64)
    touch = np.uint16(0)
    for q in range(lo, hi):
        hv[:] = -np.inf
        hp[:] = -1
        qv = qscaled[q]
        mine = np.sort(cand[q])
        nc = mine.shape[0]
        for c in range(nc):
            p = mine[c]
            if p < 0:
                continue
            if c + TOUCH_AHEAD < nc:
                nxt = orig[mine[c + TOUCH_AHEAD]]
                for t in range(0, dim, 32):
                    touch ^= nxt[t]
            _f16_bits(orig[p], buf)
            s = _dot(qv, fbuf) * inv_norm[p]
            if s > hv[0]:
                _sift_in(hv, hp, s, p)
        _drain(hv, hp, out_pos[q], out_sim[q])
    return touch


@nb.njit(nogil=True, cache=True)
def _drain(hv, hp, pos, sim):
    """Write heap ``(hv, hp)`` into ``pos``/``sim`` best first."""
    order = np.argsort(-hv)
    for j in range(order.shape[0]):
        pos[j] = hp[order[j]]
        sim[j] = hv[order[j]]


@nb.njit(nogil=True, cache=True)
def heaps_to_topk(heap_v, heap_i, lo, hi, out_pos, out_sim):
    """Queries ``lo..hi-1``: heaps of size k -> sorted answers (best first)."""
    for q in range(lo, hi):
        _drain(heap_v[q], heap_i[q], out_pos[q], out_sim[q])


@nb.njit(nogil=True, cache=True)
def accumulate(x, labels, sums, counts):
    """``sums[c] += x[i]`` and ``counts[c] += 1`` for every row ``i`` of cluster ``c = labels[i]``."""
    for i in range(x.shape[0]):
        c = labels[i]
        counts[c] += 1
        for t in range(x.shape[1]):
            sums[c, t] += x[i, t]


@nb.njit(nogil=True, cache=True)
def probe_lists(both, nlist, half_sq, qconst, nprobe, lo, hi, probes, base):
    """For queries [lo, hi): the ``nprobe`` lists with the largest ``q.c - |c|^2/2`` (the L2-nearest
    centroids of a unit query, as rows were assigned), nearest first, ties to the lower list, into
    ``probes[q]``; ``base[q, j] = q.c + qconst[q]`` of each (the exact part of the estimate).
    ``both[q, :nlist]`` holds q.c. One sorted insertion buffer per query: nprobe is small."""
    vals = np.empty(nprobe, dtype=np.float32)
    ids = np.empty(nprobe, dtype=np.int64)
    for q in range(lo, hi):
        cnt = 0
        for lst in range(nlist):
            v = both[q, lst] - half_sq[lst]
            if cnt == nprobe:
                if not v > vals[nprobe - 1]:
                    continue
                j = nprobe - 1
            else:
                j = cnt
                cnt += 1
            while j > 0 and vals[j - 1] < v:
                vals[j] = vals[j - 1]
                ids[j] = ids[j - 1]
                j -= 1
            vals[j] = v
            ids[j] = lst
        for j in range(nprobe):
            probes[q, j] = ids[j]
            base[q, j] = both[q, ids[j]] + qconst[q]


@nb.njit(nogil=True, cache=True)
def quantize_weights(qh, step, lo_vals, lo, hi, qcodes, qscale, qconst):
    """For queries [lo, hi): the head weights ``w = qh * step`` (float32) as int8 codes with one scale
    per query (``scale = max|w| / 127``, 1 where w is zero; ``code = clip(rint(w / scale), -127, 127)``,
    all in float32) and ``qconst = qh . lo``. ``qcodes`` is zero beyond the head."""
    head = qh.shape[1]
    w = np.empty(head, dtype=np.float32)
    for q in range(lo, hi):
        m = np.float32(0.0)
        c = 0.0
        for t in range(head):
            w[t] = qh[q, t] * step[t]
            m = max(m, abs(w[t]))
            c += np.float64(qh[q, t]) * np.float64(lo_vals[t])
        sc = m / np.float32(127.0)
        if sc == 0:
            sc = np.float32(1.0)
        qscale[q] = sc
        qconst[q] = np.float32(c)
        for t in range(head):
            qcodes[q, t] = np.int8(min(max(np.rint(w[t] / sc), -127.0), 127.0))
        for t in range(head, qcodes.shape[1]):
            qcodes[q, t] = 0
