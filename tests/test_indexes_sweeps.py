"""Sweeps that are right for any dataset (issue 20): caches that load back after the rename and after a
move of the workspace, grids derived from the row count (catalog names and plain files alike), knobs
reported as really run for k, build parameters that say what was done.

Data: 2,000 clustered vectors of dimension 64 (cosine) or 1024-bit sketches of them (Hamming), as in
the conformance test; expected values are written out by hand from the rules in the grid files.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from laionknn import workspace
from laionknn.errors import UsageError
from laionknn.indexes import available_backends, create, get_backend, known_backends, load_grid
from laionknn.indexes.grids import Grid
from laionknn.indexes.rules import evaluate
from laionknn.indexes.runner import SweepTarget, build_or_load, set_knobs_for_k, sweep
from laionknn.types import Metric

N, DIM, NQ = 2000, 64, 60


def _clustered(rng, n, centers):
    return centers[rng.integers(0, len(centers), n)] + 0.6 * rng.standard_normal((n, centers.shape[1]))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((25, DIM))
    db = _clustered(rng, N, centers).astype(np.float16)
    q = _clustered(rng, NQ, centers).astype(np.float32)
    planes = np.random.default_rng(12).standard_normal((DIM, 1024))

    def sketch(x):
        return np.packbits((x.astype(np.float64) @ planes) > 0, axis=1, bitorder="little").view(np.uint64)

    return {Metric.COSINE: (db, q), Metric.HAMMING: (sketch(db), sketch(q))}


def _metric(name):
    metrics = get_backend(name).metrics
    return Metric.HAMMING if Metric.COSINE not in metrics else Metric.COSINE


def _target(data, metric):
    db, q = data[metric]
    return SweepTarget(database=db, queries=q, metric=metric, data="clip768v2", size="2K", dataset="t-2K")


def _gold(data, k):
    db, q = data[Metric.COSINE]
    a = db.astype(np.float64)
    b = q.astype(np.float64)
    sims = (b / np.linalg.norm(b, axis=1, keepdims=True)) @ (a / np.linalg.norm(a, axis=1, keepdims=True)).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


# --- caches ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", known_backends())
def test_cache_loads_back_after_rename_and_workspace_move(name, data, monkeypatch, tmp_path):
    if name not in available_backends():
        pytest.skip(f"{name}: library not installed")
    metric = _metric(name)
    target = _target(data, metric)
    db, q = data[metric]
    grid = load_grid(name, n_rows=N, k=10, dim=db.shape[1])
    index, buildtime, cached, _ = build_or_load(name, target, grid.build[0], threads=1)
    assert not cached
    index.set_query_params(**grid.query[-1])
    reference = index.search(q, 10)
    cache = workspace.index_cache_dir()
    if not get_backend(name).supports_save:  # exact keeps no copy: nothing to cache, rebuilt each time
        assert not list(cache.glob(f"{name}-*"))
        return
    folders = [p for p in cache.iterdir() if p.name.startswith(f"{name}-")]
    # the entry's own temporary folder (fsutil.temp_path: .tmp-<pid>-<entry>) must be gone; a live
    # backend's work folder (NGT builds in .tmp-<pid>-ngt-build-*, removed with the object) may remain
    assert len(folders) == 1 and not list(cache.glob(f".tmp-*-{folders[0].name}")), \
        "the temporary build folder was not renamed"

    def reload():
        again, again_time, again_cached, _ = build_or_load(name, target, grid.build[0], threads=1)
        assert again_cached and again_time == buildtime
        again.set_query_params(**grid.query[-1])
        np.testing.assert_array_equal(again.search(q, 10).ids, reference.ids)

    reload()  # after the atomic rename of .tmp-<pid>-... into place
    moved = tmp_path / "moved-home"
    shutil.move(str(workspace.home()), str(moved))
    monkeypatch.setenv("LAIONKNN_HOME", str(moved))
    reload()  # after moving the whole workspace


def test_scann_cache_from_an_absolute_path_save_is_repointed(data, tmp_path):
    pytest.importorskip("scann")
    db, q = data[Metric.COSINE]
    index = create("scann", "cosine", threads=1, num_leaves=40, training_sample=N)
    index.build(db)
    index.set_query_params(leaves_to_search=10)
    before = index.search(q, 10).ids
    (tmp_path / "a").mkdir()
    index.searcher.serialize(str(tmp_path / "a"))  # the old way: absolute paths into folder a
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    again = create("scann", "cosine", threads=1, num_leaves=40, training_sample=N)
    again.load(tmp_path / "b", N, DIM)
    again.set_query_params(leaves_to_search=10)
    np.testing.assert_array_equal(again.search(q, 10).ids, before)
    assert str(tmp_path / "a") not in (tmp_path / "b" / "scann_assets.pbtxt").read_text()


def test_a_cache_that_does_not_load_is_rebuilt(data, caplog):
    pytest.importorskip("hnswlib")
    target = _target(data, Metric.COSINE)
    params = {"M": 8, "ef_construction": 40}
    build_or_load("hnswlib", target, params, threads=1)
    (folder,) = [p for p in workspace.index_cache_dir().iterdir() if p.name.startswith("hnswlib-")]
    (folder / "index" / "index.hnsw").write_bytes(b"not an index")
    index, _, cached, _ = build_or_load("hnswlib", target, params, threads=1)
    assert not cached and "does not load back" in caplog.text
    assert index.search(data[Metric.COSINE][1], 10).ids.min() >= 0
    _, _, cached, _ = build_or_load("hnswlib", target, params, threads=1)
    assert cached  # the rebuilt index was cached again


# --- grids scaled to the data --------------------------------------------------------------------------
# by hand: nlist = pow2(sqrt(n)) (sqrt: 44.7, 158, 316, 1000; n // 39 is larger), train_size =
# min(n, max(20000, 50 nlist)),
# num_leaves = round(sqrt(n)), training_sample = min(n, 100000)
SIZES = {2_000: "2K", 25_000: "25K", 100_000: "100K", 1_000_000: "1M"}
NLIST = {2_000: 32, 25_000: 128, 100_000: 256, 1_000_000: 1024}
TRAIN = {2_000: 2_000, 25_000: 20_000, 100_000: 20_000, 1_000_000: 51_200}
LEAVES = {2_000: 45, 25_000: 158, 100_000: 316, 1_000_000: 1000}
SAMPLE = {2_000: 2_000, 25_000: 25_000, 100_000: 100_000, 1_000_000: 100_000}
EF_CONSTRUCTION = {2_000: 40, 25_000: 100, 100_000: 40, 1_000_000: 100}


@pytest.mark.parametrize("n", list(SIZES))
@pytest.mark.parametrize("kind", ["catalog", "misleading catalog", "plain file"])
def test_grid_defaults_follow_the_row_count(n, kind):
    name = {"catalog": f"synthetic-clip768v2-n={SIZES[n]}",
            "misleading catalog": "laion2B-en-clip768v2-n=100K",  # a name that says 100K, whatever n is
            "plain file": "/data/my-own-vectors.h5"}[kind]
    for backend in ("faiss-ivfflat", "faiss-ivfsq8", "faiss-ivfpqfs", "faiss-binary-ivf"):
        g = load_grid(backend, dataset=name, n_rows=n, dim=768)
        (b,) = g.build
        assert (b["nlist"], b["train_size"]) == (NLIST[n], TRAIN[n]), backend
        assert b["train_size"] <= n and b["train_size"] >= 39 * b["nlist"]  # faiss's own training minimum
        assert f"nlist=max(1, min(pow2(sqrt(n)), n // 39))->{NLIST[n]}" in g.build_rule(0)
    assert load_grid("faiss-ivfpqfs", dataset=name, n_rows=n, dim=768).build[0]["m"] == (16 if n <= 20_000 else 192)
    g = load_grid("scann", dataset=name, n_rows=n, dim=768)
    assert (g.build[0]["num_leaves"], g.build[0]["training_sample"]) == (LEAVES[n], SAMPLE[n])
    assert f"num_leaves=round(sqrt(n))->{LEAVES[n]}" in g.build_rule(0)
    for backend in ("hnswlib", "faiss-hnsw"):
        assert load_grid(backend, dataset=name, n_rows=n).build[0]["ef_construction"] == EF_CONSTRUCTION[n]


def test_query_grids_start_at_k():
    assert [p["ef"] for p in load_grid("hnswlib", n_rows=25_000, k=10).query] == [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
    assert [p["ef"] for p in load_grid("hnswlib", n_rows=25_000, k=30).query] == [30, 48, 72, 96, 144, 192, 288, 384, 576, 768, 1152, 1536]
    for backend, knob in (("usearch-f32", "expansion_search"), ("faiss-hnsw", "ef_search"),
                          ("faiss-hnswsq8", "ef_search")):
        for n in SIZES:
            assert min(p[knob] for p in load_grid(backend, n_rows=n, k=30).query) >= 30, (backend, n)
    assert {p["reorder"] for p in load_grid("scann", n_rows=25_000, k=30).query} == {40, 100}
    assert {p["reorder"] for p in load_grid("scann", n_rows=25_000, k=50).query} == {50, 100}


# the peer libraries' grids follow the same rules: IVF lists from n, candidate lists from k
PEER_IVF = ("faiss-ivfrabitqfs", "rabitq-ivf")
PEER_CANDIDATE_KNOBS = {"faiss-nsg": "search_L", "rabitq-symqg": "ef", "vsag-hgraph": "ef_search",
                        "voyager-f32": "query_ef", "voyager-e4m3": "query_ef", "svs-vamana": "search_window_size",
                        "svs-lvq": "search_window_size", "svs-leanvec": "search_window_size"}


def test_default_grids_choose_by_size_never_by_name():
    import tomllib

    from laionknn.indexes.grids import default_grid_path

    for backend in known_backends():
        raw = tomllib.loads(default_grid_path(backend).read_text())
        assert all("match" not in ov for ov in raw.get("override", [])), backend


@pytest.mark.parametrize("n", list(SIZES))
def test_peer_ivf_grids_follow_the_row_count(n):
    backends = [b for b in PEER_IVF if b in available_backends()]
    if not backends:
        pytest.skip("no peer IVF backend available here")
    for backend in backends:
        for name in (f"synthetic-clip768v2-n={SIZES[n]}", "laion2B-en-clip768v2-n=100K", "/data/my-own-vectors.h5"):
            (b,) = load_grid(backend, dataset=name, n_rows=n, dim=768).build
            assert (b["nlist"], b["train_size"]) == (NLIST[n], TRAIN[n]), (backend, name)


def test_peer_candidate_lists_start_at_k_and_are_recorded_as_run():
    ran = [b for b in PEER_CANDIDATE_KNOBS if b in available_backends()]
    if not ran and "rabitq-ivf" not in available_backends():
        pytest.skip("no peer library available here")
    for backend in ran:
        knob = PEER_CANDIDATE_KNOBS[backend]
        for n in SIZES:
            for k in (10, 30):
                assert min(p[knob] for p in load_grid(backend, n_rows=n, k=k, dim=768).query) >= k, (backend, n, k)
        index = create(backend, "cosine", threads=1)  # not built: these floors need no index
        assert set_knobs_for_k(index, {knob: 10}, 30) == [f"{knob} 10->30 (at least k=30)"], backend
        assert index.query_params[knob] == 30
        index.set_query_params(**{knob: 10})
        assert index.effective_query_params(30)[knob] == 30, backend  # the backend widens it to k itself
    if "rabitq-ivf" in available_backends():
        index = create("rabitq-ivf", "cosine", threads=1, nlist=8)
        assert set_knobs_for_k(index, {"nprobe": 64}, 10) == ["nprobe 64->8 (as the library runs it)"]


def test_rules_evaluate_and_refuse(tmp_path):
    assert evaluate("=pow2(sqrt(n))", {"n": 24_833}) == 128
    assert evaluate("=clamp(n // 10, 1, 50)", {"n": 2000}) == 50
    assert evaluate("=192 if n > 20000 else 16", {"n": 20_000}) == 16
    for bad, needle in (("=n.bit_length()", "not allowed"), ("=m * 2", "uses 'm'"), ("=open('x')", "not allowed"),
                        ("=sqrt(n", "does not parse"), ("=n / 0", "fails")):
        with pytest.raises(UsageError, match=needle):
            evaluate(bad, {"n": 10})
    grid = tmp_path / "g.toml"
    grid.write_text('[[build]]\nnlist = "=pow2(sqrt(n))"\ntrain_size = "=min(n, 50 * nlist)"\n'
                    '[query]\nnprobe = ["=max(1, n // 5000)", 4, "=k", "=2 + 2"]\n')
    g = load_grid("faiss-ivfflat", grid, n_rows=10_000)
    assert g.build == [{"nlist": 128, "train_size": 6400}]
    assert [p["nprobe"] for p in g.query] == [2, 4, 10]  # equal points (4 and 2 + 2) kept once
    with pytest.raises(UsageError, match="database size"):
        load_grid("faiss-ivfflat", grid)
    # below about 3,000 rows sqrt(n) lists would hold fewer than faiss's 39 training rows each
    assert load_grid("faiss-ivfflat", n_rows=800).build == [{"nlist": 20, "train_size": 800}]
    assert load_grid("faiss-ivfflat", n_rows=30).build == [{"nlist": 1, "train_size": 30}]


# --- knobs aware of k ---------------------------------------------------------------------------------
def test_k30_sweep_reports_the_knobs_really_used(data, tmp_path):
    """ef below k is raised to k (and reported so); knobs a library clamps are reported clamped;
    points that become the same run are run once; every point writes its result file."""
    gold = _gold(data, 30)
    target = _target(data, Metric.COSINE)
    grids = {
        "hnswlib": (Grid("hnswlib", [{"M": 16, "ef_construction": 40}], [{"ef": e} for e in (10, 16, 24, 30, 64)]),
                    "ef", [30, 64]),
        "usearch-f32": (Grid("usearch-f32", [{"connectivity": 16, "expansion_add": 40}],
                             [{"expansion_search": e} for e in (10, 30, 64)]), "expansion_search", [30, 64]),
        "faiss-hnsw": (Grid("faiss-hnsw", [{"M": 16, "ef_construction": 40}], [{"ef_search": e} for e in (10, 24, 64)]),
                       "ef_search", [30, 64]),
        "faiss-hnswsq8": (Grid("faiss-hnswsq8", [{"M": 16, "ef_construction": 40}],
                               [{"ef_search": e, "k_factor": 2} for e in (10, 48, 64, 96)]), "ef_search", [60, 64, 96]),
        "faiss-ivfflat": (Grid("faiss-ivfflat", [{"nlist": 32, "train_size": N}], [{"nprobe": p} for p in (16, 32, 64)]),
                          "nprobe", [16, 32]),
        "scann": (Grid("scann", [{"num_leaves": 40, "training_sample": N}],
                       [{"leaves_to_search": s, "reorder": 10} for s in (20, 100)]), "leaves_to_search", [20, 40]),
    }
    for backend, (grid, knob, expected) in grids.items():
        if backend not in available_backends():
            continue
        records = sweep(backend, target, 30, tmp_path / backend, grid=grid, threads=1, use_cache=False,
                        gold_ids=gold, repeats=1)
        used = [r["query_params"][knob] for r in records]
        assert used == expected, backend
        for rec in records:
            assert rec["queries_short"] == 0 and rec["file"], (backend, rec["params"])
            assert f"{knob}={rec['query_params'][knob]}" in rec["params"]
            if backend == "scann":
                assert rec["query_params"]["reorder"] == 30
        first_change = {"hnswlib": "ef 10->30 (at least k=30)", "usearch-f32": "expansion_search 10->30 (at least k=30)",
                        "faiss-hnsw": "ef_search 10->30 (at least k=30)", "faiss-hnswsq8": "ef_search 10->60 (floor for k=30)",
                        "faiss-ivfflat": "", "scann": "reorder 10->30 (at least k=30)"}[backend]
        assert records[0]["knob_changes"] == first_change


@pytest.mark.parametrize("backend, knob", [("hnswlib", "ef"), ("usearch-f32", "expansion_search")])
def test_libraries_that_raise_ef_to_k_answer_as_reported(backend, knob, data):
    """What effective_query_params claims is what the library does: a search with the knob below k
    answers exactly as a search with the knob equal to k."""
    if backend not in available_backends():
        pytest.skip(f"{backend}: library not installed")
    db, q = data[Metric.COSINE]
    index = create(backend, "cosine", threads=1)
    index.build(db)
    index.set_query_params(**{knob: 10})
    assert index.effective_query_params(30)[knob] == 30
    low = index.search(q, 30)
    index.set_query_params(**{knob: 30})
    np.testing.assert_array_equal(index.search(q, 30).ids, low.ids)


def test_probes_for_k():
    from laionknn.indexes.base import probes_for_k

    assert probes_for_k([5, 1, 0, 20], 10) == 4  # 0 + 1 + 5 < 10 <= 0 + 1 + 5 + 20
    assert probes_for_k([10, 50], 10) == 1
    assert probes_for_k([9, 1, 100], 10) == 2
    assert probes_for_k([3, 3], 10) == 2  # fewer than k in the whole index: every list


def test_ivf_nprobe_is_raised_until_no_query_comes_back_short(data, tmp_path):
    """Many small lists and nprobe=1 used to return short rows (and no result file); the floor for
    k raises nprobe until the smallest lists together hold k vectors."""
    pytest.importorskip("faiss")
    grid = Grid("faiss-ivfflat", build=[{"nlist": 512, "train_size": N}], query=[{"nprobe": 1}, {"nprobe": 512}])
    records = sweep("faiss-ivfflat", _target(data, Metric.COSINE), 10, tmp_path, grid=grid, threads=1,
                    use_cache=False, repeats=1)
    low = records[0]
    assert low["query_params"]["nprobe"] > 1 and low["knob_changes"].startswith("nprobe 1->")
    assert all(r["queries_short"] == 0 and r["file"] for r in records)


def test_set_knobs_for_k_reads_back_from_the_library(data):
    pytest.importorskip("faiss")
    db, q = data[Metric.COSINE]
    index = create("faiss-hnsw", "cosine", threads=1, M=16, ef_construction=40)
    index.build(db)
    changes = set_knobs_for_k(index, {"ef_search": 10}, 30)
    assert changes == ["ef_search 10->30 (at least k=30)"]
    assert index._inner().hnsw.efSearch == 30 == index.query_params["ef_search"]
    assert (index.search(q, 30).ids >= 0).all()


# --- build records that say what was done ----------------------------------------------------------------
def test_ivf_seed_seeds_kmeans_and_train_size_is_what_was_trained(data):
    faiss = pytest.importorskip("faiss")
    db, _ = data[Metric.COSINE]

    def centroids(seed):
        index = create("faiss-ivfflat", "cosine", threads=1, nlist=16, train_size=100_000, seed=seed)
        index.build(db)
        assert index.build_params["train_size"] == N  # all 2,000 rows, not the 100,000 asked for
        ivf = faiss.extract_index_ivf(index.index)
        return ivf.quantizer.reconstruct_n(0, 16)

    np.testing.assert_array_equal(centroids(0), centroids(0))
    # the sample is every row whatever the seed, so only a seeded k-means can make these differ
    assert not np.array_equal(centroids(0), centroids(1))


def test_sweep_record_names_the_rules_that_chose_the_grid(data, tmp_path):
    pytest.importorskip("faiss")
    records = sweep("faiss-ivfflat", _target(data, Metric.COSINE), 10, tmp_path, threads=1, use_cache=False, repeats=1)
    assert records and all("nlist=max(1, min(pow2(sqrt(n)), n // 39))->32" in r["grid_rules"] for r in records)
    assert all("override max_rows=20000" in r["grid_rules"] for r in records)
    assert records[0]["build_params"]["train_size"] == N


# --- plain files ------------------------------------------------------------------------------------
def _plain_files(tmp_path, n, dim, nq, seed=5):
    from laionknn.io import write_vectors

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((30, dim))
    db, q = tmp_path / "my-vectors.h5", tmp_path / "my-queries.h5"
    write_vectors(db, _clustered(rng, n, centers), "emb", np.float16)
    write_vectors(q, _clustered(rng, nq, centers), "emb", np.float32)
    return db, q


def test_search_on_a_plain_file(tmp_path, capsys):
    pytest.importorskip("faiss")
    from evalhelpers import py_recall, run_cli
    from laionknn.io import read_result, read_vectors

    db, q = _plain_files(tmp_path, N, DIM, 30)
    out = tmp_path / "out"
    code, _, err = run_cli(["-q", "search", "--data", db, "--query-file", q, "--index", "faiss-ivfflat",
                            "--out", out, "--threads", "1", "--repeats", "1"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["query_params"]["nprobe"] for r in records] == [4, 8, 16]  # the <= 20K band
    a, b = read_vectors(db).astype(np.float64), read_vectors(q).astype(np.float64)
    sims = (b / np.linalg.norm(b, axis=1, keepdims=True)) @ (a / np.linalg.norm(a, axis=1, keepdims=True)).T
    gold = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    for r in records:
        assert r["dataset"] == "my-vectors" and r["size"] == "2K" and "nlist=max(1, min(pow2(sqrt(n)), n // 39))->32" in r["grid_rules"]
        res = read_result(r["file"], n_database=N, n_queries=30)
        assert r["recall"] == pytest.approx(py_recall(res.ids, gold, 10), abs=0.01)  # the computed gold is exact
    assert list(workspace.gold_dir().glob("gold-my-vectors--my-queries-k=100-*.h5"))
    code, _, err = run_cli(["-q", "search", "--data", db, "--index", "faiss-ivfflat"], capsys)
    assert code == 2 and "--queries FILE" in err
    # a catalog database with queries of one's own: searched with them, once their dimension matches
    code, _, err = run_cli(["-q", "search", "--data", "synthetic-clip768v2-n=2K", "--query-file", q,
                            "--index", "faiss-ivfflat"], capsys)
    assert code == 2 and "768 dimensions" in err


# the backends whose default build parameters are rules of n; the HNSW-graph backends (fixed build
# parameters, k-rules for ef, about 25 s of builds here) are covered by the k=30 test above and by the
# by-hand 25K run recorded in docs/indexes.md
SIZE_RULE_BACKENDS = ["exact", "faiss-flat", "faiss-ivfflat", "faiss-ivfsq8", "faiss-ivfpqfs", "scann"]


def test_default_grids_above_20k_rows_write_a_result_for_every_point(tmp_path):
    """The default (unbanded) grids with their size rules on a 21,000-row plain file (32-d, so it
    takes seconds): every grid point writes its result file, none comes back short."""
    from laionknn.indexes.mainjob import run_pipeline

    backends = [b for b in SIZE_RULE_BACKENDS if b in available_backends()]
    db, q = _plain_files(tmp_path, 21_000, 32, 50)
    outcome = run_pipeline(data=str(db), query_file=str(q), out_dir=tmp_path / "run", k=10, threads=2,
                           baselines=False, backends=backends)
    records = [json.loads(line) for line in (tmp_path / "run" / "runs.jsonl").read_text().splitlines()]
    assert {r["algo"] for r in records} == set(backends) and not outcome.failed
    for r in records:
        assert r["queries_short"] == 0 and r["file"], (r["algo"], r["params"])
    ivf = next(r for r in records if r["algo"] == "faiss-ivfflat")
    assert ivf["build_params"] == {"nlist": 128, "train_size": 20_000, "seed": 0}
    # nprobe is raised to the fewest lists that always hold k candidates: the grid from there on, once each
    for algo, grid in (("faiss-ivfflat", [1, 2, 4, 8, 16, 32, 64, 128]), ("faiss-ivfpqfs", [1, 2, 4, 8, 16, 32, 64, 128])):
        for k_factor in ((None,) if algo == "faiss-ivfflat" else (2, 4, 8, 16)):
            used = [r["query_params"]["nprobe"] for r in records if r["algo"] == algo
                    and r["query_params"].get("k_factor") == k_factor]
            assert used == [used[0]] + [g for g in grid if g > used[0]], (algo, k_factor, used)
    assert sum(r["algo"] == "scann" for r in records) == 14  # 7 leaves_to_search x 2 reorder
    scann = next(r for r in records if r["algo"] == "scann")
    assert scann["build_params"]["num_leaves"] == 145  # round(sqrt(21000))
    assert scann["build_params"]["training_sample"] == 21_000
    with open(outcome.eval_csv) as fh:
        assert sum(1 for _ in fh) - 1 == len(records)
