"""Shared oracle for the ivfgemm re-rank tests (numba kernel and compiled kernels)."""

from __future__ import annotations

import numpy as np


def rerank_case(rng, dim: int):
    """float16 rows (one with subnormal values, one all zeros), their inverse norms, 6 queries and 25
    candidates each (query 2 has fewer than k), k = 4."""
    rows = (rng.standard_normal((300, dim)) * 0.05).astype(np.float16)
    rows[0, :5] = np.float16(3e-6)  # subnormal float16 values
    rows[1, :] = 0
    inv = (1.0 / np.maximum(np.linalg.norm(rows.astype(np.float32), axis=1), 1e-3)).astype(np.float32)
    q = rng.standard_normal((6, dim)).astype(np.float32)
    cand = np.stack([rng.choice(np.arange(2, 300), 25, replace=False) for _ in range(6)]).astype(np.int64)
    cand[:, 0], cand[:, 1] = 0, 1  # the rows with subnormal values and with zeros
    cand[2, 3:] = -1  # a query with fewer candidates than k
    return rows, inv, q, cand, 4


def assert_rerank_matches_float64(pos, sim, rows, inv, q, cand, k):
    """Each query's top k of its candidates by the float64 similarity, sorted descending, -inf padding."""
    exact = (q.astype(np.float64) @ rows.astype(np.float64).T) * inv[None, :]
    for i in range(len(q)):
        c = np.unique(cand[i][cand[i] >= 0])
        order = c[np.argsort(-exact[i, c], kind="stable")][:k]
        found = pos[i] >= 0
        assert found.sum() == len(order) and np.all(sim[i][~found] == -np.inf)
        np.testing.assert_array_equal(np.sort(pos[i][found]), np.sort(order))
        np.testing.assert_allclose(sim[i][found], exact[i, pos[i][found]], atol=1e-5)
        assert np.all(np.diff(sim[i]) <= 0)
