"""Operating points and Pareto frontiers as data files beside every report, for other tools to read.

``operating_points.csv`` / ``.json``: one row per (data, size, k, threshold, algo), the fastest run with
recall above the threshold (``reached`` true) or, when none is, the algorithm's best-recall run.
``pareto_frontier.csv`` / ``.json``: per (data, size, k, algo), the runs not beaten on both recall and
QPS, in increasing recall. JSON files hold a list of objects with the CSV's columns; a value that is
not a number (a missing QPS) is null in JSON and empty in CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from laionknn.fsutil import atomic_path
from laionknn.reporting.tables import by_algo, groups, operating_points, pareto_frontier

RUN_FIELDS = ("recall", "recall_tie_aware", "qps", "querytime", "buildtime", "params", "file")
POINT_COLUMNS = ("data", "size", "k", "threshold", "algo", "reached", *RUN_FIELDS)
FRONTIER_COLUMNS = ("data", "size", "k", "algo", *RUN_FIELDS)


def _value(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _run(run: dict) -> dict:
    return {c: _value(run.get(c)) for c in RUN_FIELDS}


def point_rows(rows: list[dict]) -> list[dict]:
    return [{"data": p.data, "size": p.size, "k": p.k, "threshold": p.threshold, "algo": p.algo,
             "reached": p.reached, **_run(p.run)} for p in operating_points(rows)]


def frontier_rows(rows: list[dict]) -> list[dict]:
    out = []
    for (data, size, k), grp in groups(rows).items():
        for algo, runs in by_algo(grp).items():
            out += [{"data": data, "size": size, "k": k, "algo": algo, **_run(r)} for r in pareto_frontier(runs)]
    return out


def _write(stem: Path, columns: tuple[str, ...], rows: list[dict]) -> dict[str, Path]:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: "" if r.get(c) is None else r.get(c) for c in columns})
    paths = {}
    for ext, text in (("csv", buf.getvalue()), ("json", json.dumps(rows, indent=1) + "\n")):
        path = stem.with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        paths[ext] = path
    return paths


def write_points(rows: list[dict], out_dir: "str | Path") -> dict[str, Path]:
    """Write the four files into ``out_dir``; returns them as ``operating_points:csv`` ... keys."""
    out_dir = Path(out_dir)
    written = {}
    for name, columns, data in (("operating_points", POINT_COLUMNS, point_rows(rows)),
                                ("pareto_frontier", FRONTIER_COLUMNS, frontier_rows(rows))):
        for ext, path in _write(out_dir / name, columns, data).items():
            written[f"{name}:{ext}"] = path
    return written
