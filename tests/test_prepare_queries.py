"""`prepare queries`: the 2023 and 2024 filters on data built to contain ties, near-duplicate
clusters and near-duplicate candidates, checked against an independent oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from laionknn.cli.main import main
from laionknn.errors import DataError, UsageError
from laionknn.io import read_gold, read_vectors, write_vectors
from laionknn.prepare.queries import select_queries


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Database: base vectors repeated 1-3 times (exact ties between ranks) plus a tight cluster of 12
    copies of c; source: random rows, near-duplicate groups, and rows sitting on the cluster."""
    rng = np.random.default_rng(2024)
    folder = tmp_path_factory.mktemp("q")
    base = unit(rng.standard_normal((900, 768)))
    reps = rng.integers(1, 4, len(base))
    c = unit(rng.standard_normal((1, 768)))
    cluster = unit(c + 0.002 * rng.standard_normal((12, 768)))
    db = np.concatenate([np.repeat(base, reps, axis=0), cluster]).astype(np.float16)
    # queries close to base vectors, so their neighbour lists start with the repeated copies
    anchors = base[rng.integers(0, len(base), 500)]
    near = unit(anchors + 0.9 * rng.standard_normal(anchors.shape) / np.sqrt(768))
    groups = unit(rng.standard_normal((40, 768)))
    dups = unit(np.repeat(groups, 4, axis=0) + 0.01 * rng.standard_normal((160, 768)))
    on_cluster = unit(c + 0.002 * rng.standard_normal((30, 768)))
    src = np.concatenate([near, dups, on_cluster, np.zeros((3, 768))]).astype(np.float16)
    src[-1, 0] = np.nan
    write_vectors(folder / "db.h5", db, "emb")
    np.save(folder / "part0.npy", src)
    return folder, db, src


def oracle(rule: str, rows: np.ndarray, src: np.ndarray, db: np.ndarray, eps=0.2, gap=1e-4, k=40):
    """Statuses of the examined candidates, from first principles (plain loops and float64 numpy)."""
    x = src[rows].astype(np.float64)
    q = np.zeros((len(rows), 768), dtype=np.float32)
    status = []
    for i, v in enumerate(x):
        norm = np.sqrt((v * v).sum()) if np.isfinite(v).all() else 0.0
        status.append("" if norm > 0 else "invalid")
        if norm > 0:
            q[i] = (v / norm).astype(np.float32)
    if rule == "2024":
        reps = []
        for i in range(len(rows)):
            if status[i]:
                continue
            qi = q[i].astype(np.float64)
            if any(1.0 - float(qi @ r) < eps for r in reps):
                status[i] = "near_duplicate"
            else:
                reps.append(qi)
    xb = db.astype(np.float64)
    if rule == "2023":
        xb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
    dists = {}
    for i in range(len(rows)):
        if status[i]:
            continue
        d = (1.0 - xb @ q[i].astype(np.float64)).astype(np.float32)
        top = np.lexsort((np.arange(len(d)), d))[:k]
        dists[i] = (top, d[top].astype(np.float64))
        dd = d[top].astype(np.float64)
        if rule == "2023":
            status[i] = "tie_10_11" if dd[9] == dd[10] else "top10_sum" if dd[:10].sum() <= 0.1 else ""
        else:
            status[i] = "gap_30_29" if dd[29] - dd[28] < gap else ""
    return status, q, dists


