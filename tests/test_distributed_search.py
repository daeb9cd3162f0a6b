"""Sharded index search on a Dask LocalCluster with worker processes (laionknn.distributed.search):
exact shards equal the local exact engine, sharded hnswlib / faiss IVF recall within 0.01 of the
unsharded index, routed IVF equal to broadcast IVF, a shard whose worker dies is rebuilt; the CLI's
`search --dask` writes the usual outputs and refuses bad input in one line."""

from __future__ import annotations

import json
import os
import pickle
import signal

import numpy as np
import pytest

from laionknn import exact
from laionknn.distributed.search import ShardedIndex, assign_lists, merge_answers, ShardAnswer
from laionknn.indexes.registry import create, known_backends
from laionknn.io import VectorFile, write_vectors
from laionknn.types import Metric

distributed = pytest.importorskip("distributed")

N, DIM, NQ, K = 4000, 64, 100, 10


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from laionknn.distributed.engine import local_client

    # workers inherit the environment at start: give them their own index cache
    old = os.environ.get("LAIONKNN_HOME")
    os.environ["LAIONKNN_HOME"] = str(tmp_path_factory.mktemp("worker-home"))
    try:
        with local_client(2, 1) as c:
            yield c
    finally:
        if old is None:
            os.environ.pop("LAIONKNN_HOME", None)
        else:
            os.environ["LAIONKNN_HOME"] = old


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(17)
    centers = rng.standard_normal((25, DIM))
    x = (centers[rng.integers(0, 25, N)] * 0.8 + rng.standard_normal((N, DIM))).astype(np.float16)
    x[[5, 1337, 2001, 3999]] = x[1000]  # exact duplicates in different shards: ties go to the lower id
    q = (centers[rng.integers(0, 25, NQ)] * 0.8 + rng.standard_normal((NQ, DIM))).astype(np.float32)
    q[3] = x[1000]
    path = write_vectors(tmp_path_factory.mktemp("db") / "db.h5", x, "emb")
    return path, x, q


def _recall(ids, gold):
    return float(np.mean([len(set(a) & set(b)) for a, b in zip(ids, gold)])) / gold.shape[1]


def _sharded(client, path, q, backend, params, knobs, shards, layout="rows", metric="cosine"):
    index = ShardedIndex(client, backend, path, metric, params, shards=shards, layout=layout, use_cache=False)
    try:
        built = index.build()
        index.scatter(q)
        res, info = index.search(K, **knobs)
        return res, info, built
    finally:
        index.close()


@pytest.mark.parametrize("metric,shards", [("cosine", 3), ("l2", 7), ("dot", 1)])
def test_sharded_exact_is_the_local_exact_engine(client, data, metric, shards):
    path, x, q = data
    res, info, built = _sharded(client, path, q, "exact", {}, {}, shards, metric=metric)
    with VectorFile(path) as db:
        local = exact.knn(db, q, K, metric)
    np.testing.assert_array_equal(res.ids, local.ids)
    np.testing.assert_array_equal(res.dists, local.dists)
    if metric == "cosine":  # the duplicates of row 1000: the query equal to them gets the lowest ids first
        assert list(res.ids[3, :5]) == [5, 1000, 1337, 2001, 3999]
    assert sum(built["shard_rows"]) == N and len(built["shard_rows"]) == shards
    assert info.pairs == NQ * shards and len(info.shard_seconds) == shards


@pytest.mark.parametrize("backend,params,knobs", [
    ("hnswlib", {"M": 16, "ef_construction": 100}, {"ef": 64}),
    ("faiss-ivfflat", {"nlist": 16}, {"nprobe": 8}),
])
def test_sharded_recall_within_001_of_unsharded(client, data, backend, params, knobs):
    path, x, q = data
    gold = exact.knn(x, q, K, "cosine").ids
    whole = create(backend, "cosine", threads=1, **params)
    with VectorFile(path) as db:
        whole.build(db)
    whole.set_query_params(**knobs)
    r_whole = _recall(whole.search(q, K).ids, gold)
    res, info, _ = _sharded(client, path, q, backend, params, knobs, 2)
    r_sharded = _recall(res.ids, gold)
    assert r_whole > 0.9  # a meaningful operating point, not a floor effect
    assert abs(r_sharded - r_whole) <= 0.01, (r_sharded, r_whole)
    assert (res.ids >= 0).all() and (np.diff(res.dists, axis=1) >= 0).all()


