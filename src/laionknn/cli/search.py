"""`laionknn search`: sweep one index backend over its grid on one dataset."""

from __future__ import annotations

from pathlib import Path

import click

from laionknn.cli.common import catalogs, console, print_table
from laionknn.cli.options import K, REPEATS, THREADS, count


@click.command()
@click.option("--data", "data", required=True, help="Database name from the catalog, e.g. synthetic-clip768v2-n=100K.")
@click.option("--index", "backend", required=True, help="Backend name (see `laionknn search --list`).")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False), help="TOML grid file (default: the backend's).")
@click.option("--k", type=K, default=None, help="Neighbours per query, 1..1000 (default: the dataset's, 10 or 30).")
@click.option("--threads", type=THREADS, default=None, help="Threads for build and search (default: all cores).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: workspace runs/).")
@click.option("--queries", "n_queries", type=count(), default=10_000, show_default=True,
              help="Number of synthetic queries (synthetic datasets only).")
@click.option("--quick", is_flag=True, help="First build configuration and at most 3 query points.")
@click.option("--no-cache", is_flag=True, help="Always build; do not read or write the index cache.")
@click.option("--repeats", type=REPEATS, default=None,
              help="Timed searches after the warm-up (default: the grid's, else 3).")
@click.pass_context
def search(ctx, data, backend, grid_file, k, threads, out_dir, n_queries, quick, no_cache, repeats):
    """Build BACKEND once per build configuration on DATA, sweep its query grid, and write one
    official result file and one run record per point."""
    from laionknn.indexes.datasets import gold_for, open_target
    from laionknn.indexes.mainjob import default_out_dir
    from laionknn.indexes.registry import get_backend
    from laionknn.indexes.runner import sweep

    get_backend(backend)  # unknown or unavailable backend: fail before touching data
    spec, target, database = open_target(data, n_queries=n_queries, catalogs=catalogs(ctx))
    try:
        k = int(k or spec.default_k)
        out = Path(out_dir) if out_dir else default_out_dir(spec.name, k)
        gold_ids = None
        try:
            gold_ids = gold_for(spec)[1].ids
        except Exception as exc:  # recall in the records is a convenience; the sweep does not need it
            console.print(f"[yellow]no gold standard ({exc}); recall not recorded[/yellow]")
        records = sweep(backend, target, k, out, grid_file=grid_file, threads=threads, quick=quick,
                        use_cache=not no_cache, repeats=repeats, gold_ids=gold_ids)
    finally:
        database.close()
    rows = [[r["params"], f"{r['buildtime']:.2f}", f"{r['querytime']:.3f}", f"{r['qps']:.0f}",
             f"{r['recall']:.4f}" if "recall" in r else "", "yes" if r["cached"] else ""] for r in records]
    print_table(f"{backend} on {spec.name}, k={k}, {records[0]['threads'] if records else ''} threads",
                ["params", "build s", "query s", "QPS", f"recall@{k}", "cached"], rows)
    console.print(f"results and runs.jsonl in {out}")
