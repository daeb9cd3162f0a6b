import h5py
import numpy as np
import pytest

from laionknn.io import write_result
from laionknn.results import append_run_records, check_result_file, read_run_records
from laionknn.results.check import database_rows

from evalhelpers import run_cli, write_raw_result

META = {"algo": "a", "data": "clip768v2", "size": "100K", "buildtime": 1.0, "querytime": 0.5, "params": "p"}


def _valid(rng, n=40, k=10, n_db=1000):
    ids = np.stack([rng.choice(n_db, k, replace=False) for _ in range(n)]) + 1
    d = np.sort(rng.random((n, k)), axis=1).astype(np.float32)
    return ids.astype(np.int32), d


def test_valid_files_attrs_and_jld2(tmp_path, rng):
    ids, d = _valid(rng)
    assert check_result_file(write_raw_result(tmp_path / "a.h5", ids, d, META), 1000, 10) == []
    assert check_result_file(write_raw_result(tmp_path / "j.h5", ids, d, META, jld2=True), 1000, 10) == []
    with h5py.File(tmp_path / "j.h5") as f:  # really stored as scalar string datasets
        assert f["algo"].shape == () and "algo" not in f.attrs
    p = write_result(tmp_path / "w.h5", ids - 1, d, algo="a", data="clip768v2", size="100K", buildtime=1,
                     querytime=1, params="", task="task1")
    assert check_result_file(p, 1000, 10) == []
    # similarities sorted descending in every row are accepted
    assert check_result_file(write_raw_result(tmp_path / "s.h5", ids, 1 - d, META), 1000, 10) == []


@pytest.mark.parametrize("defect, expected", [
    ("no-knns", "missing dataset(s) knns"),
    ("no-dists", "missing dataset(s) dists"),
    ("no-attr", "missing metadata querytime, params"),
    ("transposed", "looks transposed"),
    ("zero-based", "0-based"),
    ("beyond", "beyond the database size 1000"),
    ("repeated", "repeats an id within 2 rows (first: 3, 7)"),
    ("few-columns", "fewer than k=10"),
    ("nan", "NaN in 1 rows (first: 5)"),
    ("unsorted", "not sorted: 1 rows are not ascending"),
    ("bad-time", "querytime is 'fast'"),
])
def test_each_defect_is_named(tmp_path, rng, defect, expected):
    ids, d = _valid(rng)
    meta, skip = dict(META), ()
    if defect == "no-knns":
        skip = ("knns",)
    elif defect == "no-dists":
        skip = ("dists",)
    elif defect == "no-attr":
        skip = ("querytime", "params")
    elif defect == "transposed":
        ids, d = ids.T.copy(), d.T.copy()
    elif defect == "zero-based":
        ids = ids - ids.min()
    elif defect == "beyond":
        ids[4, 2] = 1001
    elif defect == "repeated":
        ids[3, 5] = ids[3, 0]
        ids[7, 9] = ids[7, 8]
    elif defect == "few-columns":
        ids, d = ids[:, :8], d[:, :8]
    elif defect == "nan":
        d[5, 3] = np.nan
    elif defect == "unsorted":
        d[12] = d[12, ::-1]
    elif defect == "bad-time":
        meta["querytime"] = "fast"
    path = write_raw_result(tmp_path / f"{defect}.h5", ids, d, meta, skip=skip, jld2=(defect == "no-attr"))
    problems = check_result_file(path, n_database=1000, k=10)
    assert any(expected in p for p in problems), problems
    # a transposed file is recognised from the shape alone, too
    if defect == "transposed":
        assert any("transposed" in p for p in check_result_file(path))


def test_all_problems_listed_and_cli(tmp_path, rng, capsys):
    ids, d = _valid(rng)
    ids = ids - 1  # 0-based
    ids[0, 0] = 0
    ids[2, 1] = ids[2, 0]
    d[1, 0] = np.nan
    bad = write_raw_result(tmp_path / "bad.h5", ids, d, META, skip=("algo",))
    problems = check_result_file(bad, 1000, 10)
    assert len(problems) == 4
    good = write_raw_result(tmp_path / "good.h5", *_valid(rng), META)
    code, out, err = run_cli(["results", "check", good, bad, "--n-database", "1000", "--k", "10"], capsys)
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0] == f"{good}: ok"
    assert [l for l in lines if l.startswith(str(bad))] == [f"{bad}: {p}" for p in problems]
    code, out, _ = run_cli(["-q", "results", "check", good, "--n-database", "100K"], capsys)
    assert code == 0 and out == ""
    code, out, _ = run_cli(["results", "check", tmp_path / "missing.h5"], capsys)
    assert code == 2


def test_not_hdf5(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not an hdf5 file")
    (p,) = check_result_file(tmp_path / "x.h5")
    assert "not a readable HDF5 file" in p


def test_database_rows():
    assert database_rows("10M") == 10_120_191
    assert database_rows("300K") == 300_000
    assert database_rows("2500") == 2500
    assert database_rows(None) is None


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_run_records_roundtrip(tmp_path, suffix):
    path = tmp_path / f"runs{suffix}"
    assert read_run_records(path) == []
    append_run_records(path, {"algo": "hnsw", "recall": 0.91, "qps": np.float64(1234.5), "k": np.int64(10)})
    append_run_records(path, [{"algo": "ivf", "recall": 0.8, "qps": 99.0, "k": 10, "params": "nprobe=8|x,y"},
                              {"algo": "flat", "recall": 1.0, "qps": float("nan"), "k": 10}])
    rows = read_run_records(path)
    assert [r["algo"] for r in rows] == ["hnsw", "ivf", "flat"]
    assert rows[0]["recall"] == 0.91 and rows[0]["qps"] == 1234.5 and rows[0]["k"] == 10
    assert rows[1]["params"] == "nprobe=8|x,y"
    assert rows[2]["qps"] is None
    assert rows[0].get("params") is None


def test_transposed_wide_file_checked_as_its_transpose(tmp_path, rng):
    ids, d = _valid(rng, n=40, k=30)
    path = write_raw_result(tmp_path / "t.h5", ids.T.copy(), d.T.copy(), META)
    problems = check_result_file(path, n_database=1000, k=10)
    assert len(problems) == 1 and "looks transposed" in problems[0]
    problems = check_result_file(path, n_database=1000, k=10, n_queries=40)
    assert len(problems) == 1 and "n_queries=40" in problems[0]