def test_routed_ivf_equals_broadcast_ivf_and_touches_fewer_shards(client, data):
    path, x, q = data
    params, knobs = {"nlist": 32}, {"nprobe": 3}
    broadcast, b_info, b_built = _sharded(client, path, q, "faiss-ivfflat", params, knobs, 4, layout="broadcast")
    routed, r_info, r_built = _sharded(client, path, q, "faiss-ivfflat", params, knobs, 4, layout="routed")
    np.testing.assert_array_equal(routed.ids, broadcast.ids)
    np.testing.assert_array_equal(routed.dists, broadcast.dists)
    assert sum(r_built["shard_rows"]) == N == sum(b_built["shard_rows"])
    assert b_info.pairs == 4 * NQ
    assert NQ <= r_info.pairs < b_info.pairs  # each query reaches 1..nprobe shards, here fewer than all
    assert 1.0 <= r_info.shards_per_query <= 3.0
    # both scan exactly the lists the unsharded index (same training sample, same quantizer) scans
    whole = create("faiss-ivfflat", "cosine", threads=1, **params)
    with VectorFile(path) as db:
        whole.build(db)
    whole.set_query_params(**knobs)
    assert _recall(routed.ids, whole.search(q, K).ids) >= 0.99


def test_a_shard_whose_worker_dies_is_rebuilt(client, data):
    path, x, q = data
    index = ShardedIndex(client, "hnswlib", path, "cosine", {"M": 16, "ef_construction": 60}, shards=2,
                         use_cache=False)
    try:
        built = index.build()
        index.scatter(q)
        before, info0 = index.search(K, ef=48)
        assert info0.recomputed == []
        victim = built["pids"][0]
        os.kill(victim, signal.SIGKILL)
        after, info = index.search(K, ef=48)
    finally:
        index.close()
    np.testing.assert_array_equal(after.ids, before.ids)
    assert 0 in info.recomputed  # shard 0 was built again, elsewhere
    assert victim not in info.pids


def test_cache_keyed_by_shard_and_index_travels(client, data):
    path, x, q = data
    from laionknn.indexes.runner import data_fingerprint

    with VectorFile(path) as db:
        fp = data_fingerprint(db)
    runs = []
    for _ in range(2):
        index = ShardedIndex(client, "faiss-ivfflat", path, "cosine", {"nlist": 8}, shards=2, fingerprint=fp)
        try:
            runs.append(index.build())
            index.scatter(q)
            runs[-1]["ids"] = index.search(K, nprobe=2)[0].ids
        finally:
            index.close()
    assert runs[0]["cached"] == [False, False] and runs[1]["cached"] == [True, True]
    np.testing.assert_array_equal(runs[0]["ids"], runs[1]["ids"])
    # a built shard survives being moved between processes (pickled as its saved files)
    from laionknn.distributed.search import ShardSource, _build_shard, _search_shard

    holder = _build_shard(1, "faiss-ivfflat", "cosine", {"nlist": 8}, 1, ShardSource(path, "emb", 2000, N, DIM, np.float16),
                          None, False)
    moved = pickle.loads(pickle.dumps(holder))
    a, b = _search_shard(holder, q, K, {"nprobe": 2}), _search_shard(moved, q, K, {"nprobe": 2})
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.ids.min() >= 2000 and moved.build_id == holder.build_id


