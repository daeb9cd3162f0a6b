"""The main job: the whole chain on one dataset, into one output folder.

ensure data → gold standard (computed or fetched once, or the file given) → projections' baselines
(scored against that same gold) → sweep every available approximate backend on its default grid →
evaluate (CSV, same gold) → report (Markdown, plots, HTML) → operating points.

Brute-force backends (:data:`BRUTE_FORCE`) are not swept unless named: the exact gold standard already
is the brute-force answer, and sweeping them cost `make demo` minutes for two points at recall 1.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from laionknn import workspace
from laionknn.errors import LaionKnnError
from laionknn.catalog.manifest import synthetic_database_name
from laionknn.indexes.datasets import PlainDataset, check_gold_path, gold_for, open_target
from laionknn.indexes.registry import PEERS, VARIANTS, available_backends
from laionknn.indexes.runner import sweep
from laionknn.validation import check_k, check_memory_size, check_optional, check_threads
from laionknn.types import BRUTE_FORCE_BACKENDS

log = logging.getLogger(__name__)


#: backends that search exhaustively; the main job leaves them out unless named with --index
BRUTE_FORCE = BRUTE_FORCE_BACKENDS


@dataclass
class RunOutcome:
    out_dir: Path
    eval_csv: Path
    report: dict
    runs: Path
    operating_points: list[dict] = field(default_factory=list)
    baselines_csv: Path | None = None
    backends: list[str] = field(default_factory=list)
    dataset: str = ""
    k: int = 10
    failed: dict = field(default_factory=dict)


def default_out_dir(dataset: str, k: int) -> Path:
    return workspace.runs_dir() / f"{dataset}-k{k}"


def run_pipeline(*, size: str = "100K", data: str | None = None, out_dir: "str | os.PathLike[str] | None" = None,
                 k: int | None = None, quick: bool = False, threads: int | None = None,
                 backends: list[str] | None = None, n_queries: int = 10_000, catalogs=None,
                 baselines: bool = True, peers: bool = False, all_backends: bool = False,
                 memory_limit: "str | int | None" = None,
                 task: str | None = None, query_file=None,
                 gold: "str | os.PathLike[str] | None" = None, metric=None, seed: int = 0) -> RunOutcome:
    """Run the chain on ``data`` (default: the synthetic clip768v2 database of ``size``): a catalog
    name, or a file in any layout of :mod:`laionknn.io.formats` (queries and gold from ``query_file``,
    ``gold`` or found inside or beside it; ``metric`` overrides the file's). ``seed``: of the synthetic
    dataset when ``data`` is not given. Without ``backends`` it sweeps every available
    approximate backend, less the peer libraries unless ``peers`` and less the second variants of a library
    (:data:`laionknn.indexes.registry.VARIANTS`) unless ``all_backends`` (which implies ``peers``; brute
    force, :data:`BRUTE_FORCE`, only when named).
    ``memory_limit`` / ``task``: memory-capped sweeps (:mod:`laionknn.indexes.memlimit`); with ``task``
    and no ``backends`` only the backends the task allows are swept. A rerun replaces the run records
    of the points it measures again (``runs.jsonl`` keeps one record per point).

    ``gold``: a gold-standard file for this database and query set (else the catalog's, computed or
    fetched once; for a plain file, else computed by the exact engine); the sweep, the baselines and
    the evaluation all score against it."""
    from laionknn.indexes import memlimit

    # every value checked before any work (data, gold standard, baselines)
    k, threads = check_optional(check_k, k), check_optional(check_threads, threads)
    memory_limit = check_optional(check_memory_size, memory_limit, "--memory-limit")
    if task:
        memlimit.task_preset(task)
    if gold is not None:
        check_gold_path(gold)
    name = data or synthetic_database_name(size, seed)
    if backends:
        from laionknn.indexes.registry import resolve_backend

        backends = [resolve_backend(b) for b in backends]  # plug-ins (module:Class) checked before any work
    for backend in (backends or []) if task else []:
        memlimit.check_task_backend(task, backend)
    spec, target, database = open_target(name, n_queries=n_queries, catalogs=catalogs, query_file=query_file,
                                         gold_file=gold, metric=metric)
    try:
        limit = memlimit.resolve_memory_limit(memory_limit, task, database.n)
        k = int(k or (30 if task else spec.default_k))
        out = Path(out_dir) if out_dir else default_out_dir(spec.name, k)
        out.mkdir(parents=True, exist_ok=True)
        gold_path, gold_std = gold_for(spec, gold, target=target, k=k)
        baselines_csv = _baselines(spec, k, out, gold_path) if baselines else None
        chosen = backends or [b for b in available_backends(spec.metric)
                              if b not in BRUTE_FORCE and (peers or all_backends or b not in PEERS)
                              and (all_backends or b not in VARIANTS)]
        if task and not backends:
            chosen = memlimit.task_backends(task, chosen)
        log.info("sweeping %s on %s", ", ".join(chosen), spec.name)
        files: list[Path] = []
        failed: dict[str, str] = {}
        for backend in chosen:
            try:
                records = sweep(backend, target, k, out, threads=threads, quick=quick, gold_ids=gold_std.ids,
                                memory_limit=limit, task=task, replace_records=True)
            except Exception as exc:  # one library's failure must not cost the other backends' results
                if backends:  # the user named this backend: their error, say it
                    raise
                log.error("backend %s failed and is left out of the report: %s", backend, exc)
                failed[backend] = f"{type(exc).__name__}: {exc}"
                continue
            files += [Path(r["file"]) for r in records if r["file"]]
        if not files:
            raise LaionKnnError(f"no backend produced a result file on {spec.name}"
                                + (f" (failures: {'; '.join(f'{b}: {e}' for b, e in failed.items())})" if failed else ""))
    finally:
        database.close()
    eval_csv = evaluate_to_csv(files, gold_path, k, out / "evaluation.csv")
    csvs = [eval_csv] + ([baselines_csv] if baselines_csv else [])
    report = _report(csvs, out, {"datasets": [spec.name], "synthetic": spec.synthetic,
                                 "n_queries": int(len(target.queries)), "threads": int(threads or os.cpu_count() or 1)})
    points = operating_points(csvs, k)
    return RunOutcome(out, eval_csv, report, out / "runs.jsonl", points, baselines_csv,
                      [b for b in chosen if b not in failed], spec.name, k, failed)


# The main job keeps the baselines table short enough for `make demo` (< 10 min on 2 cores): the
# projections the challenge shipped (pca32, pca96, BinWalk) and the best learned sketch (cfsrp) at 256 and
# 1024 bits. `laionknn baselines` runs the full table (every method, 64...1024 bits).
MAINJOB_SKETCH_BITS = (256, 1024)
MAINJOB_SKETCH_METHODS = ("cfsrp",)


def _baselines(spec, k: int, out: Path, gold_path: Path) -> Path | None:
    """The projections' brute-force baselines (PCA, BinWalk, learned sketches) as an evaluation CSV,
    on the database and queries of the sweep and scored against its gold (never a second one);
    clip768 data only: the projections start from the 768-d vectors."""
    from laionknn.catalog import local_path
    from laionknn.projections import run_baselines

    kwargs = dict(bits=MAINJOB_SKETCH_BITS, methods=MAINJOB_SKETCH_METHODS, sketch_fit_rows=50_000)
    if isinstance(spec, PlainDataset):
        if spec.family != "clip768v2":
            log.info("baselines skipped: %s holds %s data, the projections start from clip768 vectors",
                     spec.name, spec.family)
            return None
        return Path(run_baselines(None, [k], out / "baselines", database=spec.database_path,
                                  queries=spec.queries_path, gold=gold_path, **kwargs))
    return Path(run_baselines(None, [k], out / "baselines", database=local_path(spec.database),
                              queries=local_path(spec.queries), gold=gold_path, **kwargs))


def evaluate_to_csv(paths: list[Path], gold_path: Path, k: int, csv_path: Path) -> Path:
    """Score result files against the gold standard into an evaluation CSV (EVAL_COLUMNS)."""
    from laionknn.evaluation import evaluate, write_eval_csv

    rows = evaluate([str(p) for p in paths], str(gold_path), k=k)
    return Path(write_eval_csv(rows, csv_path))


def _report(csvs: list[Path], out: Path, context: dict | None = None) -> dict:
    from laionknn.reporting import write_report

    return dict(write_report([str(c) for c in csvs], str(out), context=context))


def operating_points(csvs: list[Path], k: int) -> list:
    """The challenge's operating points (laionknn.reporting): per algorithm, the fastest run with
    recall above the threshold for ``k`` (0.9 at k=10; 0.8 and 0.4 at k=30), else its best run."""
    from laionknn.reporting import load_eval_csv, operating_points as points

    return [p for p in points(load_eval_csv(csvs)) if p.k == k]
