import base64
import csv
import math
import re

import numpy as np
import pytest

from laionknn.evaluation import EVAL_COLUMNS
from laionknn.reporting import load_eval_csv, operating_points, pareto_frontier, write_report

from evalhelpers import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_csv(path, runs):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(EVAL_COLUMNS))
        w.writeheader()
        for r in runs:
            row = {c: "" for c in EVAL_COLUMNS}
            row.update(r)
            w.writerow(row)
    return path


RUNS = [  # data, size, algo, recall, qps, k
    ("clip768v2", "100K", "hnsw", 0.95, 1000, 10), ("clip768v2", "100K", "hnsw", 0.92, 3000, 10),
    ("clip768v2", "100K", "hnsw", 0.85, 8000, 10), ("clip768v2", "100K", "hnsw", 0.80, 5000, 10),
    ("clip768v2", "100K", "ivf", 0.88, 9000, 10), ("clip768v2", "100K", "ivf", 0.70, 20000, 10),
    ("clip768v2", "100K", "flat", 1.0, 50, 10), ("clip768v2", "100K", "flat", 0.90, 9999, 10),
    ("clip768v2", "300K", "hnsw", 0.85, 700, 30), ("clip768v2", "300K", "hnsw", 0.50, 4000, 30),
    ("clip768v2", "300K", "ivf", 0.30, 9000, 30), ("clip768v2", "300K", "ivf", 0.45, 2000, 30),
]


def _runs_csv(tmp_path):
    return _write_csv(tmp_path / "e.csv", [
        {"data": d, "size": s, "algo": a, "recall": r, "qps": q, "k": k, "querytime": 10000 / q,
         "params": f"{a}-{i}", "recall_tie_aware": r, "file": f"f{i}.h5"} for i, (d, s, a, r, q, k) in enumerate(RUNS)])


def test_pareto_frontier_is_the_non_dominated_set(rng):
    rows = [{"recall": float(r), "qps": float(q)} for r, q in zip(rng.random(60), rng.random(60) * 1000)]
    front = pareto_frontier(rows)
    dominated = lambda a: any(b["recall"] >= a["recall"] and b["qps"] >= a["qps"] and
                              (b["recall"], b["qps"]) != (a["recall"], a["qps"]) for b in rows)
    assert {id(r) for r in front} == {id(r) for r in rows if not dominated(r)}
    assert [r["recall"] for r in front] == sorted(r["recall"] for r in front)


def test_operating_points(tmp_path):
    rows = load_eval_csv([_runs_csv(tmp_path)])
    got = {(p.size, p.threshold, p.algo): (p.reached, p.run["recall"], p.run["qps"]) for p in operating_points(rows)}
    # k=10 threshold 0.9 (strictly above): hnsw best is 0.92 @ 3000; ivf never (best 0.88); flat only 1.0 @ 50
    assert got[("100K", 0.9, "hnsw")] == (True, 0.92, 3000)
    assert got[("100K", 0.9, "ivf")] == (False, 0.88, 9000)
    assert got[("100K", 0.9, "flat")] == (True, 1.0, 50)
    # k=30: thresholds 0.8 and 0.4
    assert got[("300K", 0.8, "hnsw")] == (True, 0.85, 700)
    assert got[("300K", 0.8, "ivf")] == (False, 0.45, 2000)
    assert got[("300K", 0.4, "hnsw")] == (True, 0.5, 4000)
    assert got[("300K", 0.4, "ivf")] == (True, 0.45, 2000)
    assert len(got) == 3 + 2 + 2


def test_write_report_files(tmp_path, capsys):
    paths = write_report([_runs_csv(tmp_path)], tmp_path / "rep")
    groups = ("clip768v2:100K:k10", "clip768v2:300K:k30")
    assert set(paths) == {"markdown", "html"} | {f"{kind}:{g}" for kind in ("plot", "svg", "pdf") for g in groups} | \
        {f"{name}:{ext}" for name in ("operating_points", "pareto_frontier") for ext in ("csv", "json")}
    for key, p in paths.items():
        assert p.exists() and p.stat().st_size > 0
    import matplotlib.image

    for key in ("plot:clip768v2:100K:k10", "plot:clip768v2:300K:k30"):
        data = paths[key].read_bytes()
        assert data.startswith(PNG_MAGIC)
        img = matplotlib.image.imread(paths[key])
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 500
    # the Markdown tables parse: header, separator, rows with the same number of cells
    md = paths["markdown"].read_text()
    tables, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            current.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif current:
            tables.append(current)
            current = []
    assert len(tables) == 2
    ops, front = tables
    assert ops[0][:6] == ["data", "size", "k", "recall >", "algo", "reached"]
    assert all(set(c) <= set("-") for c in ops[1])
    assert all(len(r) == len(ops[0]) for r in ops)
    body = [dict(zip(ops[0], r)) for r in ops[2:]]
    assert len(body) == 7
    first = body[0]
    assert (first["algo"], first["reached"], first["QPS"], first["recall"]) == ("hnsw", "yes", "3,000", "0.9200")
    ivf = next(r for r in body if r["algo"] == "ivf" and r["k"] == "10")
    assert ivf["reached"] == "no" and ivf["recall"] == "0.8800 (best)"
    assert front[0] == ["data", "size", "k", "algo", "recall", "QPS", "params"]
    hnsw100 = [r for r in front[2:] if r[1] == "100K" and r[3] == "hnsw"]
    assert [r[4] for r in hnsw100] == ["0.8500", "0.9200", "0.9500"]
    # the HTML page embeds every plot and has no external references
    html = paths["html"].read_text()
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == 2 and all(base64.b64decode(i).startswith(PNG_MAGIC) for i in imgs)
    assert "<table>" in html and "http://" not in html and "https://" not in html
    code, out, _ = run_cli(["report", tmp_path / "e.csv", "--out", tmp_path / "rep2"], capsys)
    assert code == 0 and (tmp_path / "rep2" / "report.html").exists() and "report.md" in out


def test_organisers_csv_without_k_and_qps(tmp_path):
    with open(tmp_path / "res.csv", "w") as f:
        f.write("data,size,algo,buildtime,querytime,params,recall\n"
                "clip768v2,100K,a,1,2.0,p,0.95\nclip768v2,100K,a,1,1.0,q,0.5\n")
    rows = load_eval_csv([tmp_path / "res.csv"])
    assert [r["k"] for r in rows] == [10, 10]
    assert rows[0]["qps"] == pytest.approx(5000) and math.isnan(rows[0]["recall_tie_aware"])
    assert write_report([tmp_path / "res.csv"], tmp_path / "rep")["html"].exists()


def test_bad_csv_exit_2(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    code, _, err = run_cli(["report", tmp_path / "x.csv", "--out", tmp_path / "r"], capsys)
    assert code == 2 and "missing column" in err
