"""The Python API (issue 18, part 2): the README's "Python API" block executed as written, and the
functions' contracts (shapes, dtypes, 0-based ids, ascending distances) against numpy computed here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import laionknn

ROOT = Path(__file__).resolve().parents[1]


def readme_api_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_readme_block_is_short_and_runs(tmp_path, monkeypatch, capsys):
    code = readme_api_block()
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    db, q = np.load(tmp_path / "my-db.npy"), np.load(tmp_path / "my-db.queries.npy")
    dn, qn = db / np.linalg.norm(db, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    want = np.argsort(-(qn.astype(np.float64) @ dn.T.astype(np.float64)), axis=1, kind="stable")[:, :10]
    truth = ns["truth"]
    assert truth.ids.dtype == np.int64 and truth.ids.shape == (100, 10)
    assert np.array_equal(truth.ids, want)  # 0-based row numbers of my-db.npy, nearest first
    assert np.all(np.diff(truth.dists, axis=1) >= 0)
    printed = float(capsys.readouterr().out.split("recall@10")[1])
    hits = sum(len(set(a) & set(b)) for a, b in zip(ns["found"].ids.tolist(), want.tolist()))
    assert printed == pytest.approx(hits / 1000, abs=5e-4)
    assert (tmp_path / "runs" / "runs.jsonl").is_file() and ns["paths"]["markdown"].is_file()
    assert "hnswlib" in ns["paths"]["markdown"].read_text()


def test_api_functions_on_a_file_with_given_gold(tmp_path, rng):
    import h5py

    db = rng.standard_normal((300, 8)).astype(np.float32)
    q = rng.standard_normal((12, 8)).astype(np.float32)
    d = ((q[:, None].astype(np.float64) - db[None]) ** 2).sum(-1)
    ids = np.argsort(d, axis=1, kind="stable")[:, :20]
    np.save(tmp_path / "v.npy", db)
    np.save(tmp_path / "q.npy", q)
    with h5py.File(tmp_path / "truth.h5", "w") as f:  # the official gold layout, 1-based on disk
        f["knns"], f["dists"] = (ids + 1).astype(np.int32), np.take_along_axis(d, ids, 1).astype(np.float32)
    with laionknn.open_dataset(tmp_path / "v.npy", tmp_path / "q.npy", tmp_path / "truth.h5", metric="l2") as ds:
        assert (ds.n, ds.dim, ds.queries.shape, ds.metric.value) == (300, 8, (12, 8), "l2")
        g = laionknn.gold(ds, k=5)
        assert np.array_equal(g.ids, ids[:, :5])  # converted to 0-based
        found = laionknn.search("exact", ds, k=5)
        assert np.array_equal(found.ids, ids[:, :5]) and found.dists.dtype == np.float32
        assert np.allclose(found.dists, np.take_along_axis(d, ids[:, :5], 1), rtol=1e-4)
        assert laionknn.recall(found.ids, g, 5) == 1.0
        partial = found.ids[:, :3].copy()
        partial[:, 1] = -1  # one of three answers missing in every row
        assert laionknn.recall(partial, g.ids, 3) == pytest.approx(2 / 3)
        records = laionknn.sweep("exact", ds, k=5, out=tmp_path / "out")
        assert [r["recall"] for r in records] == [1.0]
        rows = laionknn.evaluate(tmp_path / "out", ds, k=5, out=tmp_path / "e.csv")
        assert [(r["algo"], r["recall"]) for r in rows] == [("exact", 1.0)]
        assert (tmp_path / "e.csv").is_file()


def test_import_stays_light_and_help_names_the_api():
    code = ("import sys, laionknn; assert 'laionknn.api' not in sys.modules and 'numpy' not in sys.modules; "
            "f = laionknn.open_dataset; assert 'laionknn.api' in sys.modules; print(laionknn.__doc__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src")}).stdout
    for name in ("open_dataset", "gold", "search", "sweep", "evaluate", "report", "recall", "0-based"):
        assert name in out
    for fn in (laionknn.open_dataset, laionknn.gold, laionknn.search, laionknn.sweep, laionknn.evaluate,
               laionknn.report, laionknn.recall):
        assert fn.__doc__ and ("0-based" in fn.__doc__ or fn in (laionknn.evaluate, laionknn.report,
                                                                 laionknn.open_dataset)), fn
