"""The runner (`laionknn search`), the main job (`laionknn run`), grids, and bad input.

Datasets are tiny files written here at the catalog's local paths (2,000 rows, 50 queries), so the
tests need neither the synthetic generator nor a download.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from laionknn import catalog
from laionknn.cli.main import main
from laionknn.errors import UsageError
from laionknn.indexes import available_backends, load_grid
from laionknn.indexes.registry import PEERS
from laionknn.io import read_gold, read_result, write_gold, write_vectors
from laionknn.types import KnnResult

DB = "synthetic-clip768v2-n=2K"
HAM = "synthetic-hammingv2-n=2K"
NQ = 50


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def tiny(home):
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((20, 768))
    db = _unit(centers[rng.integers(0, 20, 2000)] * 0.7 + rng.standard_normal((2000, 768)))
    q = _unit(centers[rng.integers(0, 20, NQ)] * 0.7 + rng.standard_normal((NQ, 768)))
    spec = catalog.dataset(DB, n_queries=NQ)
    write_vectors(catalog.local_path(spec.database), db, "emb", np.float16)
    write_vectors(catalog.local_path(spec.queries), q, "emb", np.float32)
    # the gold standard, by plain numpy (float64 cosine, ties to the lower id), top 100
    sims = _unit(q.astype(np.float32).astype(np.float64)) @ _unit(db.astype(np.float16).astype(np.float64)).T
    order = np.lexsort((np.broadcast_to(np.arange(2000), sims.shape), -sims), axis=1)[:, :100]
    write_gold(catalog.local_path(spec.gold), KnnResult(ids=order, dists=(1 - np.take_along_axis(sims, order, 1)).astype(np.float32)))
    ham = catalog.dataset(HAM, n_queries=NQ)
    write_vectors(catalog.local_path(ham.database), rng.integers(0, 2**63, (2000, 16), dtype=np.uint64), "hamming")
    write_vectors(catalog.local_path(ham.queries), rng.integers(0, 2**63, (NQ, 16), dtype=np.uint64), "hamming")
    return db.astype(np.float16).astype(np.float64), q.astype(np.float32).astype(np.float64)


def _records(out):
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


def test_search_writes_results_and_second_sweep_hits_cache(tiny, tmp_path):
    db, q = tiny
    out = tmp_path / "out"
    main(["search", "--database", DB, "--index", "hnswlib", "--n-queries", str(NQ), "--out", str(out), "--threads", "1"])
    first = _records(out)
    assert len(first) == len(load_grid("hnswlib", n_rows=2000).query)
    expected = np.argsort(-(_unit(q) @ _unit(db).T), axis=1)[:, :10]  # exact neighbours, by numpy
    for rec in first:
        assert not rec["cached"] and rec["threads"] == 1 and rec["index_bytes"] > 0 and rec["peak_rss_bytes"] > 0
        res = read_result(rec["file"], n_database=2000, n_queries=NQ)
        assert res.ids.shape == (NQ, 10)
        assert res.meta["algo"] == "hnswlib" and res.meta["data"] == "clip768v2" and res.meta["size"] == "2K"
        assert res.meta["params"] == rec["params"] and res.querytime == pytest.approx(rec["querytime"])
        hits = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids, expected)])
        assert hits >= 0.9 and rec["recall"] == pytest.approx(hits, abs=0.02)
    main(["search", "--database", DB, "--index", "hnswlib", "--n-queries", str(NQ), "--out", str(out), "--threads", "1"])
    second = _records(out)[len(first):]
    assert [r["cached"] for r in second] == [True] * len(first)
    assert [r["buildtime"] for r in second] == [r["buildtime"] for r in first]
    gold = read_gold(catalog.local_path(catalog.dataset(DB, n_queries=NQ).gold))
    assert gold.ids.shape[0] == NQ


def test_run_main_job_report_lists_every_backend(tiny, tmp_path):
    out = tmp_path / "run"
    from laionknn.indexes.mainjob import BRUTE_FORCE

    main(["run", "--database", DB, "--n-queries", str(NQ), "--out", str(out), "--quick", "--no-baselines"])
    rows = list(csv.DictReader(open(out / "evaluation.csv")))
    # brute force is swept only when named, the peer libraries only with --peers, second variants with --all
    from laionknn.indexes.registry import VARIANTS

    approximate = set(available_backends("cosine")) - set(BRUTE_FORCE) - set(PEERS) - set(VARIANTS)
    assert "hnswlib" in approximate and not VARIANTS & approximate
    assert {r["algo"] for r in rows} == approximate
    for r in rows:
        assert 0.0 <= float(r["recall"]) <= 1.0 and float(r["qps"]) > 0
    assert (out / "report.html").is_file() and list(out.glob("*.png"))
    md = (out / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table, "no Markdown table in the report"
    for backend in approximate:
        assert any(f" {backend} " in line for line in table), f"{backend} missing from the report"


@pytest.mark.parametrize("argv, needle", [
    (["--index", "no-such-index"], "known backends: exact, faiss-flat"),
    (["--index", "hnswlib", "--k", "5000"], "--k must be between 1 and 1000, got 5000"),
])
def test_search_bad_input_exits_2(tiny, tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(["search", "--database", DB, "--n-queries", str(NQ), "--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_hamming_data_to_float_backend_is_refused(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["search", "--database", HAM, "--n-queries", str(NQ), "--out", str(tmp_path), "--index", "hnswlib"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "hamming" in err and "faiss-binary-hnsw" in err


def test_grid_key_not_accepted(tiny, tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text("[[build]]\nM = 8\n[query]\nefs = [10, 20]\n")
    with pytest.raises(SystemExit) as exc:
        main(["search", "--database", DB, "--n-queries", str(NQ), "--out", str(tmp_path), "--index", "hnswlib",
              "--grid", str(grid)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "efs" in err and "accepted query keys: ef" in err


def test_grid_products_and_overrides(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(
        "repeats = 2\n[[build]]\nM = [8, 16]\nef_construction = 50\n[query]\nef = [10, 20, 40, 80, 160]\n"
        "[[override]]\nmatch = '*n=300K*'\nquery = { ef = [99] }\n"
        "[[override]]\nmax_rows = 1000\nbuild = [{ M = 4 }]\n")
    g = load_grid("hnswlib", grid, dataset="synthetic-clip768v2-n=100K", n_rows=100_000)
    assert g.build == [{"M": 8, "ef_construction": 50}, {"M": 16, "ef_construction": 50}]
    assert [p["ef"] for p in g.query] == [10, 20, 40, 80, 160] and g.repeats == 2
    assert [p["ef"] for p in g.quick().query] == [10, 40, 160] and len(g.quick().build) == 1
    g = load_grid("hnswlib", grid, dataset="synthetic-clip768v2-n=300K", n_rows=500)
    assert g.query == [{"ef": 99}] and g.build == [{"M": 4}]
    grid.write_text("[bulid]\nM = 3\n")
    with pytest.raises(UsageError, match="unknown section"):
        load_grid("hnswlib", grid)


def test_missing_library_marks_backend_unavailable(monkeypatch):
    from laionknn.indexes import registry

    monkeypatch.setitem(registry.BACKENDS, "ghost", ("laionknn.indexes.hnswlib_index:HnswlibIndex", "no_such_lib_xyz"))
    assert "ghost" not in registry.available_backends()
    assert "hnswlib" in registry.available_backends()
    with pytest.raises(UsageError, match="ghost.*unavailable.*no_such_lib_xyz"):
        registry.get_backend("ghost")


def test_point_with_missing_neighbours_is_recorded_without_a_result_file(tiny, tmp_path, monkeypatch):
    """IVF with many lists and nprobe=1 finds fewer than k candidates for some queries: the official
    format cannot say "missing", so the point is recorded (queries_short) and no file is written.
    (The IVF backends raise nprobe to a floor that prevents this; the floor is switched off here to
    stand for a backend that has none.)"""
    pytest.importorskip("faiss")
    from laionknn.indexes.datasets import open_target
    from laionknn.indexes.faiss_index import FaissIVFFlat
    from laionknn.indexes.grids import Grid
    from laionknn.indexes.runner import sweep

    monkeypatch.setattr(FaissIVFFlat, "knob_floors", lambda self, k: {})

    spec, target, database = open_target(DB, n_queries=NQ)
    try:
        grid = Grid("faiss-ivfflat", build=[{"nlist": 512, "train_size": 2000}], query=[{"nprobe": 1}, {"nprobe": 512}])
        records = sweep("faiss-ivfflat", target, 10, tmp_path, grid=grid, threads=1, use_cache=False)
    finally:
        database.close()
    low, full = records
    assert low["queries_short"] > 0 and low["file"] == ""
    assert full["queries_short"] == 0 and read_result(full["file"]).ids.shape == (NQ, 10)


def test_main_job_goes_on_when_one_backend_fails(tiny, tmp_path, monkeypatch):
    import laionknn.indexes.mainjob as mainjob

    real = mainjob.sweep

    def flaky(backend, *args, **kwargs):
        if backend == "hnswlib":
            raise RuntimeError("simulated library crash")
        return real(backend, *args, **kwargs)

    monkeypatch.setattr(mainjob, "sweep", flaky)
    outcome = mainjob.run_pipeline(data=DB, n_queries=NQ, out_dir=tmp_path / "run", quick=True, baselines=False)
    assert "hnswlib" in outcome.failed and "simulated library crash" in outcome.failed["hnswlib"]
    algos = {r["algo"] for r in csv.DictReader(open(outcome.eval_csv))}
    assert "hnswlib" not in algos and "faiss-ivfpqfs" in algos


class _CountingIndex:
    """Stands in for an index: counts searches and answers each with its own call number."""

    def __init__(self):
        self.calls = 0

    def search(self, queries, k):
        self.calls += 1
        return KnnResult(ids=np.full((len(queries), k), self.calls), dists=np.zeros((len(queries), k), np.float32))


def test_timed_search_with_and_without_warmup():
    from laionknn.indexes.runner import timed_search

    q = np.zeros((4, 3), np.float32)
    idx = _CountingIndex()
    res, times = timed_search(idx, q, 2, 3)
    assert idx.calls == 4 and len(times) == 3 and (res.ids == 1).all()   # the warm-up's answer
    idx = _CountingIndex()
    res, times = timed_search(idx, q, 2, 3, warmup=False)
    assert idx.calls == 3 and len(times) == 3 and (res.ids == 3).all()   # the last timed answer


def test_params_and_query_strings():
    from laionknn.indexes import create

    index = create("faiss-ivfflat", "cosine", nlist=8)
    index.set_query_params(nprobe=2)
    assert index.query_string() == "nprobe=2"
    assert index.params_string().endswith(",nprobe=2") and "nlist=8" in index.params_string()


def test_run_sweeps_brute_force_when_named_and_reuses_one_gold(tiny, tmp_path, home):
    out = tmp_path / "run"
    main(["run", "--database", DB, "--n-queries", str(NQ), "--out", str(out), "--quick", "--no-baselines",
          "--index", "exact", "--index", "hnswlib"])
    rows = list(csv.DictReader(open(out / "evaluation.csv")))
    assert {r["algo"] for r in rows} == {"exact", "hnswlib"}
    assert all(float(r["recall"]) == 1.0 for r in rows if r["algo"] == "exact")
    golds = sorted(p.name for p in home.rglob("*gold*.h5"))
    assert len(golds) == 1, golds  # the sweep and the evaluation used the same, single gold file
