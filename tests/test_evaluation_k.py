"""`laionknn eval` takes k from --k, else from the result files when they all agree; it never guesses."""

from __future__ import annotations

import csv
import io

import numpy as np

from laionknn.io import write_gold, write_result
from laionknn.types import KnnResult

from evalhelpers import py_recall, run_cli

NQ, NDB = 40, 3000
GOLD_NAME = "gold-laionknn-k=100.h5"  # a laionknn gold file: no challenge year in its name


def _setup(tmp_path, rng, widths):
    gold = np.stack([rng.choice(2000, 100, replace=False) for _ in range(NQ)]).astype(np.int64)
    write_gold(tmp_path / GOLD_NAME, KnnResult(gold, np.sort(rng.random((NQ, 100)), axis=1).astype(np.float32)))
    results = {}
    for i, w in enumerate(widths):
        ids = gold[:, :w].copy()
        noise = rng.random(ids.shape) < 0.3  # misses: ids 2000 + column, never in the gold, distinct in a row
        ids[noise] = (2000 + np.broadcast_to(np.arange(w), ids.shape))[noise]
        path = tmp_path / "res" / f"run{i}-k{w}.h5"
        write_result(path, ids, np.sort(rng.random(ids.shape), axis=1).astype(np.float32), algo="a", data="clip768v2",
                     size="3000", buildtime=1.0, querytime=0.5, params=f"run={i}")
        results[path] = ids
    return gold, results


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_k_is_inferred_from_result_files_that_agree(tmp_path, rng, capsys):
    gold, results = _setup(tmp_path, rng, [30, 30])
    code, out, err = run_cli(["-q", "eval", "--results", tmp_path / "res", "--gold", tmp_path / GOLD_NAME], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert [r["k"] for r in rows] == ["30", "30"]  # not 10 (a default) nor 100 (the gold's width)
    for r in rows:
        ids = results[next(p for p in results if str(p) == r["file"])]
        assert float(r["recall"]) == py_recall(ids, gold, 30)


def test_k_from_the_files_beats_the_gold_year(tmp_path, rng, capsys):
    gold, results = _setup(tmp_path, rng, [30])
    (tmp_path / GOLD_NAME).rename(tmp_path / "laion2B-en-public-gold-standard-v2-100K.h5")  # a 2023 (k=10) name
    code, out, _ = run_cli(["-q", "eval", "--results", tmp_path / "res", "--gold",
                            tmp_path / "laion2B-en-public-gold-standard-v2-100K.h5"], capsys)
    assert code == 0 and _rows(out)[0]["k"] == "30"


def test_files_that_disagree_are_refused_unless_k_is_given(tmp_path, rng, capsys):
    gold, results = _setup(tmp_path, rng, [10, 30])
    code, out, err = run_cli(["-q", "eval", "--results", tmp_path / "res", "--gold", tmp_path / GOLD_NAME], capsys)
    assert code == 2 and out == ""
    assert "cannot tell k" in err and "10 columns in 1 file(s)" in err and "30 columns in 1 file(s)" in err
    assert "pass --k" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(["-q", "eval", "--results", tmp_path / "res", "--gold", tmp_path / GOLD_NAME,
                              "--k", "10"], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert [r["k"] for r in rows] == ["10", "10"]
    for r in rows:  # the 30-column file is scored on its first 10 columns
        ids = results[next(p for p in results if str(p) == r["file"])]
        assert float(r["recall"]) == py_recall(ids[:, :10], gold, 10)


def test_files_wider_than_the_gold_are_refused(tmp_path, rng, capsys):
    _setup(tmp_path, rng, [])
    ids = np.tile(np.arange(150), (NQ, 1))
    write_result(tmp_path / "wide" / "w.h5", ids, np.zeros(ids.shape, np.float32), algo="a", data="clip768v2",
                 size="3000", buildtime=1, querytime=1, params="")
    code, _, err = run_cli(["-q", "eval", "--results", tmp_path / "wide", "--gold", tmp_path / GOLD_NAME], capsys)
    assert code == 2 and "hold 150 neighbours per query but the gold standard has only 100 columns" in err
    code, out, _ = run_cli(["-q", "eval", "--results", tmp_path / "wide", "--gold", tmp_path / GOLD_NAME,
                            "--k", "100"], capsys)
    assert code == 0 and _rows(out)[0]["k"] == "100"
