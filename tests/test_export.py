"""Exports (issue 18, part 4): a run folder written in ann-benchmarks' and big-ann-benchmarks' result
layouts and read back by readers written here from those tools' code (ann-benchmarks
``ann_benchmarks/results.py`` ``load_all_results`` and the distance-threshold recall of its
``plotting/metrics.py``; big-ann-benchmarks ``benchmark/results.py`` ``load_all_results``), CSV/JSON
exports, operating points and Pareto frontiers beside the report, runs.jsonl objects and older rows."""

from __future__ import annotations

import csv
import json
import os

import h5py
import numpy as np
import pytest

from evalhelpers import run_cli
from hardeninghelpers import assert_clean_error

N, NQ, DIM, K = 300, 12, 8, 10


@pytest.fixture
def run_folder(tmp_path, rng, capsys):
    """An ann-benchmarks dataset file (euclidean) searched by the exact backend into tmp/run."""
    db = rng.standard_normal((N, DIM)).astype(np.float32)
    q = rng.standard_normal((NQ, DIM)).astype(np.float32)
    d = np.sqrt(((q[:, None].astype(np.float64) - db[None]) ** 2).sum(-1))
    ids = np.argsort(d, axis=1, kind="stable")[:, :50]
    with h5py.File(tmp_path / "toy-8-euclidean.hdf5", "w") as f:
        f.attrs["distance"] = "euclidean"
        f["train"], f["test"] = db, q
        f["neighbors"], f["distances"] = ids.astype(np.int32), np.take_along_axis(d, ids, 1).astype(np.float32)
    code, _, err = run_cli(["search", "--database", tmp_path / "toy-8-euclidean.hdf5", "--index", "exact", "--k", K,
                            "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    return tmp_path, ids, np.take_along_axis(d, ids, 1)


def ann_benchmarks_load_all_results(root, dataset, count):
    """As ann-benchmarks' load_all_results: every HDF5 file under results/<dataset>/<count>/, its
    attributes and datasets."""
    for folder, _, files in os.walk(root / "results" / dataset / str(count)):
        for fn in files:
            with h5py.File(os.path.join(folder, fn), "r") as f:
                yield dict(f.attrs), {k: f[k][()] for k in f}, os.path.relpath(os.path.join(folder, fn), root)


def ann_benchmarks_knn_recall(true_distances, run_distances, count, epsilon=1e-3):
    """ann-benchmarks' knn recall: a returned neighbour counts when its distance is within the count-th
    true distance (plus epsilon)."""
    hits = [np.sum(run_distances[i, :count] <= true_distances[i, count - 1] + epsilon) for i in range(len(run_distances))]
    return float(np.mean(hits)) / count


def test_ann_benchmarks_export_reads_back(run_folder, capsys):
    tmp, ids, dists = run_folder
    (rec,) = [json.loads(line) for line in (tmp / "run" / "runs.jsonl").read_text().splitlines()]
    code, _, err = run_cli(["export", tmp / "run", "--format", "ann-benchmarks", "--out", tmp / "ab",
                            "--dataset", "toy-8-euclidean"], capsys)
    assert code == 0, err
    (found,) = list(ann_benchmarks_load_all_results(tmp / "ab", "toy-8-euclidean", K))
    attrs, data, rel = found
    # results/<dataset>/<count>/<algo>/<name>.hdf5; the exact backend has no parameters to name the file by
    assert rel == os.path.join("results", "toy-8-euclidean", str(K), "exact", "defaults.hdf5")
    for key in ("algo", "dataset", "count", "distance", "build_time", "best_search_time", "candidates", "name",
                "run_count", "expect_extra"):
        assert key in attrs, key
    assert (attrs["algo"], attrs["dataset"], int(attrs["count"]), attrs["distance"]) == \
        ("exact", "toy-8-euclidean", K, "euclidean")
    assert attrs["best_search_time"] == pytest.approx(rec["querytime"] / NQ)
    assert data["neighbors"].shape == (NQ, K) and np.array_equal(data["neighbors"], ids[:, :K])  # 0-based
    assert np.allclose(data["distances"], dists[:, :K], atol=1e-4)  # euclidean, not squared
    assert data["times"].shape == (NQ,)
    assert ann_benchmarks_knn_recall(dists, data["distances"], K) == 1.0


def test_big_ann_export_reads_back(run_folder, capsys):
    tmp, ids, _ = run_folder
    code, _, err = run_cli(["export", tmp / "run", "--format", "big-ann", "--out", tmp / "ba"], capsys)
    assert code == 0, err
    files = []
    for folder, _, names in os.walk(tmp / "ba" / "results"):  # big-ann's load_all_results: *.hdf5 files only
        files += [os.path.join(folder, n) for n in names if os.path.splitext(n)[-1] == ".hdf5"]
    (path,) = files
    with h5py.File(path, "r") as f:
        props, neighbors = dict(f.attrs), f["neighbors"][()]
    assert props["algo"] == "exact" and props["type"] == "knn" and int(props["count"]) == K
    assert path.split(os.sep)[-4:-1] == ["toy-8-euclidean", str(K), "exact"]
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(neighbors.tolist(), ids[:, :K].tolist())])
    assert recall == 1.0


