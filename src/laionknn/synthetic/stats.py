"""Statistics that describe a LAION-like embedding set, for real and synthetic files alike.

Two groups of figures:

* global ones, computed on a random sample of (by default) 1024 vectors, because the reference
  figures come from the 1024 real LAION vectors of the organisers' BinWalk model and a small sample
  inflates the top of the PCA spectrum: mean pairwise cosine (and its std), norm of the mean vector,
  share of variance in the top 8..256 principal components, mean cosine to the nearest other vector,
  near-duplicate rate, norms before normalisation, local intrinsic dimensionality (MLE, k = 10);
* neighbourhood ones: how much of the exact 30-NN (cosine, 768-d) survives a PCA projection to 32 and
  96 dimensions (PCA fitted on the L2-normalised database, mean-centred, no whitening; queries
  projected with the same model; exact 30-NN by squared L2 in the projected space). The organisers'
  published real-LAION figures, by scale, are :data:`laionknn.synthetic.fidelity.REAL`.

Every function takes arrays with one vector per row and never mutates them.
"""

from __future__ import annotations

import logging

import numpy as np

from laionknn.errors import DataError, UsageError

log = logging.getLogger(__name__)

PCA_DIMS = (8, 16, 32, 64, 96, 128, 256)
NEAR_DUPLICATE_COS = 0.98  # cosine above which two vectors count as near-duplicates
LID_K = 10


def normalize_rows(x: np.ndarray, dtype=np.float32) -> np.ndarray:
    """A new ``dtype`` array with every row of ``x`` scaled to unit L2 norm (zero rows raise)."""
    out = np.array(x, dtype=dtype, copy=True)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise DataError(f"row {int(np.flatnonzero(norms[:, 0] == 0)[0])} has zero norm and cannot be normalised")
    out /= norms
    return out


def lid_mle(sorted_dists: np.ndarray) -> np.ndarray:
    """Per-row MLE of local intrinsic dimensionality (Levina-Bickel / Amsaleg et al.).

    ``sorted_dists``: (m, k) ascending Euclidean distances to the k nearest other points (> 0).
    LID = -(1/k * sum_i log(d_i / d_k))^-1 over i = 1..k (the i = k term is 0).
    """
    d = np.maximum(np.asarray(sorted_dists, dtype=np.float64), 1e-12)
    logs = np.log(d / d[:, -1:]).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(logs < 0, -1.0 / logs, np.inf)


def global_stats(vectors: np.ndarray) -> dict:
    """Global statistics of ``vectors`` (m, dim), any float dtype, one vector per row; m >= 12.

    Cosines and PCA use the L2-normalised rows; ``norm_*`` describe the rows as given.
    Returns a dict of floats (``pca`` maps dimension -> variance share).
    """
    x = np.asarray(vectors, dtype=np.float64)
    m = x.shape[0]
    if m < LID_K + 2:
        raise UsageError(f"statistics need at least {LID_K + 2} vectors, got {m}")
    norms = np.linalg.norm(x, axis=1)
    xn = normalize_rows(x, np.float64)
    gram = xn @ xn.T
    iu = np.triu_indices(m, 1)
    pair = gram[iu]
    mean = xn.mean(axis=0)
    sv = np.linalg.svd(xn - mean, compute_uv=False) ** 2
    share = np.cumsum(sv) / sv.sum()
    np.fill_diagonal(gram, -np.inf)
    nn_cos = gram.max(axis=1)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * gram, 0.0))  # diagonal -> inf
    knn_d = np.sort(dist, axis=1)[:, :LID_K]
    lid = lid_mle(knn_d)
    return {
        "n": m,
        "mean_cos": float(pair.mean()),
        "std_cos": float(pair.std()),
        "norm_of_mean": float(np.linalg.norm(mean)),
        "pca": {d: float(share[min(d, len(share)) - 1]) for d in PCA_DIMS},
        "nn_cos": float(nn_cos.mean()),
        "near_dup_rate": float((nn_cos >= NEAR_DUPLICATE_COS).mean()),
        "norm_min": float(norms.min()),
        "norm_mean": float(norms.mean()),
        "norm_max": float(norms.max()),
        "lid": float(np.median(lid[np.isfinite(lid)])) if np.isfinite(lid).any() else float("inf"),
    }


def _topk_merge(best_s: np.ndarray, best_i: np.ndarray, s: np.ndarray, offset: int, k: int):
    """Keep the k largest scores per row among (best, new block); ids are global 0-based."""
    kk = min(k, s.shape[1])
    part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    cand_s = np.concatenate([best_s, np.take_along_axis(s, part, axis=1)], axis=1)
    cand_i = np.concatenate([best_i, part.astype(np.int64) + offset], axis=1)
    if cand_s.shape[1] > k:
        sel = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        cand_s = np.take_along_axis(cand_s, sel, axis=1)
        cand_i = np.take_along_axis(cand_i, sel, axis=1)
    return cand_s, cand_i


def knn_scores(database: np.ndarray, queries: np.ndarray, k: int, *, l2: bool = False,
               block_rows: int = 65536) -> np.ndarray:
    """Ids (nq, k), 0-based int64, of the k best database rows per query (set semantics, unordered).

    Score is the dot product (``l2=False``; use normalised rows for cosine) or minus the squared L2
    distance. Float32 matmul in blocks of ``block_rows`` database rows: a statistic, not a gold standard.
    """
    q = np.asarray(queries, dtype=np.float32)
    best_s = np.empty((q.shape[0], 0), np.float32)
    best_i = np.empty((q.shape[0], 0), np.int64)
    for lo in range(0, database.shape[0], block_rows):
        xb = np.asarray(database[lo:lo + block_rows], dtype=np.float32)
        s = q @ xb.T
        if l2:
            s = 2 * s - (xb * xb).sum(axis=1)[None, :]
        best_s, best_i = _topk_merge(best_s, best_i, s, lo, k)
    return best_i


def pca_fit(database: np.ndarray, dims: int, block_rows: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the rows of ``database`` (already normalised): mean (dim,) and the top ``dims`` principal
    directions as columns of a (dim, dims) float64 matrix. Mean-centred, no whitening."""
    n, dim = database.shape
    mean = np.zeros(dim)
    gram = np.zeros((dim, dim))
    for lo in range(0, n, block_rows):
        xb = np.asarray(database[lo:lo + block_rows], dtype=np.float32)
        mean += xb.sum(axis=0, dtype=np.float64)
        gram += (xb.T @ xb).astype(np.float64)
    mean /= n
    cov = gram / n - np.outer(mean, mean)
    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1][:dims]
    return mean, v[:, order]


def projection_recall(database: np.ndarray, queries: np.ndarray, dims=(32, 96), k: int = 30) -> dict:
    """recall@k of exact k-NN in PCA-d space against exact k-NN in the original space (cosine).

    ``database`` (n, dim) and ``queries`` (nq, dim) are L2-normalised here (copies). Returns {d: recall}.
    """
    n = database.shape[0]
    if k > n:
        raise UsageError(f"recall@{k} needs at least {k} database rows, got {n}")
    xb = normalize_rows(database)
    xq = normalize_rows(queries)
    gold = knn_scores(xb, xq, k)
    mean, vecs = pca_fit(xb, max(dims))
    out = {}
    for d in dims:
        w = vecs[:, :d].astype(np.float32)
        pb = (xb - mean.astype(np.float32)) @ w
        pq = (xq - mean.astype(np.float32)) @ w
        got = knn_scores(pb, pq, k, l2=True)
        hits = sum(len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(got, gold))
        out[d] = hits / (k * xq.shape[0])
    return out
