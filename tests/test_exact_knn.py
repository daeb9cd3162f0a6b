"""The exact engine equals a plain float64 numpy computation (ties -> lower id) on random and
adversarial data, for every metric, across block and batch sizes that do and do not divide the data."""

from __future__ import annotations

import numpy as np
import pytest

from laionknn.errors import DataError, UsageError
from laionknn.exact import knn
from laionknn.io import VectorFile, write_vectors


def reference(X, Q, k, metric):
    """float64 brute force, one query at a time; returns ids (nq, k+1) and float64 dists (nq, k+1)."""
    n = X.shape[0]
    kk = min(k + 1, n)
    if metric == "hamming":
        D = np.stack([np.bitwise_count(X ^ q).sum(axis=1).astype(np.float64) for q in Q])
    else:
        X64, Q64 = X.astype(np.float64), Q.astype(np.float64)
        if metric == "cosine":
            X64 = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
            Q64 = Q64 / np.linalg.norm(Q64, axis=1, keepdims=True)
        if metric == "l2":
            D = np.stack([((X64 - q) ** 2).sum(axis=1) for q in Q64])
        else:
            D = np.stack([1.0 - (X64 * q).sum(axis=1) for q in Q64])
    ids = np.stack([np.lexsort((np.arange(n), d))[:kk] for d in D])
    return ids, np.take_along_axis(D, ids, 1)


def check(X, Q, k, metric, ref_X=None, **kw):
    res = knn(X, Q, k, metric, **kw)
    ids, d = reference(X if ref_X is None else ref_X, Q, k, metric)
    np.testing.assert_array_equal(res.ids, ids[:, :k])
    assert res.ids.dtype == np.int64 and res.dists.dtype == np.float32
    if metric == "hamming":
        np.testing.assert_array_equal(res.dists, d[:, :k].astype(np.float32))
    else:  # float32 rounding of float64 values that may differ in the last float64 bit
        np.testing.assert_allclose(res.dists, d[:, :k].astype(np.float32), rtol=2e-7, atol=2e-7)
    assert np.all(np.diff(res.dists, axis=1) >= 0)
    if ids.shape[1] > k:
        np.testing.assert_array_equal(res.attrs["tie_at_k"], (d[:, k - 1] == d[:, k]).astype(np.uint8))
    return res


def laion_like(rng, n, dim, dtype=np.float16):
    mean = rng.standard_normal(dim)
    x = rng.standard_normal((n, dim)) + 2.0 * mean / np.linalg.norm(mean) * np.sqrt(dim) * 0.3
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
@pytest.mark.parametrize("block_rows,query_batch", [(100, 13), (300, 1), (257, 7), (1200, 13), (7, 5)])
def test_random_float16_matches_float64(metric, block_rows, query_batch):
    rng = np.random.default_rng(10)
    X = laion_like(rng, 1200, 48)
    Q = laion_like(rng, 13, 48, np.float32)
    check(X, Q, 10, metric, block_rows=block_rows, query_batch=query_batch)


@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
def test_adversarial_duplicates_near_ties_and_query_in_database(metric):
    rng = np.random.default_rng(11)
    n, dim = 900, 32
    X = rng.standard_normal((n, dim)).astype(np.float32)
    Q = rng.standard_normal((6, dim)).astype(np.float32)
    # exact duplicates scattered over blocks, including across the k boundary
    X[[5, 400, 899, 123]] = X[77]
    X[[600, 601]] = X[3]
    # a query equal to a database row (and to its duplicates)
    Q[0] = X[77]
    # near-ties: a cluster of rows whose scores against Q[1] differ by ~1e-8..1e-7 (below the
    # float32 filter's resolution), so only float64 can order them
    base = Q[1] / np.linalg.norm(Q[1]) * 3
    j = int(np.argmax(np.abs(Q[1])))
    for t, row in enumerate(range(200, 240)):
        X[row] = base
        X[row, j] += np.float32((t % 7) * 1.2e-7)
    X[240:245] = X[203]  # and exact duplicates inside the near-tie cluster
    for k in (1, 5, 30, 44):
        check(X, Q, k, metric, block_rows=128, query_batch=4)
        check(X, Q, k, metric, block_rows=97, query_batch=6)


def test_hamming_exact_with_many_ties():
    rng = np.random.default_rng(12)
    X = rng.integers(0, 2**63, size=(1500, 2), dtype=np.uint64)
    X[:, 1] &= np.uint64(0xFF)  # few distinct distances: heavy ties, settled by id
    X[[10, 700, 1400]] = X[33]
    Q = X[[33, 4, 1000]].copy()
    Q[1] ^= np.uint64(1)
    for block_rows, batch in ((100, 3), (333, 2), (1500, 1), (11, 3)):
        res = check(X, Q, 25, "hamming", block_rows=block_rows, query_batch=batch)
        assert res.attrs["n_rescored"] == 0
    assert check(X, Q, 25, "hamming").attrs["tie_at_k"].sum() > 0