def test_csv_json_exports_runs_objects_and_bad_format(run_folder, capsys):
    tmp, _, _ = run_folder
    raw = json.loads((tmp / "run" / "runs.jsonl").read_text().splitlines()[0])
    assert isinstance(raw["build_params"], dict) and isinstance(raw["query_params"], dict)
    assert isinstance(raw["querytimes"], list) and raw["metric"] == "l2"
    for fmt in ("json", "csv"):
        code, _, err = run_cli(["export", tmp / "run", "--format", fmt, "--out", tmp / fmt], capsys)
        assert code == 0, err
    (exported,) = json.loads((tmp / "json" / "runs.json").read_text())
    assert exported["params"] == raw["params"] and exported["querytimes"] == raw["querytimes"]
    (row,) = list(csv.DictReader(open(tmp / "csv" / "runs.csv")))
    assert json.loads(row["querytimes"]) == raw["querytimes"] and float(row["recall"]) == 1.0
    code, _, err = run_cli(["export", tmp / "run", "--format", "faiss-bench"], capsys)
    assert_clean_error(code, err, "faiss-bench", "ann-benchmarks")


def test_older_rows_with_json_text_are_read_as_objects(tmp_path):
    from laionknn.results import read_run_records

    (tmp_path / "runs.jsonl").write_text(json.dumps({"algo": "hnswlib", "build_params": '{"M": 16}',
                                                     "query_params": '{"ef": 32}', "querytimes": "[0.5, 0.25]"}) + "\n")
    (rec,) = read_run_records(tmp_path / "runs.jsonl")
    assert rec["build_params"] == {"M": 16} and rec["query_params"] == {"ef": 32} and rec["querytimes"] == [0.5, 0.25]


def test_operating_points_and_frontier_beside_the_report(tmp_path, capsys):
    rows = [("hnswlib", "ef=8", 0.80, 9000.0), ("hnswlib", "ef=16", 0.93, 6000.0), ("hnswlib", "ef=32", 0.99, 2000.0),
            ("hnswlib", "ef=12", 0.85, 5000.0), ("ivf", "nprobe=1", 0.70, 12000.0), ("ivf", "nprobe=4", 0.95, 7000.0)]
    with open(tmp_path / "e.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["data", "size", "algo", "buildtime", "querytime", "params", "recall", "k", "qps"])
        for algo, params, recall, qps in rows:
            w.writerow(["clip768v2", "300K", algo, 1.0, 10_000 / qps, params, recall, 10, qps])
    code, _, err = run_cli(["report", tmp_path / "e.csv", "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    points = json.loads((tmp_path / "rep" / "operating_points.json").read_text())
    assert [(p["algo"], p["params"], p["reached"]) for p in points if p["threshold"] == 0.9] == \
        [("ivf", "nprobe=4", True), ("hnswlib", "ef=16", True)]
    front = json.loads((tmp_path / "rep" / "pareto_frontier.json").read_text())
    assert [r["params"] for r in front if r["algo"] == "hnswlib"] == ["ef=8", "ef=16", "ef=32"]  # ef=12 is beaten
    table = list(csv.DictReader(open(tmp_path / "rep" / "operating_points.csv")))
    assert len(table) == len(points) and table[0]["algo"] == points[0]["algo"]
    assert (tmp_path / "rep" / "pareto_frontier.csv").is_file()
