"""`prepare queries`: the 2023 and 2024 filters on data built to contain ties, near-duplicate
clusters and near-duplicate candidates, checked against an independent oracle."""

from __future__ import annotations

import json
import math

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


def oracle_dists(q: np.ndarray, xb: np.ndarray, metric: str) -> np.ndarray:
    """float64 distances of float32 query ``q`` to every row of float64 ``xb``, by the definition:
    ``1 - q.x`` (dot) or ``1 - q.x / (|q| |x|)`` (cosine)."""
    q64 = q.astype(np.float64)
    dot = xb @ q64
    if metric == "cosine":
        return 1.0 - dot / (np.sqrt(q64 @ q64) * np.sqrt((xb * xb).sum(axis=1)))
    return 1.0 - dot


def oracle_queries(src_rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """float32 L2-normalised rows (float64 arithmetic) and "" / "invalid" per row."""
    x = src_rows.astype(np.float64)
    q = np.zeros((len(x), x.shape[1]), dtype=np.float32)
    status = []
    for i, v in enumerate(x):
        norm = np.sqrt((v * v).sum()) if np.isfinite(v).all() else 0.0
        status.append("" if norm > 0 else "invalid")
        if norm > 0:
            q[i] = (v / norm).astype(np.float32)
    return q, status


def oracle(rule: str, rows: np.ndarray, src: np.ndarray, db: np.ndarray, eps=0.2, gap=1e-4, k=40):
    """Statuses of the examined candidates, from first principles (plain loops and float64 numpy):
    the filters judge the float64 distances (ranks by (distance, id)), not their float32 roundings."""
    q, status = oracle_queries(src[rows])
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
    metric = "cosine" if rule == "2023" else "dot"
    dists = {}
    for i in range(len(rows)):
        if status[i]:
            continue
        d = oracle_dists(q[i], xb, metric)
        top = np.lexsort((np.arange(len(d)), d))[:k]
        dd = d[top]
        dists[i] = (top, dd)
        if rule == "2023":
            status[i] = "tie_10_11" if dd[9] == dd[10] else "top10_sum" if math.fsum(dd[:10]) <= 0.1 else ""
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
    np.testing.assert_allclose(gold.dists, np.stack([dists[i][1] for i in kept]).astype(np.float32), rtol=0,
                               atol=1e-7)
    if rule == "2024":
        g = queries.astype(np.float64) @ queries.astype(np.float64).T
        assert (1.0 - g[np.triu_indices(150, 1)]).min() >= 0.2
    summary = json.loads(r.summary_path.read_text())
    assert summary["kept"] == 150 and summary["candidates"] == len(rows)


@pytest.mark.parametrize("k", [20, 40])
def test_gold_records_ties_at_k(data, tmp_path, k):
    """The gold file flags the queries whose ranks k and k + 1 tie in float64 (the database repeats
    rows, so both values occur), whether k is the search depth (40) or shallower than the rule's (30)."""
    import h5py

    folder, db, src = data
    r = select_queries(folder / "part0.npy", folder / "db.h5", n=60, rule="2024", seed=3, out_dir=tmp_path, k=k)
    _, _, dists = oracle("2024", r.examined_rows, src, db, k=max(k, 30) + 1)
    kept = [i for i, st in enumerate(r.statuses) if st == "kept"]
    expect = np.array([dists[i][1][k - 1] == dists[i][1][k] for i in kept], dtype=np.uint8)
    assert 0 < expect.sum() < len(expect)
    with h5py.File(r.gold_path, "r") as f:
        np.testing.assert_array_equal(f["tie_at_k"][()], expect)
        assert f.attrs["n_tie_at_k"] == expect.sum() and f.attrs["k"] == k


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


# ---- near-ties that float32 and float64 judge differently -------------------------------------------
# Float16 database rows are tuned one coordinate at a time so that a distance lands within a few 1e-9
# of a threshold; every property the test relies on is then checked on the finished rows with the
# float64 definition (oracle_dists), and the float32 view is the float64 value rounded once (what the
# gold file stores and what the filters used to judge).

F16 = np.arange(65536, dtype=np.uint16).view(np.float16)
F16 = np.sort(F16[np.isfinite(F16) & (np.abs(F16.astype(np.float64)) <= 1.0)].astype(np.float64))


def f32(d):
    return np.asarray(d, dtype=np.float64).astype(np.float32).astype(np.float64)


def near(q: np.ndarray, d: float, rng) -> np.ndarray:
    """A float16 unit-ish row at cosine distance ~d from float32 unit ``q``."""
    q64 = q.astype(np.float64) / np.linalg.norm(q.astype(np.float64))
    n = rng.standard_normal(len(q))
    n -= (n @ q64) * q64
    n /= np.linalg.norm(n)
    return ((1 - d) * q64 + np.sqrt(1 - (1 - d) ** 2) * n).astype(np.float16)


def tune(x: np.ndarray, q: np.ndarray, metric: str, target: float, ok) -> np.ndarray:
    """Float16 row ``x`` with three coordinates re-chosen so that its float64 distance to ``q`` is
    near ``target`` and ``ok(distance)`` holds: a coarse coordinate (largest |q_j|), then two zeroed
    ones (|q_j| ~ 0.05 and ~ 0.005) where float16's small values give steps down to ~1e-10."""
    x = x.astype(np.float64)
    aq = np.abs(q.astype(np.float64))
    coarse = int(np.argmax(aq))
    mid, fine = (int(np.argmin(np.abs(aq - t) + (np.arange(len(q)) == coarse))) for t in (0.05, 0.005))
    x[[mid, fine]] = 0.0
    for j in (coarse, mid, fine):
        cand = np.repeat(x[None], len(F16), axis=0)
        cand[:, j] = F16
        d = oracle_dists(q, cand, metric)
        if j != fine:
            x[j] = F16[np.argmin(np.abs(d - target))]
            continue
        for i in np.argsort(np.abs(d - target)):
            if ok(d[i]):
                return cand[i].astype(np.float16)
    raise AssertionError("no float16 value gives the wanted near-tie; change the seed")


def far_rows(q_rows, rng, n=300):
    """Random unit rows, all at distance > 0.6 from every scenario query."""
    x = unit(rng.standard_normal((n, q_rows.shape[1])))
    assert (1 - x @ unit(q_rows.astype(np.float64)).T).min() > 0.6
    return x.astype(np.float16)


@pytest.fixture(scope="module")
def near_ties(tmp_path_factory):
    """Scenarios (source rows and their neighbourhoods in one database):
    2023 #0: ranks 10 and 11 tie in float32 but not in float64            -> kept
    2023 #1: sum of the top-10 > 0.1 in float64, <= 0.1 in float32         -> kept
    2023 #2: sum of the top-10 <= 0.1 in float64, > 0.1 in float32         -> top10_sum
    2024 #0: d30 - d29 >= 1e-4 in float64, < 1e-4 in float32               -> kept
    2024 #1: d30 - d29 < 1e-4 in float64, >= 1e-4 in float32               -> gap_30_29"""
    rng = np.random.default_rng(77)
    folder = tmp_path_factory.mktemp("ties")
    src = {r: unit(rng.standard_normal((m, 768))).astype(np.float32) for r, m in (("2023", 3), ("2024", 2))}
    # the queries exactly as the oracle (and the code) normalise the source rows
    qs = {r: oracle_queries(s)[0] for r, s in src.items()}
    rows = []
    q0, q1, q2 = qs["2023"]
    # 2023 #0: nine rows at 0.15-0.25, then A and B at ~0.35, 1e-9..1e-8 apart in float64, equal in float32
    rows += [near(q0, d, rng) for d in rng.uniform(0.15, 0.25, 9)]
    a = near(q0, 0.35, rng)
    da = oracle_dists(q0, a[None].astype(np.float64), "cosine")[0]
    b = tune(a, q0, "cosine", da + 4e-9, lambda d: f32(d) == f32(da) and abs(d - da) > 1e-12)
    rows += [a, b]
    # 2023 #1 / #2: nine rows at ~0.008 whose float32 roundings err downwards / upwards, a tuned 10th
    for q, sign in ((q1, -1), (q2, +1)):
        pool = [near(q, 0.008, rng) for _ in range(80)]
        d = oracle_dists(q, np.stack(pool).astype(np.float64), "cosine")
        nine = np.argsort(sign * (f32(d) - d))[::-1][:9]  # the largest roundings down (#1) / up (#2)
        d9 = d[nine]
        if sign < 0:
            def ok(x, d9=d9):
                return math.fsum([*d9, x]) > 0.1 + 1e-13 and f32(d9).sum() + f32(x) <= 0.1
        else:
            def ok(x, d9=d9):
                return math.fsum([*d9, x]) <= 0.1 - 1e-13 and f32(d9).sum() + f32(x) > 0.1
        target = 0.1 - math.fsum(d9)
        rows += [pool[i] for i in nine] + [tune(near(q, target, rng), q, "cosine", target, ok)]
    # 2024 #0 / #1: 28 rows at 0.1-0.25, rank 29 at ~0.3, rank 30 tuned to d29 + 1e-4 +- 1e-8 (dot)
    for q, keep in zip(qs["2024"], (True, False)):
        rows += [near(q, d, rng) for d in rng.uniform(0.1, 0.25, 28)]
        # the float32 gap is 3355 or 3356 float32 steps (2^-25): which one a float64 gap near 1e-4 gets
        # depends on how d29 rounds, so pick a rank 29 that rounds up (#0) / down (#1) the most
        pool = np.stack([near(q, 0.3, rng) for _ in range(20)])
        d = oracle_dists(q, pool.astype(np.float64), "dot")
        best = int(np.argmax((f32(d) - d) * (1 if keep else -1)))
        r29, d29 = pool[best], d[best]
        if keep:
            def ok(x, d29=d29):
                return x - d29 >= 1e-4 + 1e-13 and f32(x) - f32(d29) < 1e-4
        else:
            def ok(x, d29=d29):
                return x - d29 < 1e-4 - 1e-13 and f32(x) - f32(d29) >= 1e-4
        rows += [r29, tune(r29, q, "dot", d29 + 1e-4, ok)]
    db = np.concatenate([far_rows(np.concatenate([qs["2023"], qs["2024"]]), rng), np.stack(rows)])
    write_vectors(folder / "db.h5", db, "emb")
    for r, s in src.items():
        np.save(folder / f"src{r}.npy", s)
    return folder, db, src


@pytest.mark.parametrize("rule,expect", [("2023", ["kept", "kept", "top10_sum"]), ("2024", ["kept", "gap_30_29"])])
def test_near_ties_judged_in_float64(near_ties, tmp_path, rule, expect):
    folder, db, src = near_ties
    s = src[rule]
    r = select_queries(folder / f"src{rule}.npy", folder / "db.h5", n=expect.count("kept"), rule=rule, seed=0,
                       out_dir=tmp_path, k=30, oversample=10)
    rows = r.examined_rows
    assert sorted(rows.tolist()) == list(range(len(s)))  # every scenario examined
    status, _, dists = oracle(rule, rows, s, db, k=31)
    by_row = dict(zip(rows.tolist(), r.statuses))
    assert [by_row[i] for i in range(len(s))] == expect
    assert [st or "kept" for st in status] == r.statuses
    # the float32 roundings of the same distances would have judged every scenario the other way
    for i, row in enumerate(rows.tolist()):
        d32 = f32(dists[i][1])
        if rule == "2023" and row == 0:
            assert d32[9] == d32[10] and dists[i][1][9] != dists[i][1][10]
        elif rule == "2023":
            assert (d32[:10].sum() <= 0.1) == (expect[row] == "kept")
        else:
            assert (d32[29] - d32[28] < 1e-4) == (expect[row] == "kept")
