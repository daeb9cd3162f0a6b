"""Exact k-NN (interim reference engine: float64 numpy, blocked). The fast certified engine replaces
the internals of :func:`knn` while keeping its signature."""

from __future__ import annotations

import numpy as np

from laionknn.errors import UsageError
from laionknn.types import KnnResult, Metric


def _popcount64(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).sum(axis=-1)


def knn(database, queries: np.ndarray, k: int, metric: "str | Metric" = Metric.COSINE, *,
        block_rows: int = 65536) -> KnnResult:
    """Exact k nearest neighbours of each query row in ``database`` (ndarray or VectorFile).

    Returns 0-based int64 ids and float32 ascending distances (``1 - dot`` for dot/cosine, squared L2,
    Hamming bit count); ties broken by the lower id.
    """
    metric = Metric.parse(metric)
    n = len(database)
    if k > n:
        raise UsageError(f"k={k} is larger than the database ({n} rows); ask for at most {n}")
    q = np.asarray(queries)
    if metric is Metric.HAMMING:
        q = q.astype(np.uint64)
    else:
        q = q.astype(np.float64)
        if metric is Metric.COSINE:
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
    best_d = np.full((q.shape[0], 0), np.inf)
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    for lo in range(0, n, block_rows):
        hi = min(n, lo + block_rows)
        xb = database.read(lo, hi) if hasattr(database, "read") else np.asarray(database[lo:hi])
        if metric is Metric.HAMMING:
            d = _popcount64(q[:, None, :] ^ xb.astype(np.uint64)[None, :, :]).astype(np.float64)
        else:
            xb = xb.astype(np.float64)
            if metric is Metric.COSINE:
                xb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
            if metric is Metric.L2:
                d = (q * q).sum(1)[:, None] - 2 * q @ xb.T + (xb * xb).sum(1)[None, :]
            else:
                d = 1.0 - q @ xb.T
        ids = np.broadcast_to(np.arange(lo, hi, dtype=np.int64), d.shape)
        d_all = np.concatenate([best_d, d], axis=1)
        i_all = np.concatenate([best_i, ids], axis=1)
        order = np.lexsort((i_all, d_all), axis=1)[:, :k] if False else _topk_order(d_all, i_all, k)
        best_d = np.take_along_axis(d_all, order, 1)
        best_i = np.take_along_axis(i_all, order, 1)
    return KnnResult(ids=best_i, dists=best_d.astype(np.float32))


def _topk_order(d: np.ndarray, i: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((d.shape[0], k), dtype=np.int64)
    for r in range(d.shape[0]):
        out[r] = np.lexsort((i[r], d[r]))[:k]
    return out