@pytest.mark.parametrize("rule", ["2023", "2024"])
def test_filters_match_oracle(data, tmp_path, rule):
    folder, db, src = data
    r = select_queries(folder / "part0.npy", folder / "db.h5", n=150, rule=rule, seed=5, out_dir=tmp_path, k=40)
    rows = r.examined_rows
    np.testing.assert_array_equal(rows, np.random.default_rng(5).permutation(len(src))[:len(rows)])
    status, q, dists = oracle(rule, rows, src, db)
    passed = [i for i, s in enumerate(status) if s == ""]
    assert len(passed) >= 150
    expect = [s or ("kept" if i in passed[:150] else "passed_unused") for i, s in enumerate(status)]
    assert r.statuses == expect
    # the data really exercises every filter
    removed = r.summary["removed"]
    for name in removed:
        if name != "invalid" or len(rows) == len(src):
            assert removed[name] == expect.count(name)
    if rule == "2023":
        assert removed["tie_10_11"] > 0 and removed["top10_sum"] > 0
    else:
        assert removed["near_duplicate"] > 0 and removed["gap_30_29"] > 0
    # query file: the kept candidates, normalised, float32; gold: their neighbours
    kept = passed[:150]
    queries = read_vectors(r.queries_path)
    assert queries.dtype == np.float32 and queries.shape == (150, 768)
    np.testing.assert_array_equal(queries, q[kept])
    assert r.summary["kept_source_rows"] == [int(rows[i]) for i in kept]
    gold = read_gold(r.gold_path, n_database=len(db), n_queries=150)
    assert gold.k == 40
    np.testing.assert_array_equal(gold.ids, np.stack([dists[i][0] for i in kept]))
    np.testing.assert_allclose(gold.dists, np.stack([dists[i][1] for i in kept]), rtol=0, atol=1e-7)
    if rule == "2024":
        g = queries.astype(np.float64) @ queries.astype(np.float64).T
        assert (1.0 - g[np.triu_indices(150, 1)]).min() >= 0.2
    summary = json.loads(r.summary_path.read_text())
    assert summary["kept"] == 150 and summary["candidates"] == len(rows)


def test_deterministic_and_seeded(data, tmp_path):
    folder, _, _ = data
    a = select_queries(folder / "part0.npy", folder / "db.h5", n=50, rule="2024", seed=1, out_dir=tmp_path / "a", k=30)
    b = select_queries(folder / "part0.npy", folder / "db.h5", n=50, rule="2024", seed=1, out_dir=tmp_path / "b", k=30)
    c = select_queries(folder / "part0.npy", folder / "db.h5", n=50, rule="2024", seed=2, out_dir=tmp_path / "c", k=30)
    np.testing.assert_array_equal(read_vectors(a.queries_path), read_vectors(b.queries_path))
    assert a.summary["kept_source_rows"] != c.summary["kept_source_rows"]


def test_oversampling_draws_more_batches(data, tmp_path):
    folder, _, src = data
    r = select_queries(folder / "part0.npy", folder / "db.h5", n=200, rule="2024", seed=0, out_dir=tmp_path,
                       k=30, oversample=1.0)
    assert r.summary["kept"] == 200 and r.summary["batches"] >= 2
    assert r.summary["candidates"] == len(r.statuses) <= len(src)


def test_npz_and_h5_sources_agree(data, tmp_path):
    folder, _, src = data
    np.savez(folder / "part0b.npz", src)
    write_vectors(folder / "part0c.h5", src, "emb")
    paths = [folder / "part0.npy", folder / "part0b.npz", folder / "part0c.h5"]
    got = [read_vectors(select_queries(p, folder / "db.h5", n=40, rule="2023", seed=3, out_dir=tmp_path / p.suffix[1:],
                                       k=11).queries_path) for p in paths]
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_array_equal(got[0], got[2])


def test_errors(data, tmp_path, capsys):
    folder, _, src = data
    with pytest.raises(UsageError, match="same file"):
        select_queries(folder / "db.h5", folder / "db.h5", n=10, rule="2023", out_dir=tmp_path)
    with pytest.raises(DataError, match="only .* pass the 2024 filters"):
        select_queries(folder / "part0.npy", folder / "db.h5", n=len(src), rule="2024", out_dir=tmp_path, k=30)
    write_vectors(tmp_path / "tiny.h5", src[:20].astype(np.float16), "emb")
    with pytest.raises(UsageError, match="needs 30 neighbours"):
        select_queries(folder / "part0.npy", tmp_path / "tiny.h5", n=5, rule="2024", out_dir=tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "queries", "--source", str(tmp_path / "nope.npy"), "--database", str(folder / "db.h5"),
              "--rule", "2023", "--n", "5"])
    assert exc.value.code == 2 and "neither an existing file nor a catalog name" in capsys.readouterr().err


def test_cli_prints_summary(data, tmp_path, capsys):
    folder, _, _ = data
    main(["prepare", "queries", "--source", str(folder / "part0.npy"), "--database", str(folder / "db.h5"),
          "--n", "20", "--rule", "2023", "--seed", "4", "--k", "11", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "removed: tie_10_11" in out and "kept" in out
    assert (tmp_path / "laionknn-queries-rule=2023-n=20-seed=4-clip768v2.summary.json").exists()
