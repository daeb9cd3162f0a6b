"""Audit part 10: laionknn reads what it writes (gold on its own 128-bit sketches and pca64 files),
re-running a sweep after a kill leaves one run record per point, not two, and `eval` scores only the
result files that `results check` accepts (one verdict, one line, exit 2; skipped under --skip-bad)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hardeninghelpers import cli
from laionknn.io import read_gold, write_vectors
from laionknn.results import read_run_records, replace_run_records
from laionknn.types import Metric


@pytest.fixture
def clip(tmp_path):
    rng = np.random.default_rng(5)
    db = write_vectors(tmp_path / "laion2B-en-clip768v2-n=1000.h5", rng.standard_normal((1000, 768)).astype(np.float16), "emb")
    q = write_vectors(tmp_path / "public-queries-clip768v2-n=12.h5", rng.standard_normal((12, 768)).astype(np.float32), "emb")
    return db, q


def _project_then_gold(clip, tmp_path, capsys, project: list, gold: list) -> tuple:
    """Project both files with ``laionknn project ...``, then ``laionknn gold`` on the outputs;
    returns (database file, query file, gold file)."""
    db, q = clip
    out = tmp_path / "proj"
    code, _, err = cli(["--quiet", "project", *project, "--fit-on", db, "--apply", db, "--apply", q, "--out", out], capsys)
    assert code == 0, err
    pdb, pq = sorted(out.glob("laion2B*.h5"))[0], sorted(out.glob("public-queries*.h5"))[0]
    path = tmp_path / "gold.h5"
    code, _, err = cli(["--quiet", "gold", "--database", pdb, "--queries", pq, *gold, "--out", path], capsys)
    assert code == 0, err
    return pdb, pq, path


def test_gold_reads_our_own_128_bit_sketches(clip, tmp_path, capsys):
    # was: "expected dimension 16"
    sdb, sq, gold = _project_then_gold(clip, tmp_path, capsys, ["sketch", "--bits", "128"],
                                       ["--metric", "hamming", "--k", "5"])
    import h5py

    with h5py.File(sdb) as f, h5py.File(sq) as g:
        xb, xq = f["hamming"][()], g["hamming"][()]
    assert xb.shape == (1000, 2) and xb.dtype == np.uint64
    bits = np.unpackbits(xb.view(np.uint8), axis=1).astype(np.int64)
    qbits = np.unpackbits(xq.view(np.uint8), axis=1).astype(np.int64)
    dist = (qbits[:, None, :] != bits[None, :, :]).sum(axis=2)  # numpy oracle: Hamming bit counts
    res = read_gold(gold)
    np.testing.assert_array_equal(np.take_along_axis(dist, res.ids, 1), res.dists.astype(np.int64))
    np.testing.assert_array_equal(res.dists, np.sort(dist, axis=1)[:, :5])


def test_gold_reads_our_own_pca64_files(clip, tmp_path, capsys):
    # was: "none of the official vector keys ... pass the key explicitly"
    pdb, pq, gold = _project_then_gold(clip, tmp_path, capsys, ["pca", "--dims", "64"], ["--metric", "l2", "--k", "7"])
    import h5py

    with h5py.File(pdb) as f, h5py.File(pq) as g:
        assert list(f) == ["pca64"] and f["pca64"].shape == (1000, 64)
        xb, xq = f["pca64"][()].astype(np.float64), g["pca64"][()].astype(np.float64)
    d = ((xq[:, None, :] - xb[None, :, :]) ** 2).sum(axis=2)
    expect = np.lexsort((np.broadcast_to(np.arange(1000), d.shape), d), axis=1)[:, :7]
    np.testing.assert_array_equal(read_gold(gold).ids, expect)


def test_ambiguous_vector_keys_do_not_point_to_a_missing_option(tmp_path):
    import h5py

    from laionknn.errors import FormatError
    from laionknn.io import VectorFile

    p = tmp_path / "two.h5"
    with h5py.File(p, "w") as f:
        f["pca32"] = np.zeros((3, 32), np.float32)
        f["pca64"] = np.zeros((3, 64), np.float32)
    with pytest.raises(FormatError, match="keep one vector dataset per file") as exc:
        VectorFile(p)
    assert "explicitly" not in str(exc.value)
    with VectorFile(p, key="pca64") as vf:
        assert vf.dim == 64


def test_rerun_of_the_main_jobs_sweep_replaces_its_records(tmp_path, home):
    from laionknn.indexes.runner import SweepTarget, sweep

    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    target = SweepTarget(database=x, queries=x[:10], metric=Metric.L2, data="pca32v2", size="300", dataset="t")
    first = sweep("exact", target, 5, tmp_path, threads=1, repeats=1, replace_records=True)
    runs = tmp_path / "runs.jsonl"
    assert len(read_run_records(runs)) == len(first) >= 1
    second = sweep("exact", target, 5, tmp_path, threads=1, repeats=1, replace_records=True)  # rerun after a kill
    records = read_run_records(runs)
    assert len(records) == len(second)  # was 2x
    assert [r["querytimes"] for r in records] == [r["querytimes"] for r in json.loads(json.dumps(second))]
    sweep("exact", target, 3, tmp_path, threads=1, repeats=1, replace_records=True)  # another k: another point
    assert len(read_run_records(runs)) == 2 * len(second)
    sweep("exact", target, 3, tmp_path, threads=1, repeats=1)  # `laionknn search` adds a measurement
    assert len(read_run_records(runs)) == 3 * len(second)


def test_main_job_asks_for_replacement(monkeypatch):
    from laionknn.indexes import mainjob

    seen = {}

    class Stop(Exception):
        pass

    def fake_sweep(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(mainjob, "sweep", fake_sweep)
    monkeypatch.setattr(mainjob, "gold_for", lambda spec, *a, **kw: (None, type("G", (), {"ids": None})()))
    with pytest.raises(Stop):
        mainjob.run_pipeline(size="1K", n_queries=10, backends=["exact"], baselines=False)
    assert seen.get("replace_records") is True


@pytest.mark.parametrize("name", ["runs.jsonl", "runs.csv"])
def test_replace_run_records_keeps_other_points(tmp_path, name):
    path = tmp_path / name
    base = {"dataset": "d", "data": "clip768v2", "size": "1K", "algo": "a", "k": 10, "threads": 1, "n_queries": 5}
    replace_run_records(path, [{**base, "params": "x=1", "qps": 1.0}, {**base, "params": "x=2", "qps": 2.0}])
    replace_run_records(path, [{**base, "params": "x=2", "qps": 3.0}])
    got = sorted((r["params"], r["qps"]) for r in read_run_records(path))
    assert got == [("x=1", 1.0), ("x=2", 3.0)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# part 10: `eval` scores only what `results check` accepts -------------------------------------------

def _raw_result(path, knns, dists, **meta):
    """A result file written as anyone could (no checks on the way): 1-based ``knns`` as given."""
    from evalhelpers import write_raw_result

    return write_raw_result(path, knns.astype(np.int32), dists.astype(np.float32),
                            {"algo": "a", "data": "clip768v2", "size": "1K", "buildtime": 1.0, "querytime": 1.0,
                             "params": "p", **meta})


def _check_rejects(path, capsys) -> str:
    code, out, _ = cli(["--quiet", "results", "check", path], capsys)
    assert code == 1, out
    return out


REJECTED = {
    # what `results check` says (and eval must say too) -> how the file is spoiled
    "repeats an id": lambda ids, d: (np.concatenate([ids[:, :1], ids[:, :-1]], axis=1), d, {}),
    "dists contains NaN": lambda ids, d: (ids, np.where(np.arange(d.shape[0])[:, None] == 3, np.nan, d), {}),
    "dists not sorted": lambda ids, d: (ids, np.concatenate([d[:1, ::-1], d[1:]]), {}),
    "querytime is 0.0": lambda ids, d: (ids, d, {"querytime": 0.0}),
    "buildtime is -1.0": lambda ids, d: (ids, d, {"buildtime": -1.0}),
}


@pytest.mark.parametrize("problem", list(REJECTED))
def test_eval_refuses_what_results_check_rejects(problem, tmp_path, capsys, caplog, home):
    from hardeninghelpers import assert_clean_error
    from laionknn.evaluation import evaluate
    from laionknn.io import write_gold
    from laionknn.types import KnnResult

    rng = np.random.default_rng(3)
    n, k = 12, 10
    gold_ids = np.stack([rng.choice(1000, 20, replace=False) for _ in range(n)]).astype(np.int64)
    gold_d = np.sort(rng.random((n, 20)), axis=1).astype(np.float32)
    gold = write_gold(tmp_path / "laion2B-en-public-gold-standard-v2-1K.h5", KnnResult(gold_ids, gold_d))
    good = _raw_result(tmp_path / "res" / "good.h5", gold_ids[:, :k] + 1, gold_d[:, :k])
    knns, dists, meta = REJECTED[problem](gold_ids[:, :k] + 1, gold_d[:, :k])
    bad = _raw_result(tmp_path / "res" / "bad.h5", knns, dists, **meta)

    assert problem in _check_rejects(bad, capsys)
    assert f"{good}: ok" in cli(["results", "check", good], capsys)[1]
    # eval: the same verdict, one line, exit 2 (was: scored, recall and all)
    code, out, err = cli(["--quiet", "eval", "--results", bad, "--gold", gold], capsys)
    line = assert_clean_error(code, err, str(bad), problem, "results check")
    assert not out
    # a folder with both: refused as a whole, or the good file alone with --skip-bad and a warning
    code, _, err = cli(["--quiet", "eval", "--results", tmp_path / "res", "--gold", gold], capsys)
    assert assert_clean_error(code, err, problem) == line
    caplog.clear()
    code, out, err = cli(["--quiet", "eval", "--results", tmp_path / "res", "--gold", gold, "--skip-bad"], capsys)
    assert code == 0, err
    assert [r.split(",")[-2] for r in out.strip().splitlines()[1:]] == [str(good)]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"skipped {bad}: ") and problem in warning and "\n" not in warning
    rows = evaluate([tmp_path / "res"], gold, skip_bad=True)
    assert [r["file"] for r in rows] == [str(good)] and rows[0]["recall"] == 1.0