def test_assign_lists_and_merge_are_plain():
    rng = np.random.default_rng(2)
    for n_lists in (1, 5, 40):
        sizes = rng.integers(0, 100, n_lists)
        for shards in (1, 2, 3, 8):
            owner = assign_lists(sizes, shards)
            assert owner.shape == (n_lists,) and owner.min() >= 0 and owner.max() < shards
            load = np.bincount(owner, weights=sizes, minlength=shards)
            assert load.max() - load.min() <= max(sizes.max(), 0)  # greedy LPT bound
    # merge: top-k by (distance, id) over partial answers, a routed shard answering only some rows
    a = ShardAnswer(0, None, np.array([[4, 9], [1, 2]]), np.array([[0.1, 0.5], [0.2, 0.3]]), 0, "", 0)
    b = ShardAnswer(1, np.array([1]), np.array([[0, 7]]), np.array([[0.2, 0.25]]), 0, "", 0)
    d, i = merge_answers(2, 2, [a, b])
    assert i.tolist() == [[4, 9], [0, 1]] and d.tolist() == [[0.1, 0.5], [0.2, 0.2]]


@pytest.mark.parametrize("backend", known_backends())
def test_every_backend_shards(client, data, tmp_path, backend):
    """Every available backend of the registry runs sharded: global ids from both shards, a recall close
    to its unsharded index on its small-data grid."""
    from laionknn.indexes import available_backends, get_backend, load_grid

    if backend not in available_backends():
        pytest.skip(f"{backend} is not available here")
    path, x, q = data
    metric = "hamming" if Metric.HAMMING in get_backend(backend).metrics else "cosine"
    if metric == "hamming":
        rng = np.random.default_rng(8)
        x = rng.integers(0, 2**63, (N, 16), dtype=np.uint64)
        q = np.concatenate([x[:20] ^ np.uint64(1 << 5), rng.integers(0, 2**63, (30, 16), dtype=np.uint64)])
        path = write_vectors(tmp_path / "ham.h5", x, "hamming")
    grid = load_grid(backend, n_rows=N // 2, k=K, dim=x.shape[1])  # grid rules of the shard size, k and dim
    build, knobs = grid.build[0], grid.query[-1]
    res, info, built = _sharded(client, path, q, backend, build, knobs, 2, metric=metric)
    gold = exact.knn(x, q, K, metric).ids
    whole = create(backend, metric, threads=1, **build)
    with VectorFile(path) as db:
        whole.build(db)
        whole.set_query_params(**knobs)
        r_whole = _recall(whole.search(q, K).ids, gold)
    assert res.ids.shape == (len(q), K) and res.ids.max() < N
    assert (res.ids >= N // 2).any() and (res.ids[res.ids >= 0] < N // 2).any()  # answers from both shards
    assert _recall(res.ids, gold) >= r_whole - 0.05


def test_sweep_dask_sets_knobs_for_k_and_loads_rule_grids(client, data, tmp_path):
    """`search --dask` runs the local runner's knobs: ef raised to k (points that become equal run once),
    grids whose rules need k and dim, and records with the rules and the machine/library fields."""
    pytest.importorskip("hnswlib")
    pytest.importorskip("faiss")
    from laionknn.distributed.sweep import sweep_dask
    from laionknn.indexes.grids import Grid
    from laionknn.indexes.runner import SweepTarget

    path, x, q = data
    grid = Grid("hnswlib", [{"M": 8, "ef_construction": 40}], [{"ef": 4}, {"ef": 10}, {"ef": 20}])
    with VectorFile(path) as db:
        target = SweepTarget(db, q, Metric.COSINE, "clip768v2", "4000", "test-4000")
        recs = sweep_dask("hnswlib", target, K, tmp_path / "h", client=client, shards=2, grid=grid, use_cache=False)
        assert [r["query_params"]["ef"] for r in recs] == [10, 20]
        assert recs[0]["knob_changes"] == "ef 4->10 (at least k=10)" and recs[1]["knob_changes"] == ""
        recs = sweep_dask("faiss-ivfpqfs", target, K, tmp_path / "p", client=client, shards=2, quick=True,
                          use_cache=False)  # its m rule uses dim
    assert recs and all("m=dim // 4 if n > 20000 else min(16, dim)->16" in r["grid_rules"] for r in recs)
    assert all(r["library"] and r["search_mode"] == "batch" and r["file"] for r in recs)
