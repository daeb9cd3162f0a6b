"""A user's own files as inputs (issue 18, part 1): official HDF5, ann-benchmarks HDF5, FILE#KEY, .npy and
.fbin databases through `search`, `run`, `eval` and `report`, their queries and gold found inside or beside
them; the old option spellings as deprecated aliases; the group's options after the subcommand.

Gold standards here are computed by the tests themselves with plain numpy (argsort of all distances),
never by laionknn; the data are small random floats, so the exact backend's answer has no ties."""

from __future__ import annotations

import csv
import json
import struct

import h5py
import numpy as np
import pytest

from laionknn.errors import FormatError
from laionknn.io import formats

from evalhelpers import run_cli
from hardeninghelpers import assert_clean_error

N, NQ, DIM = 400, 20, 16


def exact_l2(db, q, k):
    d = ((q[:, None, :].astype(np.float64) - db[None].astype(np.float64)) ** 2).sum(-1)
    ids = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(d, ids, 1)


def exact_cos(db, q, k):
    dn = db / np.linalg.norm(db, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = 1.0 - qn.astype(np.float64) @ dn.T.astype(np.float64)
    ids = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(d, ids, 1)


@pytest.fixture
def data(rng):
    return rng.standard_normal((N, DIM)).astype(np.float32), rng.standard_normal((NQ, DIM)).astype(np.float32)


def write_ann(path, db, q, k=20):
    """An ann-benchmarks dataset file as their datasets.py writes it (0-based neighbours, euclidean
    distances not squared, attribute ``distance``)."""
    ids, d2 = exact_l2(db, q, k)
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = "euclidean"
        f.attrs["type"] = "dense"
        f["train"], f["test"] = db, q
        f["neighbors"], f["distances"] = ids.astype(np.int32), np.sqrt(d2).astype(np.float32)
    return path


def write_official_gold(path, ids, dists):
    """The official gold layout written by hand: knns int32 1-based, dists float32 ascending."""
    with h5py.File(path, "w") as f:
        f["knns"] = (ids + 1).astype(np.int32)
        f["dists"] = dists.astype(np.float32)
    return path


def write_fbin(path, arr):
    with open(path, "wb") as fh:
        fh.write(struct.pack("<II", *arr.shape))
        fh.write(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return path


def records(out):
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


# --- detection and views ------------------------------------------------------------------------------
def test_each_layout_is_detected_and_read_in_place(tmp_path, data):
    db, q = data
    np.save(tmp_path / "a.npy", db)
    write_fbin(tmp_path / "b.fbin", db)
    write_ann(tmp_path / "c.h5", db, q)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["emb"] = db
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["vectors"], f["other"] = db, q
    kinds = {name: formats.detect(tmp_path / name).kind for name in ("a.npy", "b.fbin", "c.h5", "d.h5")}
    assert kinds == {"a.npy": "npy", "b.fbin": "fbin", "c.h5": "ann-benchmarks", "d.h5": "official"}
    assert formats.detect(tmp_path / "c.h5").metric.value == "l2"
    assert formats.detect(f"{tmp_path / 'e.h5'}#vectors").kind == "hdf5-key"
    assert formats.as_official(tmp_path / "d.h5") == tmp_path / "d.h5"  # already official: no view
    from laionknn.io import read_vectors

    for text, want in [(tmp_path / "a.npy", db), (tmp_path / "b.fbin", db), (tmp_path / "c.h5", db),
                       (f"{tmp_path / 'e.h5'}#other", q)]:
        assert np.array_equal(read_vectors(formats.as_official(text)), want), text
    assert np.array_equal(read_vectors(formats.as_official(tmp_path / "c.h5", "queries")), q)


def test_neither_layout_names_the_keys_found_and_expected(tmp_path, data, capsys):
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["foo"], f["bar"] = data
    with pytest.raises(FormatError, match="keys found bar, foo; expected .*train, test"):
        formats.detect(tmp_path / "odd.h5")
    write_fbin(tmp_path / "short.fbin", data[0])
    with open(tmp_path / "short.fbin", "ab") as fh:
        fh.write(b"\0\0")
    with pytest.raises(FormatError, match="header says 400 rows of 16"):
        formats.detect(tmp_path / "short.fbin")
    code, _, err = run_cli(["search", "--database", tmp_path / "odd.h5", "--index", "exact"], capsys)
    assert_clean_error(code, err, "keys found bar, foo", "train, test, neighbors, distances")


# --- the commands ---------------------------------------------------------------------------------------
def test_ann_benchmarks_file_through_search_run_eval_report(tmp_path, data, capsys):
    db, q = data
    ann = write_ann(tmp_path / "glove-like.h5", db, q)
    code, _, err = run_cli(["search", "--database", ann, "--index", "exact", "--k", 10, "--out", tmp_path / "s"], capsys)
    assert code == 0, err
    (rec,) = records(tmp_path / "s")
    assert rec["recall"] == 1.0 and rec["data"] == "l2-d16" and rec["n_queries"] == NQ
    with h5py.File(rec["file"]) as f:  # official result file: 1-based ids of the ann-benchmarks neighbours
        assert np.array_equal(f["knns"][()] - 1, exact_l2(db, q, 10)[0])
    code, _, err = run_cli(["run", "--database", ann, "--index", "exact", "--quick", "--no-baselines",
                            "--out", tmp_path / "r"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "r" / "evaluation.csv")))
    assert [(r["algo"], float(r["recall"])) for r in rows] == [("exact", 1.0)]
    assert (tmp_path / "r" / "report.md").is_file()
    code, out, err = run_cli(["eval", "--results", tmp_path / "s" / "results", "--gold", ann], capsys)
    assert code == 0, err
    (row,) = list(csv.DictReader(out.splitlines()))
    assert float(row["recall"]) == 1.0
    (tmp_path / "e.csv").write_text(out)
    code, out, err = run_cli(["report", tmp_path / "e.csv", "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    assert "exact" in (tmp_path / "rep" / "report.md").read_text()


def test_npy_with_queries_and_gold_beside_it_and_old_spellings(tmp_path, data, capsys):
    db, q = data
    np.save(tmp_path / "mine.npy", db)
    np.save(tmp_path / "mine.queries.npy", q)
    ids, d = exact_cos(db, q, 30)
    gold = ids.copy()
    gold[:, 5] = ids[:, 29]  # a gold that differs from the truth in one of ten columns: recall 0.9 exactly
    write_official_gold(tmp_path / "mine.gold.h5", gold, d)
    code, _, err = run_cli(["search", "--data", tmp_path / "mine.npy", "--index", "exact", "--k", 10,
                            "--out", tmp_path / "s"], capsys)
    assert code == 0, err
    assert "warning: --data is deprecated" in err and "use --database" in err
    (rec,) = records(tmp_path / "s")
    assert rec["recall"] == pytest.approx(0.9) and rec["data"] == "cosine-d16"
    # --queries N (a count) as before, --query-file FILE as before: both with one deprecation line each
    code, _, err = run_cli(["search", "--database", tmp_path / "mine.npy", "--query-file", tmp_path / "mine.queries.npy",
                            "--queries", "7", "--index", "exact", "--k", 5, "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    assert "--query-file is deprecated" in err and "use --n-queries" in err
    assert records(tmp_path / "t")[0]["n_queries"] == NQ  # the count applies to synthetic data only


def test_official_and_fbin_files_with_options(tmp_path, data, capsys):
    db, q = data
    with h5py.File(tmp_path / "db.h5", "w") as f:
        f["pca16"] = db  # a pcaN key: l2 unless told otherwise
    write_fbin(tmp_path / "q.fbin", q)
    ids, d = exact_l2(db, q, 10)
    write_official_gold(tmp_path / "truth.h5", ids, d)
    code, _, err = run_cli(["search", "--database", tmp_path / "db.h5", "--queries", tmp_path / "q.fbin",
                            "--gold", tmp_path / "truth.h5", "--index", "exact", "--k", 10, "--out", tmp_path / "s"],
                           capsys)
    assert code == 0, err
    assert records(tmp_path / "s")[0]["recall"] == 1.0
    # the same file searched as cosine data scores below 1 against the l2 truth
    code, _, err = run_cli(["search", "--database", tmp_path / "db.h5", "--queries", tmp_path / "q.fbin",
                            "--gold", tmp_path / "truth.h5", "--metric", "cosine", "--index", "exact", "--k", 10,
                            "--out", tmp_path / "c"], capsys)
    assert code == 0, err
    assert records(tmp_path / "c")[0]["recall"] < 1.0
    code, _, err = run_cli(["search", "--database", tmp_path / "db.h5", "--index", "exact"], capsys)
    assert_clean_error(code, err, "without queries", "--queries FILE")


def test_group_options_after_the_subcommand(tmp_path, capsys):
    from laionknn.cli.main import hoist_globals

    assert hoist_globals(["search", "--index", "exact", "-q", "--catalog", "c.tsv", "--k", "3"]) == \
        ["-q", "--catalog", "c.tsv", "search", "--index", "exact", "--k", "3"]
    assert hoist_globals(["-v", "run", "--out", "x", "--", "-q"]) == ["-v", "run", "--out", "x", "--", "-q"]
    from test_catalog_download import write_catalog

    cat = write_catalog(tmp_path / "mine.tsv", [{"file": "my-own-db-n=1000.h5"}])
    code, out, err = run_cli(["datasets", "list", "--catalog", cat], capsys)
    assert code == 0, err
    assert "my-own-db-n=1000" in out


def test_gold_and_stats_take_any_layout(tmp_path, data, capsys):
    db, q = data
    np.save(tmp_path / "g.npy", db)
    write_fbin(tmp_path / "g-q.fbin", q)
    code, _, err = run_cli(["-q", "gold", "--database", tmp_path / "g.npy", "--queries", tmp_path / "g-q.fbin",
                            "--k", 5, "--metric", "l2", "--out", tmp_path / "truth.h5"], capsys)
    assert code == 0, err
    with h5py.File(tmp_path / "truth.h5") as f:
        assert np.array_equal(f["knns"][()] - 1, exact_l2(db, q, 5)[0])
    code, out, err = run_cli(["stats", tmp_path / "g.npy", "--recall-rows", "0", "--sample", 50], capsys)
    assert code == 0, err
    assert f"{N:,} x {DIM}" in out


def test_gold_out_may_name_a_folder(tmp_path, data, capsys):
    """--out names a folder on every command: gold writes its default file name inside one."""
    db, q = data
    np.save(tmp_path / "g.npy", db)
    np.save(tmp_path / "g-q.npy", q)
    folder = tmp_path / "results"
    folder.mkdir()
    code, _, err = run_cli(["-q", "gold", "--database", tmp_path / "g.npy", "--queries", tmp_path / "g-q.npy",
                            "--k", 5, "--metric", "l2", "--out", folder], capsys)
    assert code == 0, err
    (written,) = folder.glob("*.h5")
    assert written.name.startswith("gold-") and "k=5" in written.name
    with h5py.File(written) as f:
        assert np.array_equal(f["knns"][()] - 1, exact_l2(db, q, 5)[0])
    code, _, err = run_cli(["-q", "gold", "--database", tmp_path / "g.npy", "--queries", tmp_path / "g-q.npy",
                            "--k", 5, "--metric", "l2", "--out", str(tmp_path / "new") + "/"], capsys)
    assert code == 0, err
    assert len(list((tmp_path / "new").glob("gold-*k=5*.h5"))) == 1
