"""The Dask engine returns exactly the local engine's answer (ids, dists, tie flags, n_rescored) on
small adversarial data, with dask's synchronous scheduler and with an in-process distributed cluster;
ids are also checked against an independent float64 brute force."""

from __future__ import annotations

import numpy as np
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from laionknn.distributed import knn_dask  # noqa: E402
from laionknn.errors import DataError, UsageError  # noqa: E402
from laionknn.exact import knn  # noqa: E402
from laionknn.io import VectorFile, write_vectors  # noqa: E402
from test_exact_knn import reference  # noqa: E402

METRICS = ["cosine", "dot", "l2", "hamming"]


def brute_ids(X, Q, kk, metric):
    """float64 brute force by (distance, id), independent of the engines (the exact tests' oracle)."""
    return reference(X, Q, kk, metric)[0][:, :kk]


def adversarial(metric, seed=21):
    """Duplicates across shard boundaries, a query equal to a row, near-ties below float32 resolution."""
    rng = np.random.default_rng(seed)
    n, dim = 700, 24
    if metric == "hamming":
        X = np.zeros((n, 16), dtype=np.uint64)  # 1024-bit sketches, official layout
        X[:, :2] = rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64)
        X[:, 1] &= np.uint64(0xF)  # few distinct distances: heavy ties, settled by id
        X[[10, 350, 699]] = X[33]
        Q = X[[33, 4, 500]].copy()
        Q[1] ^= np.uint64(1)
        return X, Q
    X = rng.standard_normal((n, dim)).astype(np.float16)
    Q = rng.standard_normal((5, dim)).astype(np.float32)
    X[[5, 351, 699, 123]] = X[77]
    X[[600, 601]] = X[3]
    Q[0] = X[77]
    base = (Q[1] / np.linalg.norm(Q[1]) * 3).astype(np.float16)
    j = int(np.argmax(np.abs(Q[1])))
    for t, row in enumerate(range(200, 230)):
        X[row] = base
        X[row, (j + t % 3) % dim] = np.float16(float(base[(j + t % 3) % dim]) * (1 + (t % 5) * 1e-3))
    X[230:235] = X[203]
    return X, Q


def write_db(tmp_path, X, metric):
    return write_vectors(tmp_path / f"db-{metric}.h5", X, "hamming" if metric == "hamming" else "emb")


def assert_same(res, ref, X, Q, k, metric):
    np.testing.assert_array_equal(res.ids, ref.ids)
    np.testing.assert_array_equal(res.dists, ref.dists)
    np.testing.assert_array_equal(res.attrs["tie_at_k"], ref.attrs["tie_at_k"])
    assert res.attrs["n_rescored"] == ref.attrs["n_rescored"]
    np.testing.assert_array_equal(res.ids, brute_ids(X, Q, k, metric))
    assert res.ids.dtype == np.int64 and res.dists.dtype == np.float32


@pytest.mark.parametrize("metric", METRICS)
def test_sync_scheduler_equals_local_engine(tmp_path, metric):
    X, Q = adversarial(metric)
    path = write_db(tmp_path, X, metric)
    with VectorFile(path) as db:
        refs = {k: knn(db, Q, k, metric) for k in (1, 7, 40)}
    with dask.config.set(scheduler="sync"):
        for k, ref in refs.items():
            for shards, split_every in ((1, 2), (3, 2), (7, 3), (50, 8), (700, 4)):
                res = knn_dask(path, Q, k, metric, shards=shards, split_every=split_every, align=1)
                assert_same(res, ref, X, Q, k, metric)
                assert res.attrs["shards"] == shards
    assert sum(refs[40].attrs["tie_at_k"]) > 0 or metric != "hamming"


def test_small_memory_budget_and_threads_scheduler(tmp_path):
    X, Q = adversarial("cosine", seed=5)
    path = write_db(tmp_path, X, "cosine")
    with VectorFile(path) as db:
        ref = knn(db, Q, 12, "cosine", block_rows=64)
    with dask.config.set(scheduler="threads"):
        res = knn_dask(path, Q, 12, "cosine", shards=5, split_every=2, memory="1G", threads=1, align=1)
    assert_same(res, ref, X, Q, 12, "cosine")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                  scheduler_kwargs={"dashboard": False}) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.mark.parametrize("metric", METRICS)
def test_local_cluster_equals_local_engine(tmp_path, client, metric):
    X, Q = adversarial(metric, seed=22)
    path = write_db(tmp_path, X, metric)
    with VectorFile(path) as db:
        ref = knn(db, Q, 9, metric)
    res = knn_dask(path, Q, 9, metric, client=client, shards=6, split_every=2, align=1)
    assert_same(res, ref, X, Q, 9, metric)
    assert res.attrs["n_rescored_shards"] >= res.attrs["n_rescored"]


def test_errors_are_raised_before_or_from_tasks(tmp_path):
    X, Q = adversarial("cosine")
    path = write_db(tmp_path, X, "cosine")
    with dask.config.set(scheduler="sync"):
        with pytest.raises(UsageError, match="larger than the database"):
            knn_dask(path, Q, 701, "cosine")
        with pytest.raises(UsageError, match="dimension mismatch"):
            knn_dask(path, Q[:, :5], 3, "cosine")
        with pytest.raises(UsageError, match="split_every"):
            knn_dask(path, Q, 3, "cosine", split_every=1)
        bad = X.copy()
        bad[456] = 0
        zpath = write_vectors(tmp_path / "zero.h5", bad, "emb")
        with pytest.raises(DataError, match="row 456 has zero norm"):
            knn_dask(zpath, Q, 3, "cosine", shards=4, align=1)


def test_does_not_mutate_queries(tmp_path):
    X, Q = adversarial("dot")
    path = write_db(tmp_path, X, "dot")
    before = Q.copy()
    with dask.config.set(scheduler="sync"):
        knn_dask(path, Q, 4, "dot", shards=3)
    np.testing.assert_array_equal(Q, before)


def test_tie_ranks_and_float64_dists_like_the_local_engine(tmp_path):
    X, Q = adversarial("hamming", seed=8)
    path = write_db(tmp_path, X, "hamming")
    with VectorFile(path) as db:
        ref = knn(db, Q, 30, "hamming", tie_ranks=(1, 10, 30), dists64=True)
    with dask.config.set(scheduler="sync"):
        res = knn_dask(path, Q, 30, "hamming", shards=4, split_every=3, tie_ranks=(1, 10, 30), dists64=True,
                       align=7)
    assert_same(res, ref, X, Q, 30, "hamming")
    assert set(res.attrs["tie_at"]) == {1, 10, 30}
    for r in (1, 10, 30):
        np.testing.assert_array_equal(res.attrs["tie_at"][r], ref.attrs["tie_at"][r])
    np.testing.assert_array_equal(res.attrs["dists64"], ref.attrs["dists64"])
    assert res.attrs["tie_at"][30].sum() > 0  # heavy ties: the flags are exercised
