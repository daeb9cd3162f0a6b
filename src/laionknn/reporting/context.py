"""Run context for reports: the machine, the library versions, and what the run records add to each
evaluation row (threads, index size, query count, dataset), so a figure says how it was measured.

Run records are the ``runs.jsonl`` that ``laionknn search``/``run`` write beside their results; a row
of an evaluation CSV is joined to its record by the result file path.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from importlib import metadata
from pathlib import Path

from laionknn.types import BRUTE_FORCE_BACKENDS

log = logging.getLogger(__name__)

#: distributions whose versions a report states (missing ones are left out)
LIBRARIES = ("numpy", "faiss-cpu", "hnswlib", "usearch", "scann", "deglib", "rabitqlib", "pyvsag", "ngt", "voyager",
             "scalable-vs", "h5py", "matplotlib")
BRUTE_FORCE_ALGOS = BRUTE_FORCE_BACKENDS


def is_brute_force(algo: str) -> bool:
    """Exhaustive searches: drawn as reference lines, not as curves."""
    return algo in BRUTE_FORCE_ALGOS or algo.startswith("bruteforce")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def library_versions() -> dict[str, str]:
    from laionknn import __version__

    out = {"laionknn": __version__}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_context() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count() or 1, "python": platform.python_version(),
            "versions": library_versions()}


def load_run_records(csv_paths) -> dict[str, dict]:
    """Run records found in ``runs.jsonl`` beside each CSV or one folder up, keyed by resolved file."""
    by_file: dict[str, dict] = {}
    seen: set[Path] = set()
    for p in map(Path, csv_paths):
        for cand in (p.parent / "runs.jsonl", p.parent.parent / "runs.jsonl"):
            cand = cand.resolve()
            if cand in seen or not cand.is_file():
                continue
            seen.add(cand)
            with open(cand, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if rec.get("file"):
                        by_file[str(Path(rec["file"]).resolve())] = rec
    return by_file


def enrich(rows: list[dict], records: dict[str, dict]) -> None:
    """Add ``threads``, ``index_bytes``, ``n_queries`` and ``dataset`` from the run records (in place)."""
    for r in rows:
        rec = records.get(str(Path(r.get("file") or "-").resolve())) if r.get("file") else None
        for key in ("threads", "index_bytes", "n_queries", "dataset"):
            if rec is not None and key in rec:
                r[key] = rec[key]
            r.setdefault(key, None)


def run_context(rows: list[dict], given: dict | None = None) -> dict:
    """The context block of a report: the machine, and from ``given`` (the main job knows) or the
    rows: dataset names, synthetic or real data, queries and threads."""
    ctx = machine_context()
    given = dict(given or {})
    datasets = sorted({str(r["dataset"]) for r in rows if r.get("dataset")})
    ctx["datasets"] = given.get("datasets") or datasets
    if "synthetic" in given:
        ctx["synthetic"] = bool(given["synthetic"])
    elif datasets:
        ctx["synthetic"] = all(d.startswith("synthetic") for d in datasets)
    else:
        files = [str(r.get("file") or "") for r in rows]
        ctx["synthetic"] = True if files and all("synthetic" in f for f in files) else None
    for key in ("n_queries", "threads"):
        values = sorted({int(r[key]) for r in rows if r.get(key) not in (None, "")})
        ctx[key] = given.get(key) or (values if values else None)
    return ctx


def context_line(ctx: dict) -> str:
    """One line for a figure's foot: data kind, queries, threads, CPU, versions."""
    kind = {True: "synthetic data", False: "real LAION data", None: "data: not stated"}[ctx.get("synthetic")]
    parts = [kind]
    if ctx.get("n_queries"):
        q = ctx["n_queries"]
        parts.append(f"{', '.join(f'{v:,}' for v in q) if isinstance(q, list) else f'{q:,}'} queries")
    if ctx.get("threads"):
        t = ctx["threads"]
        parts.append(f"{'/'.join(map(str, t)) if isinstance(t, list) else t} threads")
    # the machine the report is written on: the main job writes it right after its runs; for old
    # CSVs it may not be where they were measured, and the line says which it is
    parts.append(f"report written on {ctx['cpu']} ({ctx['cores']} cores)")
    parts.append(" ".join(f"{k} {v}" for k, v in ctx["versions"].items()))
    return " · ".join(parts)
