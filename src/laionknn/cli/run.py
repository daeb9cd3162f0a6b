"""`laionknn run`: the whole chain on one dataset (the main job)."""

from __future__ import annotations

import time

import click

from laionknn.cli.common import catalogs, console, print_table


@click.command()
@click.option("--size", default="100K", show_default=True, help="Synthetic subset size when --data is not given.")
@click.option("--data", default=None, help="Database name from the catalog (default: synthetic-clip768v2-n=SIZE).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: workspace runs/).")
@click.option("--k", type=int, default=None, help="Neighbours per query (default: the dataset's, 10 or 30).")
@click.option("--threads", type=int, default=None, help="Threads (default: all cores).")
@click.option("--index", "backends", multiple=True, help="Only these backends (repeatable; default: all available).")
@click.option("--queries", "n_queries", type=int, default=10_000, show_default=True,
              help="Number of synthetic queries (synthetic datasets only).")
@click.option("--quick", is_flag=True, help="Smaller grids: first build configuration, at most 3 query points.")
@click.option("--no-baselines", is_flag=True, help="Skip the projections' brute-force baselines.")
@click.option("--gold", type=click.Path(dir_okay=False), default=None,
              help="Gold-standard file of this database and query set (`laionknn gold --out`); default: the "
                   "catalog's, computed once and reused.")
@click.pass_context
def run(ctx, size, data, out_dir, k, threads, backends, n_queries, quick, no_baselines, gold):
    """Ensure data, gold standard, baselines, every available approximate index backend (brute-force
    exact and faiss-flat only when named with --index), evaluation and report, into one folder; prints
    the operating points at the end. One gold standard serves the sweep, the baselines and the scores."""
    from laionknn.indexes.mainjob import run_pipeline

    t0 = time.perf_counter()
    outcome = run_pipeline(size=size, data=data, out_dir=out_dir, k=k, quick=quick, threads=threads,
                           backends=list(backends) or None, n_queries=n_queries, catalogs=catalogs(ctx),
                           baselines=not no_baselines, gold=gold)
    from laionknn.reporting.tables import fmt_qps, fmt_recall

    rows = [[f"{p.threshold:g}", p.run.get("data", ""), p.algo, "yes" if p.reached else "no", fmt_qps(p.run["qps"]),
             fmt_recall(p.run["recall"]), fmt_recall(p.run.get("recall_tie_aware", float("nan"))),
             f"{p.run['buildtime']:.1f}"] for p in outcome.operating_points]
    print_table(f"operating points on {outcome.dataset}, k={outcome.k}: fastest run with recall > threshold",
                ["recall >", "data", "algo", "reached", "QPS", "recall", "tie-aware", "build s"], rows)
    console.print("parameters of each operating point: see the report")
    for backend, why in outcome.failed.items():
        console.print(f"[red]backend {backend} failed and is not in the report:[/red] {why}", highlight=False)
    for kind, path in outcome.report.items():
        console.print(f"{kind}: {path}")
    console.print(f"evaluation: {outcome.eval_csv}\nfolder: {outcome.out_dir}  ({time.perf_counter() - t0:.0f} s)")
