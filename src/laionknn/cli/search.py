"""`laionknn search`: sweep one index backend over its grid on one dataset."""

from __future__ import annotations

from pathlib import Path

import click

from laionknn.cli.common import catalogs, console, print_table


@click.command()
@click.option("--list", "list_backends", is_flag=True, help="List the index backends, their metrics and availability.")
@click.option("--data", "data", help="Database name from the catalog, e.g. synthetic-clip768v2-n=100K.")
@click.option("--index", "backend", help="Backend name (see `laionknn search --list`).")
@click.option("--gold", type=click.Path(dir_okay=False), default=None,
              help="Gold-standard file for the recall column (`laionknn gold --out`); default: the catalog's, "
                   "computed once and reused.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False), help="TOML grid file (default: the backend's).")
@click.option("--k", type=int, default=None, help="Neighbours per query (default: the dataset's, 10 or 30).")
@click.option("--threads", type=int, default=None, help="Threads for build and search (default: all cores).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: workspace runs/).")
@click.option("--queries", "n_queries", type=int, default=10_000, show_default=True,
              help="Number of synthetic queries (synthetic datasets only).")
@click.option("--quick", is_flag=True, help="First build configuration and at most 3 query points.")
@click.option("--no-cache", is_flag=True, help="Always build; do not read or write the index cache.")
@click.option("--repeats", type=int, default=None,
              help="Timed searches after the warm-up (default: the grid's, else 3).")
@click.pass_context
def search(ctx, list_backends, data, backend, gold, grid_file, k, threads, out_dir, n_queries, quick, no_cache, repeats):
    """Build BACKEND once per build configuration on DATA, sweep its query grid, and write one
    official result file and one run record per point."""
    if list_backends:
        _print_backends()
        return
    from laionknn.errors import UsageError

    if not data or not backend:
        raise UsageError("search needs --data NAME and --index BACKEND (`laionknn search --list` lists the backends)")
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
        if gold is not None:  # named by the user: a wrong file is their error
            gold_ids = gold_for(spec, gold, target=target, k=k)[1].ids
        else:
            try:
                gold_ids = gold_for(spec, target=target)[1].ids
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


def _print_backends() -> None:
    from laionknn.indexes.registry import BACKENDS, _library_error, get_backend

    rows = []
    for name, (_, library) in BACKENDS.items():
        err = _library_error(library)
        metrics = ", ".join(sorted(m.value for m in get_backend(name).metrics)) if err is None else ""
        rows.append([name, metrics, "yes" if err is None else f"no ({err})"])
    print_table("index backends", ["backend", "metrics", "available"], rows)