def test_vectorfile_database_and_memory_budget(home, tmp_path):
    rng = np.random.default_rng(13)
    X = laion_like(rng, 3000, 64)
    Q = laion_like(rng, 9, 64, np.float32)
    path = write_vectors(tmp_path / "db.h5", X, "emb")
    with VectorFile(path) as vf:
        res = check(vf, Q, 50, "cosine", ref_X=X, memory="700M")
    assert res.attrs["n_rescored"] >= 9 * 51


def test_k_equal_to_database_and_float64_inputs():
    rng = np.random.default_rng(14)
    X = rng.standard_normal((40, 8))
    Q = rng.standard_normal((3, 8))
    res = check(X, Q, 40, "dot", block_rows=9)
    assert res.attrs["tie_at_k"].tolist() == [0, 0, 0]
    check(X, Q, 39, "l2", block_rows=40)


def test_does_not_mutate_inputs():
    rng = np.random.default_rng(15)
    X = laion_like(rng, 200, 16)
    Q = laion_like(rng, 4, 16, np.float32) * 3
    X0, Q0 = X.copy(), Q.copy()
    knn(X, Q, 5, "cosine", block_rows=50)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Q, Q0)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(16)
    X = rng.standard_normal((50, 8)).astype(np.float32)
    Q = rng.standard_normal((2, 8)).astype(np.float32)
    with pytest.raises(UsageError, match="larger than the database"):
        knn(X, Q, 51, "dot")
    with pytest.raises(UsageError, match="dimension mismatch"):
        knn(X, Q[:, :4], 5, "dot")
    with pytest.raises(DataError, match="empty"):
        knn(X[:0], Q, 1, "dot")
    Xn = X.copy()
    Xn[31, 2] = np.nan
    with pytest.raises(DataError, match="row 31"):
        knn(Xn, Q, 5, "dot", block_rows=10)
    Xz = X.copy()
    Xz[17] = 0
    with pytest.raises(DataError, match="row 17 has zero norm"):
        knn(Xz, Q, 5, "cosine", block_rows=10)
    knn(Xz, Q, 5, "dot")  # zero rows are fine without normalisation
    Qz = Q.copy()
    Qz[1] = 0
    with pytest.raises(DataError, match="queries: row 1"):
        knn(X, Qz, 5, "cosine")
    with pytest.raises(UsageError, match="64-bit words"):
        knn(X, Q, 5, "hamming")


@pytest.mark.parametrize("metric", ["cosine", "dot", "hamming"])
def test_tie_ranks_and_float64_distances(metric):
    """``tie_ranks`` reports float64 ties at inner ranks, ``dists64`` the unrounded distances."""
    rng = np.random.default_rng(16)
    if metric == "hamming":
        X = rng.integers(0, 2**63, (300, 2), dtype=np.uint64) & np.uint64(0xF0F)
        Q = rng.integers(0, 2**63, (6, 2), dtype=np.uint64) & np.uint64(0xF0F)
    else:
        X = np.repeat(laion_like(rng, 150, 32), 2, axis=0)  # every row twice: ties at many ranks
        Q = laion_like(rng, 6, 32, np.float32)
    res = check(X, Q, 20, metric, tie_ranks=(3, 10, 20), dists64=True)
    ids, d = reference(X, Q, 20, metric)
    for r in (3, 10, 20):
        np.testing.assert_array_equal(res.attrs["tie_at"][r], (d[:, r - 1] == d[:, r]).astype(np.uint8))
    np.testing.assert_array_equal(res.attrs["tie_at"][20], res.attrs["tie_at_k"])
    assert res.attrs["tie_at"][3].sum() > 0  # duplicated rows (hamming: few distinct distances) tie
    if metric != "hamming":  # pairs of copies: rank 2j-1 ties with 2j, never 2j with 2j+1
        assert res.attrs["tie_at"][3].all() and not res.attrs["tie_at"][10].any()
    assert res.attrs["dists64"].dtype == np.float64 and res.attrs["dists64"].shape == (6, 20)
    np.testing.assert_allclose(res.attrs["dists64"], d[:, :20], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res.attrs["dists64"].astype(np.float32), res.dists)
    with pytest.raises(UsageError, match="tie_ranks"):
        knn(X, Q, 20, metric, tie_ranks=(21,))


def test_first_use_says_once_that_numba_compiles(monkeypatch, caplog):
    """A fresh install compiles the numba kernels on the first search (about 100 s): one warning, once;
    nothing when numba's cache already holds them."""
    from laionknn.exact import engine

    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    knn(x, x[:3], 2, "cosine")
    assert engine.kernels_compiled() is True  # after one search numba's cache holds the kernel
    monkeypatch.setattr(engine, "_ANNOUNCED", False)
    monkeypatch.setattr(engine, "kernels_compiled", lambda kernel=None: False)
    knn(x, x[:3], 2, "cosine")
    knn(x, x[:3], 2, "cosine")
    assert caplog.text.count("numba compiles its kernels once") == 1
    caplog.clear()
    monkeypatch.setattr(engine, "_ANNOUNCED", False)
    monkeypatch.setattr(engine, "kernels_compiled", lambda kernel=None: True)
    knn(x, x[:3], 2, "cosine")
    assert "numba compiles" not in caplog.text
