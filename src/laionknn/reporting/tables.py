"""Operating points and Pareto frontiers from evaluation CSVs, and their Markdown tables.

Input rows are those of ``laionknn eval`` (:data:`laionknn.evaluation.EVAL_COLUMNS`). The organisers'
own ``res.csv`` (no ``k``/``qps`` columns) is accepted too: k is then taken as 10 and QPS as
10000 / querytime, as their ``plot.py`` does.

Operating point (per data, size, k, threshold and algorithm): the run with the highest QPS among those
with recall strictly above the threshold (the organisers' ``df.recall > threshold``); an algorithm with
no such run is listed with its best recall instead. Thresholds: 0.9 for k = 10 (2023 task A), 0.22 for
data ``hammingv2`` at k = 10 (2023 task C, indexes over the BinWalk sketches), 0.8 and 0.4 for k = 30
(2024 tasks 1–2 and 3); other k use 0.9.

Pareto frontier (per data, size, k and algorithm): runs sorted by QPS descending, keeping each run whose
recall is higher than every faster run's and higher than 0 (the organisers' ``get_pareto_frontier`` in
``plot.py`` starts from ``cur = 0`` and keeps ``x > cur``, so a recall-0 run is never drawn), so no
kept run is beaten on both recall and QPS.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from laionknn.errors import FormatError

THRESHOLDS = {10: (0.9,), 30: (0.8, 0.4)}
DEFAULT_THRESHOLDS = (0.9,)
#: per-data thresholds that replace the k-based ones: 2023 task C judged hammingv2 indexes at 0.22
DATA_THRESHOLDS = {("hammingv2", 10): (0.22,)}
ORGANISERS_N_QUERIES = 10_000


def thresholds_for(k: int, data: str | None = None) -> tuple[float, ...]:
    """Recall thresholds of the challenge task that used ``k`` (and ``data``, for 2023 task C)."""
    if data is not None and (str(data), int(k)) in DATA_THRESHOLDS:
        return DATA_THRESHOLDS[(str(data), int(k))]
    return THRESHOLDS.get(int(k), DEFAULT_THRESHOLDS)


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def load_eval_csv(paths: "Iterable[str | os.PathLike[str]]") -> list[dict]:
    """Rows of one or more evaluation CSVs, with ``recall``, ``qps``, ``querytime``, ``buildtime``,
    ``recall_tie_aware`` as floats (NaN when empty) and ``k`` as int."""
    rows = []
    for p in map(Path, paths):
        try:
            with open(p, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                cols = reader.fieldnames or []
                missing = [c for c in ("data", "size", "algo", "recall") if c not in cols]
                if missing:
                    raise FormatError(f"{p}: missing column(s) {', '.join(missing)}; expected the CSV that "
                                      f"`laionknn eval` writes (data,size,algo,...,recall,k,qps,...)")
                if "qps" not in cols and "querytime" not in cols:
                    raise FormatError(f"{p}: needs a qps or querytime column to rank runs")
                for row in reader:
                    r = dict(row)
                    for c in ("recall", "qps", "querytime", "buildtime", "recall_tie_aware"):
                        r[c] = _float(row.get(c))
                    r["k"] = int(_float(row.get("k")) if row.get("k") not in (None, "") else 10)
                    if math.isnan(r["qps"]) and r["querytime"] > 0:
                        r["qps"] = ORGANISERS_N_QUERIES / r["querytime"]
                    r["params"] = row.get("params") or ""
                    r["source"] = str(p)
                    rows.append(r)
        except OSError as exc:
            raise FormatError(f"cannot read evaluation CSV {p}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise FormatError(f"{p}: unreadable value ({exc}); expected the CSV that `laionknn eval` writes") from None
    if not rows:
        raise FormatError(f"no runs in {', '.join(map(str, paths))}; run `laionknn eval` first")
    return rows


def groups(rows: list[dict]) -> dict[tuple[str, str, int], list[dict]]:
    """Rows grouped by (data, size, k), in first-seen order."""
    out: dict[tuple[str, str, int], list[dict]] = {}
    for r in rows:
        out.setdefault((r["data"], r["size"], r["k"]), []).append(r)
    return out


def by_algo(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["algo"], []).append(r)
    return out


def pareto_frontier(rows: list[dict]) -> list[dict]:
    """Runs not beaten on both recall and QPS, in increasing recall (decreasing QPS) order.
    Runs without a QPS (NaN) and runs of recall 0 are left out (as plot.py)."""
    usable = [r for r in rows if not math.isnan(r["qps"]) and not math.isnan(r["recall"])]
    usable.sort(key=lambda r: (-r["qps"], -r["recall"]))
    front, best = [], 0.0  # plot.py: cur = 0, keep x > cur (a recall-0 run is left out)
    for r in usable:
        if r["recall"] > best:
            front.append(r)
            best = r["recall"]
    return front


@dataclass(frozen=True)
class OperatingPoint:
    """One line of the operating-points table. ``reached`` False: ``run`` is the best-recall run."""

    data: str
    size: str
    k: int
    threshold: float
    algo: str
    reached: bool
    run: dict


def operating_points(rows: list[dict]) -> list[OperatingPoint]:
    """Per (data, size, k), threshold and algorithm: the fastest run above the threshold, or the
    best-recall run when none is above. Ordered by group, threshold (high first), reached runs by
    QPS descending, then the others by recall descending."""
    out = []
    for (data, size, k), grp in groups(rows).items():
        for t in thresholds_for(k, data):
            reached, missed = [], []
            for algo, runs in by_algo(grp).items():
                above = [r for r in runs if r["recall"] > t and not math.isnan(r["qps"])]
                if above:
                    best = max(above, key=lambda r: (r["qps"], r["recall"]))
                    reached.append(OperatingPoint(data, size, k, t, algo, True, best))
                else:
                    best = max(runs, key=lambda r: (_nan_low(r["recall"]), _nan_low(r["qps"])))
                    missed.append(OperatingPoint(data, size, k, t, algo, False, best))
            reached.sort(key=lambda p: -p.run["qps"])
            missed.sort(key=lambda p: -_nan_low(p.run["recall"]))
            out += reached + missed
    return out


def _nan_low(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def fmt_qps(x: float) -> str:
    if math.isnan(x):
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"


def fmt_recall(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.4f}"


def fmt_bytes(x) -> str:
    """Index size for tables: MB with thousands separators, "–" when unknown."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return "–"
    if not value > 0 or math.isnan(value):
        return "–"
    return f"{value / 1e6:,.1f} MB"


