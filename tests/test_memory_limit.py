"""Memory-capped sweeps (laionknn.indexes.memlimit): a greedy backend exceeds its limit, the sweep goes
on and the record says what happened; the 2024 task presets; `search`/`run --memory-limit/--task` and
`search --dask` on the command line, with one-line errors for bad input."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from greedy_backend import ENTRY
from laionknn import exact
from laionknn.cli.main import main
from laionknn.errors import UsageError
from laionknn.indexes import memlimit, registry
from laionknn.indexes.grids import Grid
from laionknn.indexes.runner import SweepTarget, sweep
from laionknn.io import VectorFile, read_result, write_vectors
from laionknn.types import Metric
from test_indexes_runner import DB, NQ, tiny  # noqa: F401 -- the tiny catalog dataset fixture

MB = 2**20


def _run(args):
    try:
        main(args)
    except SystemExit as e:
        return e.code
    return 0


@pytest.fixture
def greedy(monkeypatch):
    monkeypatch.setitem(registry.BACKENDS, "greedy", ENTRY)


def test_greedy_backend_exceeds_its_limit_and_the_sweep_goes_on(home, tmp_path, greedy):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1500, 32)).astype(np.float16)
    q = rng.standard_normal((12, 32)).astype(np.float32)
    path = write_vectors(tmp_path / "db.h5", x, "emb")
    grid = Grid("greedy", [{"waste_mb": 400}, {"waste_mb": 0}, {"waste_mb": 1}],
                [{"search_waste_mb": 0}, {"search_waste_mb": 300}])
    out = tmp_path / "out"
    with VectorFile(path) as db:
        target = SweepTarget(db, q, Metric.COSINE, "clip768v2", "1500", "tiny")
        recs = sweep("greedy", target, 5, out, grid=grid, memory_limit=64 * MB, threads=1)
    # build 1 exceeded at build; builds 2 and 3: their first point fits, the second exceeds at search
    assert [r["outcome"] for r in recs] == ["exceeded", "ok", "exceeded", "ok", "exceeded"]
    assert [r["outcome_detail"] for r in recs] == ["exceeded 64.0 MB at build", "", "exceeded 64.0 MB at search",
                                                   "", "exceeded 64.0 MB at search"]
    assert recs[0]["params"] == "waste_mb=400" and recs[0]["file"] == "" and recs[0]["qps"] is None
    assert all(r["memory_limit_bytes"] == 64 * MB and r["memory_peak_bytes"] > 0 for r in recs)
    assert all(r["memory_enforcement"] in ("cgroup", "rlimit") for r in recs)
    on_disk = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["outcome_detail"] for r in on_disk] == [r["outcome_detail"] for r in recs]
    for ok in (recs[1], recs[3]):
        assert ok["memory_peak_bytes"] >= ok["memory_baseline_bytes"] > 0 and ok["task"] == ""
        res = read_result(ok["file"], n_database=1500, n_queries=12)
        np.testing.assert_array_equal(res.ids, exact.knn(x, q, 5, "cosine").ids)


def test_capped_sweep_keeps_the_grid_rules_and_the_knobs_as_run(home, tmp_path):
    """The child runs the merged runner on the grid loaded in the parent: every record names the size
    band and rules of its build configuration, and build parameters as really used."""
    pytest.importorskip("faiss")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1500, 32)).astype(np.float16)
    q = rng.standard_normal((12, 32)).astype(np.float32)
    path = write_vectors(tmp_path / "db.h5", x, "emb")
    with VectorFile(path) as db:
        target = SweepTarget(db, q, Metric.COSINE, "clip768v2", "1500", "tiny")
        recs = sweep("faiss-ivfflat", target, 5, tmp_path / "out", memory_limit=512 * MB, threads=1, use_cache=False)
    assert [r["outcome"] for r in recs] == ["ok"] * len(recs) and len(recs) == 3  # nprobe 4, 8, 16
    for r in recs:
        assert r["grid_rules"].startswith("override max_rows=20000; nlist=max(1, min(pow2(sqrt(n)), n // 39))->32")
        assert r["build_params"] == {"nlist": 32, "train_size": 1500, "seed": 0}
        assert "knob_changes" in r and r["library"] and r["file"]


def test_task_presets_and_limit_checks():
    assert memlimit.task_limit("2024-2", 100_000_000) == 32 * 1024**3
    assert memlimit.task_limit("2024-3", 1_000_000) == 64 * 1024**3 // 100
    for ok in ("faiss-ivfsq8", "usearch-i8"):
        memlimit.check_task_backend("2024-3", ok)
    for needs_originals in ("exact", "hnswlib", "faiss-ivfflat", "faiss-ivfpqfs", "faiss-hnswsq8"):
        memlimit.check_task_backend("2024-2", needs_originals)  # task 2 may read them from disk
        with pytest.raises(UsageError, match="no original vectors"):
            memlimit.check_task_backend("2024-3", needs_originals)
    assert memlimit.task_backends("2024-3", ["exact", "faiss-ivfsq8", "hnswlib"]) == ["faiss-ivfsq8"]
    # hnswlib M=16 on 1000 x 768: at least 1000 * (768 * 4 + 128 + 8) bytes
    memlimit.check_limit("hnswlib", 4 * MB, 1000, 768, [{"M": 16}], "d")
    with pytest.raises(UsageError, match=r"below the smallest index hnswlib can build on d .*at least 3\.1 MB"):
        memlimit.check_limit("hnswlib", 3 * MB, 1000, 768, [{"M": 16}, {"M": 32}], "d")
    assert memlimit.fmt_bytes(3.2 * 1024**3) == "3.2 GB"


def test_cli_memory_capped_search_and_run(tiny, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    assert _run(["--quiet", "search", "--database", DB, "--index", "faiss-ivfsq8", "--n-queries", str(NQ), "--out", str(out),
                 "--task", "2024-3", "--memory-limit", "256M", "--quick", "--threads", "1"]) == 0
    recs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert recs and all(r["outcome"] == "ok" and r["task"] == "2024-3" and r["k"] == 30 for r in recs)
    assert all(r["memory_limit_bytes"] == 256 * MB and r["file"] for r in recs)
    run_out = tmp_path / "run"
    assert _run(["--quiet", "run", "--database", DB, "--n-queries", str(NQ), "--out", str(run_out), "--index", "usearch-i8",
                 "--task", "2024-3", "--memory-limit", "256M", "--quick", "--no-baselines", "--threads", "1"]) == 0
    recs = [json.loads(line) for line in (run_out / "runs.jsonl").read_text().splitlines()]
    assert {r["algo"] for r in recs} == {"usearch-i8"} and all(r["outcome"] == "ok" for r in recs)
    assert (run_out / "evaluation.csv").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra,expected", [
    (["--index", "hnswlib", "--memory-limit", "1K"], "below the smallest index hnswlib can build"),
    (["--index", "hnswlib", "--task", "2024-3"], "allows no original vectors at search time"),
    (["--index", "faiss-ivfsq8", "--task", "2024-2"], "below the smallest index"),  # 32G per 100M = 687 KB here
    (["--index", "exact", "--dask", "--shards", "2001"], "--shards 2001: the database"),
    (["--index", "faiss-ivfflat", "--route", "routed"], "add --dask"),
    (["--index", "hnswlib", "--dask", "--route", "routed"], "needs an IVF backend"),
    (["--index", "hnswlib", "--dask", "--memory-limit", "1G"], "cannot be combined with --dask"),
    (["--index", "exact", "--scheduler", "SCHED"], "cannot reach a Dask scheduler at tcp://127.0.0.1:"),
])
def test_cli_bad_input_is_one_line_exit_2(tiny, tmp_path, capsys, extra, expected):  # noqa: F811
    import dask

    extra = [f"tcp://127.0.0.1:{_free_port()}" if e == "SCHED" else e for e in extra]
    with dask.config.set({"laionknn.connect-timeout": "2s"}):
        code = _run(["--quiet", "search", "--database", DB, "--n-queries", str(NQ), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_cli_search_dask_writes_the_local_outputs(tiny, tmp_path):  # noqa: F811
    db, q = tiny
    out = tmp_path / "out"
    assert _run(["--quiet", "search", "--database", DB, "--index", "exact", "--n-queries", str(NQ), "--out", str(out),
                 "--dask", "--workers", "2", "--shards", "3", "--k", "10"]) == 0
    (rec,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert rec["engine"] == "dask" and rec["shards"] == 3 and rec["workers"] == 2 and rec["layout"] == "rows"
    assert len(rec["shard_buildtimes"]) == 3 and len(rec["shard_searchtimes"]) == 3  # lists, not JSON text
    assert rec["shard_rows"] == [667, 667, 666] and rec["merge_seconds"] >= 0
    assert rec["params"] == "shards=3" and rec["shard_pairs"] == 3 * NQ and rec["recall"] == 1.0
    res = read_result(rec["file"], n_database=2000, n_queries=NQ)
    with VectorFile(_db_path()) as vf:
        local = exact.knn(vf, q.astype(np.float32), 10, "cosine")
    np.testing.assert_array_equal(res.ids, local.ids)
    assert res.meta["algo"] == "exact"


def _db_path():
    from laionknn import catalog

    return catalog.local_path(catalog.dataset(DB, n_queries=NQ).database)


def test_a_rerun_of_a_capped_main_job_sweep_replaces_its_records(home, tmp_path, greedy):
    """replace_records (what `laionknn run` passes) also holds for memory-capped sweeps: the child only
    reports, the parent replaces the points it measured again, and a plain sweep still appends."""
    rng = np.random.default_rng(5)
    path = write_vectors(tmp_path / "db.h5", rng.standard_normal((600, 16)).astype(np.float16), "emb")
    q = rng.standard_normal((6, 16)).astype(np.float32)
    grid = Grid("greedy", [{"waste_mb": 0}], [{"search_waste_mb": 0}, {"search_waste_mb": 1}])
    out = tmp_path / "out"
    with VectorFile(path) as db:
        target = SweepTarget(db, q, Metric.COSINE, "clip768v2", "600", "tiny")
        for _ in range(2):
            recs = sweep("greedy", target, 5, out, grid=grid, memory_limit="256M", threads=1, replace_records=True)
        assert [r["outcome"] for r in recs] == ["ok", "ok"]
        on_disk = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
        assert sorted(r["params"] for r in on_disk) == sorted(r["params"] for r in recs)  # one record per point
        sweep("greedy", target, 5, out, grid=grid, memory_limit=256 * MB, threads=1)
    assert len((out / "runs.jsonl").read_text().splitlines()) == 4  # a sweep of its own adds a measurement
