"""`laionknn results check`, `laionknn eval` and `laionknn report`."""

from __future__ import annotations

import math
import sys

import click

from laionknn.cli.common import catalogs, console, print_table, quiet
from laionknn.cli.options import K, count


@click.group()
def results() -> None:
    """Official result files: validate files written by anyone."""


@results.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--n-database", "n_database", metavar="ROWS",
              help="Database rows: ids above it are errors (a number, or an official size such as 10M).")
@click.option("--k", type=K, help="Required neighbours per query (fewer columns is an error).")
@click.option("--n-queries", "n_queries", type=count(), help="Expected number of queries (rows).")
@click.option("--organisers", type=click.Choice(["2023", "2024"]),
              help="Also predict what that year's official scorer does with each file (eval.py 0a6f90de; "
                   "evaluate-sisap24.jl): crashes, skips, mislabelled runs.")
@click.pass_context
def check_cmd(ctx: click.Context, files: tuple[str, ...], n_database: str | None, k: int | None,
              n_queries: int | None, organisers: str | None) -> None:
    """Validate result files (folders are searched for *.h5): one line per problem, exit 1 if any."""
    from laionknn.evaluation import find_result_files
    from laionknn.results import check_result_file
    from laionknn.results.check import database_rows

    n_db = database_rows(n_database)
    paths = find_result_files(files, results_only=False)
    bad = 0
    for path in paths:
        problems = check_result_file(path, n_db, k, n_queries=n_queries,
                                     organisers=int(organisers) if organisers else None)
        for p in problems:
            click.echo(f"{path}: {p}")
        if problems:
            bad += 1
        elif not quiet(ctx):
            click.echo(f"{path}: ok")
    if not quiet(ctx):
        click.echo(f"{bad} of {len(paths)} file(s) with problems", err=True)
    if bad:
        sys.exit(1)


@click.command("eval")
@click.option("--results", "results_paths", multiple=True, required=True, metavar="DIR|FILE",
              help="Result files, or folders searched recursively for *.h5 (more may follow as arguments).")
@click.argument("more", nargs=-1, type=click.Path(), metavar="[DIR|FILE]...")
@click.option("--gold", required=True, metavar="NAME|FILE", help="Gold standard: catalog name or file.")
@click.option("--k", type=K, help="Neighbours scored, 1..1000 (default: the result files' width when they all agree; "
                                 "otherwise --k is required).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the CSV here (default: standard output).")
@click.option("--database", metavar="NAME|FILE", help="Database the gold was computed on (exact tie-aware recall).")
@click.option("--queries", metavar="NAME|FILE", help="Queries of the gold standard (with --database).")
@click.option("--metric", default="cosine", show_default=True,
              type=click.Choice(["cosine", "dot", "l2", "hamming"]), help="Distance for --database/--queries.")
@click.option("--rule", type=click.Choice(["first-k", "all-columns", "julia-2024"]), default=None,
              help="Recall rule: first-k (default; eval.py 0a6f90de, 2023-08-09), all-columns (eval.py before "
                   "2023-03-06, 084394b4; SimilaritySearch.jl v0.11.10 macrorecall), julia-2024 (all-columns summed "
                   "per query in order, as evaluate-sisap24.jl). The CSV's recall_rule column names it.")
@click.option("--all-columns", is_flag=True, help="Same as --rule all-columns.")
@click.option("--skip-bad", is_flag=True, help="Skip (with a warning) files that cannot be scored.")
@click.pass_context
def eval_cmd(ctx: click.Context, results_paths: tuple[str, ...], more: tuple[str, ...], gold: str, k: int | None,
             out: str | None, database: str | None, queries: str | None, metric: str, rule: str | None,
             all_columns: bool, skip_bad: bool) -> None:
    """Score result files against a gold standard into a CSV (official columns, then k, qps,
    recall_tie_aware, file)."""
    from laionknn.evaluation import evaluate, write_eval_csv

    rows = evaluate(list(results_paths) + list(more), gold, k, database=database, queries=queries, metric=metric,
                    all_columns=all_columns, skip_bad=skip_bad, catalogs=catalogs(ctx), rule=rule)
    if out is None:
        click.echo(write_eval_csv(rows), nl=False)
        return
    write_eval_csv(rows, out)
    if not quiet(ctx):
        table = [[r["data"], r["size"], r["algo"], r["params"], f"{r['recall']:.4f}", f"{r['recall_tie_aware']:.4f}",
                  "" if math.isnan(r["qps"]) else f"{r['qps']:,.0f}"] for r in rows]
        print_table(f"recall@{rows[0]['k']}", ["data", "size", "algo", "params", "recall", "tie-aware", "QPS"], table)
        console.print(f"wrote {len(rows)} rows to {out}")


@click.command("report")
@click.argument("csvs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Output folder (default: <LAIONKNN_HOME>/runs/report).")
@click.pass_context
def report(ctx: click.Context, csvs: tuple[str, ...], out_dir: str | None) -> None:
    """Operating points, Pareto frontiers, recall-vs-QPS plots and an HTML page from eval CSVs."""
    from laionknn import workspace
    from laionknn.reporting import write_report

    paths = write_report(csvs, out_dir or workspace.runs_dir() / "report")
    if not quiet(ctx):
        for key, path in paths.items():
            click.echo(f"{key:>28}  {path}")
