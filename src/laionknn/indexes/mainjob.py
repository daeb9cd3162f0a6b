"""The main job: the whole chain on one dataset, into one output folder.

ensure data → gold standard → projections' baselines → sweep every available backend on its default
grid → evaluate (CSV) → report (Markdown, PNG, HTML) → operating points.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from laionknn import workspace
from laionknn.catalog.manifest import synthetic_database_name
from laionknn.indexes.datasets import gold_for, open_target
from laionknn.indexes.registry import available_backends
from laionknn.indexes.runner import sweep

log = logging.getLogger(__name__)
EVAL_COLUMNS = ["data", "size", "algo", "buildtime", "querytime", "params", "recall", "k", "qps",
                "recall_tie_aware", "file"]
THRESHOLDS = {10: 0.9, 30: 0.8}


@dataclass
class RunOutcome:
    out_dir: Path
    eval_csv: Path
    report: dict
    runs: Path
    operating_points: list[dict] = field(default_factory=list)
    baselines_csv: Path | None = None
    backends: list[str] = field(default_factory=list)


def default_out_dir(dataset: str, k: int) -> Path:
    return workspace.runs_dir() / f"{dataset}-k{k}"


def run_pipeline(*, size: str = "100K", data: str | None = None, out_dir: "str | os.PathLike[str] | None" = None,
                 k: int | None = None, quick: bool = False, threads: int | None = None,
                 backends: list[str] | None = None, n_queries: int = 10_000, catalogs=None,
                 baselines: bool = True) -> RunOutcome:
    """Run the chain on ``data`` (default: the synthetic clip768v2 database of ``size``)."""
    name = data or synthetic_database_name(size)
    spec, target, database = open_target(name, n_queries=n_queries, catalogs=catalogs)
    try:
        k = int(k or spec.default_k)
        out = Path(out_dir) if out_dir else default_out_dir(spec.name, k)
        out.mkdir(parents=True, exist_ok=True)
        gold_path, gold = gold_for(spec, catalogs=catalogs)
        baselines_csv = _baselines(spec.name, k, out) if baselines else None
        chosen = backends or available_backends(spec.metric)
        log.info("sweeping %s on %s", ", ".join(chosen), spec.name)
        files: list[Path] = []
        for backend in chosen:
            records = sweep(backend, target, k, out, threads=threads, quick=quick, gold_ids=gold.ids)
            files += [Path(r["file"]) for r in records]
    finally:
        database.close()
    eval_csv = evaluate_to_csv(files, gold_path, k, out / "evaluation.csv")
    csvs = [eval_csv] + ([baselines_csv] if baselines_csv else [])
    report = _report(csvs, out)
    points = operating_points(eval_csv, k)
    return RunOutcome(out, eval_csv, report, out / "runs.jsonl", points, baselines_csv, list(chosen))


def _baselines(dataset: str, k: int, out: Path) -> Path | None:
    """The projections' brute-force baselines (PCA, sketches) when that part of the package is present."""
    try:
        from laionknn.projections import run_baselines
    except ImportError:
        log.warning("projections' baselines skipped: laionknn.projections.run_baselines is not installed")
        return None
    return Path(run_baselines(dataset, [k], out / "baselines"))


def evaluate_to_csv(paths: list[Path], gold_path: Path, k: int, csv_path: Path) -> Path:
    """Score result files against the gold standard; one CSV row per file (EVAL_COLUMNS)."""
    from laionknn.fsutil import atomic_path

    try:
        from laionknn.evaluation import evaluate
    except ImportError:
        rows = _evaluate_minimal(paths, gold_path, k)
    else:
        rows = evaluate([str(p) for p in paths], str(gold_path), k=k)
    rows = [r if isinstance(r, dict) else getattr(r, "__dict__", dict(r)) for r in rows]
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        columns = list(dict.fromkeys(EVAL_COLUMNS + [c for r in rows for c in r]))
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def _evaluate_minimal(paths: list[Path], gold_path: Path, k: int) -> list[dict]:
    """Used only while laionknn.evaluation is absent: official id-only recall and QPS."""
    import numpy as np

    from laionknn.io import read_gold, read_result

    gold = read_gold(gold_path)
    rows = []
    for p in paths:
        res = read_result(p)
        hits = sum(len(set(a[:k].tolist()) & set(b[:k].tolist())) for a, b in zip(res.ids, gold.ids))
        recall = hits / (len(res.ids) * k)
        kth = gold.dists[:, k - 1]
        rows.append({"data": res.meta["data"], "size": res.meta["size"], "algo": res.algo,
                     "buildtime": res.buildtime, "querytime": res.querytime, "params": res.meta["params"],
                     "recall": recall, "k": k, "qps": len(res.ids) / res.querytime,
                     "recall_tie_aware": float(np.mean(res.dists[:, :k] <= kth[:, None] + 1e-6)), "file": str(p)})
    return rows


def _report(csvs: list[Path], out: Path) -> dict:
    try:
        from laionknn.reporting import write_report
    except ImportError:
        log.warning("laionknn.reporting is not installed: writing a plain Markdown table only")
        return {"markdown": _plain_report(csvs[0], out / "report.md")}
    return dict(write_report([str(c) for c in csvs], str(out)))


def _plain_report(csv_path: Path, md: Path) -> Path:
    rows = list(csv.DictReader(open(csv_path)))
    lines = ["| algo | params | recall | qps |", "|---|---|---|---|"]
    lines += [f"| {r['algo']} | {r['params']} | {float(r['recall']):.4f} | {float(r['qps']):.0f} |" for r in rows]
    md.write_text("\n".join(lines) + "\n")
    return md


def operating_points(eval_csv: Path, k: int) -> list[dict]:
    """Per algorithm: best QPS among points with recall ≥ the challenge threshold for ``k`` (0.9 at
    k=10, 0.8 at k=30, else 0.9), and the best recall reached. Sorted by that QPS, descending."""
    threshold = THRESHOLDS.get(k, 0.9)
    best: dict[str, dict] = {}
    with open(eval_csv, newline="") as f:
        for r in csv.DictReader(f):
            algo, recall, qps = r["algo"], float(r["recall"]), float(r["qps"])
            b = best.setdefault(algo, {"algo": algo, "threshold": threshold, "qps": None, "params": "",
                                       "recall": None, "best_recall": 0.0, "buildtime": float(r["buildtime"])})
            b["best_recall"] = max(b["best_recall"], recall)
            if recall >= threshold and (b["qps"] is None or qps > b["qps"]):
                b.update(qps=qps, params=r["params"], recall=recall, buildtime=float(r["buildtime"]))
    return sorted(best.values(), key=lambda b: -(b["qps"] or 0.0))
