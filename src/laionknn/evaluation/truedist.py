"""True distances of returned ids, for the tie-aware recall.

For query i and database rows ``ids[i, :]`` the distance is computed in float64 from the stored
vectors: ``1 - <q/|q|, x/|x|>`` (cosine), ``1 - <q, x>`` (dot), ``|q - x|^2`` (l2) or
``popcount(q xor x)`` (hamming). Only the rows that are needed are read: sorted unique ids, contiguous
runs read as one slice, or the whole file streamed in blocks when more than a sixteenth of it is needed.
"""

from __future__ import annotations

import numpy as np

from laionknn.errors import FormatError
from laionknn.progress import progress_bar
from laionknn.types import Metric

_GAP = 64  # rows: ids closer than this are read in one slice


def gather_rows(database, rows: np.ndarray) -> np.ndarray:
    """Database rows ``rows`` (sorted unique int64, 0-based) as an array (len(rows), dim), stored dtype.

    database: ndarray or :class:`~laionknn.io.VectorFile` (anything with ``read(start, stop)``).
    """
    rows = np.asarray(rows, dtype=np.int64)
    n = len(database)
    if rows.size and (rows[0] < 0 or rows[-1] >= n):
        raise FormatError(f"id {int(rows[-1] if rows[-1] >= n else rows[0])} is outside the database's {n} rows; "
                          f"is --database the file the result was computed on?")
    if not hasattr(database, "read"):
        return np.asarray(database)[rows]
    out = None
    if rows.size * 16 > n:
        for start, block in database.blocks(memory="256M"):
            sel = (rows >= start) & (rows < start + len(block))
            if out is None:
                out = np.empty((rows.size,) + block.shape[1:], dtype=block.dtype)
            out[sel] = block[rows[sel] - start]
        return out if out is not None else np.empty((0, database.dim))
    breaks = np.flatnonzero(np.diff(rows) > _GAP) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [rows.size]])
    with progress_bar("reading database rows", rows.size) as bar:
        for a, b in zip(starts, stops):
            lo, hi = int(rows[a]), int(rows[b - 1]) + 1
            block = database.read(lo, hi)
            if out is None:
                out = np.empty((rows.size,) + block.shape[1:], dtype=block.dtype)
            out[a:b] = block[rows[a:b] - lo]
            bar.advance(b - a)
    return out if out is not None else np.empty((0, database.dim))


def pair_distances(queries: np.ndarray, vectors: np.ndarray, metric: "str | Metric") -> np.ndarray:
    """Distance of each query row i to each of ``vectors[i, j, :]``: float64 (n, m), lower is nearer.

    queries: (n, dim); vectors: (n, m, dim) (uint64 words for hamming).
    """
    metric = Metric.parse(metric)
    if metric is Metric.HAMMING:
        x = np.asarray(queries).astype(np.uint64)[:, None, :] ^ np.asarray(vectors).astype(np.uint64)
        return np.bitwise_count(x).sum(axis=-1).astype(np.float64)
    q = np.asarray(queries, dtype=np.float64)
    v = np.asarray(vectors, dtype=np.float64)
    if metric is Metric.L2:
        diff = v - q[:, None, :]
        return np.einsum("nmd,nmd->nm", diff, diff)
    if metric is Metric.COSINE:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        v = v / np.linalg.norm(v, axis=2, keepdims=True)
    return 1.0 - np.einsum("nd,nmd->nm", q, v)


def tie_distances(database, queries: np.ndarray, ids: np.ndarray, kth_ids: np.ndarray, metric="cosine",
                  *, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """True distances of ``ids`` (int (n, k), 0-based) and of ``kth_ids`` (int (n,), the gold k-th
    neighbours) to their queries (n, dim). Returns ``(float64 (n, k), float64 (n,))``."""
    ids = np.asarray(ids, dtype=np.int64)
    kth_ids = np.asarray(kth_ids, dtype=np.int64)
    queries = np.asarray(queries)
    if queries.shape[0] != ids.shape[0]:
        raise FormatError(f"the query file has {queries.shape[0]} rows but the result has {ids.shape[0]} queries; "
                          f"pass the queries the result was computed for")
    both = np.concatenate([ids, kth_ids[:, None]], axis=1)
    uniq, inverse = np.unique(both, return_inverse=True)
    rows = gather_rows(database, uniq)
    if rows.ndim != 2 or rows.shape[1] != queries.shape[1]:
        raise FormatError(f"database vectors have dimension {rows.shape[1:]} but the queries {queries.shape[1]}; "
                          f"tie-aware distances need the clip768 database and queries of the gold standard")
    inverse = inverse.reshape(both.shape)
    out = np.empty(both.shape, dtype=np.float64)
    for lo in range(0, both.shape[0], batch):
        hi = min(lo + batch, both.shape[0])
        out[lo:hi] = pair_distances(queries[lo:hi], rows[inverse[lo:hi]], metric)
    return out[:, :-1], out[:, -1]
