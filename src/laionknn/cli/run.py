"""`laionknn run`: the whole chain on one dataset (the main job)."""

from __future__ import annotations

import time

import click

from laionknn.cli.common import catalogs, console, print_table
from laionknn.cli.options import GOLD_FILE, K, MEMORY_SIZE, SEED, THREADS, count, renamed
from laionknn.cli.search import DATABASE_HELP, METRIC, OLD_SPELLINGS, QUERIES_HELP


@click.command(cls=renamed(OLD_SPELLINGS, ("--queries", "--n-queries")))
@click.option("--size", default="100K", show_default=True, help="Synthetic subset size when --database is not given.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the synthetic dataset when --database is not given (0: the standard names).")
@click.option("--database", "data", default=None, metavar="NAME|FILE",
              help=DATABASE_HELP + " Default: synthetic-v3-clip768v2-n=SIZE.")
@click.option("--queries", "query_file", metavar="FILE|NAME", default=None, help=QUERIES_HELP)
@click.option("--n-queries", "n_queries", type=count(), default=10_000, show_default=True,
              help="Number of synthetic queries (synthetic datasets only).")
@click.option("--metric", type=METRIC, default=None,
              help="Distance of a database file (default: the one the file states, else cosine; l2 for pcaN keys).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: workspace runs/).")
@click.option("--k", type=K, default=None, help="Neighbours per query, 1..1000 (default: the dataset's, 10 or 30).")
@click.option("--threads", type=THREADS, default=None, help="Threads (default: all cores).")
@click.option("--index", "backends", multiple=True,
              help="Only these backends (repeatable; default: all available but the peer libraries).")
@click.option("--peers", is_flag=True, help="Also sweep the peer libraries (deglib, rabitqlib, VSAG, NGT, Voyager, SVS, "
                                            "faiss RaBitQ/NSG); benchmarks/peers.py runs them all.")
@click.option("--all", "all_backends", is_flag=True,
              help="Every available approximate backend: the peer libraries and the second variants of a library "
                   "(faiss-ivfflat, faiss-hnsw, faiss-hnswsq8, usearch-f32/f16) too.")
@click.option("--quick", is_flag=True, help="Smaller grids: first build configuration, at most 3 query points.")
@click.option("--no-baselines", is_flag=True, help="Skip the projections' brute-force baselines.")
@click.option("--memory-limit", "memory_limit", type=MEMORY_SIZE, metavar="SIZE",
              help="Each build configuration in a child process under this hard limit; exceeded limits are recorded.")
@click.option("--task", type=click.Choice(["2024-2", "2024-3"]),
              help="2024 memory-capped task preset (32G / 64G per 100M rows, k=30; task 3: no originals).")
@click.option("--gold", type=GOLD_FILE, default=None,
              help="Gold-standard file of this database and query set (`laionknn gold --out`); default: the "
                   "catalog's, computed once and reused (a plain database file: computed by the exact engine).")
@click.pass_context
def run(ctx, size, seed, data, query_file, n_queries, metric, out_dir, k, threads, backends, peers, all_backends, quick,
        no_baselines, memory_limit, task, gold):
    """Ensure data, gold standard, baselines, every available approximate index backend (brute-force
    exact and faiss-flat only when named with --index; peer libraries with --peers; second variants of a
    library with --all), evaluation and
    report, into one folder; prints the operating points at the end. One gold standard serves the
    sweep, the baselines and the scores."""
    from laionknn.indexes.mainjob import run_pipeline

    t0 = time.perf_counter()
    outcome = run_pipeline(size=size, data=data, out_dir=out_dir, k=k, quick=quick, threads=threads,
                           backends=list(backends) or None, n_queries=n_queries, catalogs=catalogs(ctx),
                           baselines=not no_baselines, peers=peers, all_backends=all_backends,
                           memory_limit=memory_limit, task=task,
                           query_file=query_file, gold=gold, metric=metric, seed=seed)
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