def _seconds(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):,.1f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


OP_COLUMNS = ("data", "size", "k", "recall >", "algo", "reached", "QPS", "recall", "recall (tie-aware)", "build s",
              "index", "threads", "params")
FRONT_COLUMNS = ("data", "size", "k", "algo", "recall", "QPS", "params")


def operating_rows(points: list[OperatingPoint]) -> list[list[str]]:
    """Cells of the operating-points table (strings, :data:`OP_COLUMNS`)."""
    rows = []
    for p in points:
        r = p.run
        rows.append([p.data, p.size, str(p.k), f"{p.threshold:g}", p.algo, "yes" if p.reached else "no",
                     fmt_qps(r["qps"]) if p.reached else "–",
                     fmt_recall(r["recall"]) + ("" if p.reached else " (best)"),
                     fmt_recall(r.get("recall_tie_aware", math.nan)), _seconds(r.get("buildtime")),
                     fmt_bytes(r.get("index_bytes")), str(r.get("threads") or "–"), r["params"]])
    return rows


def frontier_rows(rows: list[dict]) -> list[list[str]]:
    """Cells of the Pareto-frontier table (strings, :data:`FRONT_COLUMNS`)."""
    out = []
    for (data, size, k), grp in groups(rows).items():
        for algo, runs in by_algo(grp).items():
            for r in pareto_frontier(runs):
                out.append([data, size, str(k), algo, fmt_recall(r["recall"]), fmt_qps(r["qps"]), r["params"]])
    return out


def markdown_table(columns: Iterable[str], rows: list[list[str]]) -> str:
    cols = list(columns)
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_report(rows: list[dict], plots: "dict[tuple[str, str, int], str] | None" = None,
                    context: dict | None = None) -> str:
    """The whole Markdown report: run context, operating points, Pareto frontiers, links to the plots."""
    parts = ["# k-NN search results\n\n"]
    if context:
        from laionknn.reporting.context import context_line

        parts.append(f"Run context: {context_line(context)}.\n\n")
    parts += [
             "Operating points: per data, size and k, the fastest run of each algorithm with recall above "
             "the threshold (0.9 for k = 10, 0.22 for hammingv2 at k = 10; 0.8 and 0.4 for k = 30); algorithms "
             "that never reach it show their best recall. QPS = queries / querytime.\n\n",
             "## Operating points\n\n", markdown_table(OP_COLUMNS, operating_rows(operating_points(rows))),
             "\n## Pareto frontier (recall vs QPS, per algorithm)\n\n",
             markdown_table(FRONT_COLUMNS, frontier_rows(rows))]
    if plots:
        parts.append("\n## Plots\n")
        for (data, size, k), name in plots.items():
            parts.append(f"\n### {data} · {size} · k={k}\n\n![recall vs QPS, {data} {size} k={k}]({name})\n")
    return "".join(parts)
