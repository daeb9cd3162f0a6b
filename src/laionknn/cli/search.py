"""`laionknn search`: sweep one index backend over its grid on one dataset."""

from __future__ import annotations

from pathlib import Path

import click

from laionknn.cli.common import catalogs, console, print_table
from laionknn.cli.options import (GOLD_FILE, K, MEMORY_SIZE, REPEATS, THREADS, count, dask_options, renamed)

#: option help shared by `search` and `run`
DATABASE_HELP = ("Database: a catalog name (e.g. synthetic-v3-clip768v2-n=100K) or a file: official HDF5, "
                 "ann-benchmarks HDF5, FILE#KEY, .npy or .fbin (see docs/api.md).")
QUERIES_HELP = ("Queries: a file (any database layout) or a catalog name; default: the catalog's, or found inside "
                "or beside a database file (STEM.queries.npy, .h5, .fbin).")
METRIC = click.Choice(["cosine", "dot", "l2", "hamming"])
OLD_SPELLINGS = {"--data": "--database", "--query-file": "--queries"}


@click.command(cls=renamed(OLD_SPELLINGS, ("--queries", "--n-queries")))
@click.option("--list", "list_backends", is_flag=True, help="List the index backends, their metrics and availability.")
@click.option("--database", "data", metavar="NAME|FILE", help=DATABASE_HELP)
@click.option("--queries", "query_file", metavar="FILE|NAME", default=None, help=QUERIES_HELP)
@click.option("--n-queries", "n_queries", type=count(), default=10_000, show_default=True,
              help="Number of synthetic queries (synthetic datasets only).")
@click.option("--metric", type=METRIC, default=None,
              help="Distance of a database file (default: the one the file states, else cosine; l2 for pcaN keys).")
@click.option("--index", "backend", metavar="BACKEND|MODULE:CLASS",
              help="Backend name (see `laionknn search --list`) or a plug-in index class module:Class.")
@click.option("--gold", type=GOLD_FILE, default=None,
              help="Gold-standard file for the recall column (`laionknn gold --out`); default: the catalog's, "
                   "computed once and reused (a plain database file: computed by the exact engine).")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False), help="TOML grid file (default: the backend's).")
@click.option("--k", type=K, default=None, help="Neighbours per query, 1..1000 (default: the dataset's, 10 or 30).")
@click.option("--threads", type=THREADS, default=None, help="Threads for build and search (default: all cores).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: workspace runs/).")
@click.option("--quick", is_flag=True, help="First build configuration and at most 3 query points.")
@click.option("--no-cache", is_flag=True, help="Always build; do not read or write the index cache.")
@click.option("--repeats", type=REPEATS, default=None,
              help="Timed searches after the warm-up (default: the grid's, else 3).")
@dask_options("Shard the index over a Dask cluster: a local one of --workers processes, or --scheduler.",
              "With --dask: worker processes of the local cluster.", "the database",
              "With --dask: contiguous row ranges, one index each (default: one per worker thread).")
@click.option("--route", type=click.Choice(["broadcast", "routed"]),
              help="With --dask and an IVF backend: one coarse quantizer for the whole database; broadcast sends "
                   "every query to every shard, routed only to the shards owning the lists it probes.")
@click.option("--memory-limit", "memory_limit", type=MEMORY_SIZE, metavar="SIZE",
              help="Build and search each build configuration in a child process under this hard limit (e.g. 2G); "
                   "an exceeded limit is recorded, the sweep goes on.")
@click.option("--task", type=click.Choice(["2024-2", "2024-3"]),
              help="2024 memory-capped task: limit 32G (task 2) or 64G (task 3) per 100M rows, k=30; task 3 refuses "
                   "backends that need the original vectors at search time.")
@click.pass_context
def search(ctx, list_backends, data, query_file, n_queries, metric, backend, gold, grid_file, k, threads, out_dir, quick,
           no_cache, repeats, use_dask, workers, scheduler, shards, route, memory_limit, task):
    """Build BACKEND once per build configuration on DATABASE, sweep its query grid, and write one
    official result file and one run record per point."""
    if list_backends:
        _print_backends(backend)
        return
    from laionknn.errors import UsageError

    if not data or not backend:
        raise UsageError("search needs --database NAME|FILE and --index BACKEND (`laionknn search --list` lists the backends)")
    from laionknn.indexes.datasets import gold_for, open_target
    from laionknn.indexes.mainjob import default_out_dir
    from laionknn.indexes.registry import get_backend, resolve_backend
    from laionknn.indexes.runner import check_metric, sweep

    backend = resolve_backend(backend)  # a plug-in module:Class: imported, checked, registered
    get_backend(backend)  # unknown or unavailable backend: fail before touching data
    use_dask = use_dask or bool(scheduler)
    _check_combination(backend, use_dask, route, memory_limit, task)
    spec, target, database = open_target(data, n_queries=n_queries, catalogs=catalogs(ctx), query_file=query_file,
                                         gold_file=gold, metric=metric)
    try:
        check_metric(backend, target)  # before the gold standard, which can take long to compute
        k = int(k or (30 if task else spec.default_k))
        from laionknn.indexes.memlimit import resolve_memory_limit

        limit = resolve_memory_limit(memory_limit, task, database.n)
        out = Path(out_dir) if out_dir else default_out_dir(spec.name, k)
        gold_ids = None
        if gold is not None:  # named by the user: a wrong file is their error
            gold_ids = gold_for(spec, gold, target=target, k=k)[1].ids
        else:
            try:
                gold_ids = gold_for(spec, target=target)[1].ids
            except Exception as exc:  # recall in the records is a convenience; the sweep does not need it
                console.print(f"[yellow]no gold standard ({exc}); recall not recorded[/yellow]")
        common = dict(grid_file=grid_file, quick=quick, use_cache=not no_cache, repeats=repeats, gold_ids=gold_ids)
        if use_dask:
            from laionknn.distributed.engine import connect
            from laionknn.distributed.search import check_shards
            from laionknn.distributed.sweep import sweep_dask

            if shards:
                check_shards(shards, database.n, spec.name)  # before starting or reaching a cluster
            with connect(scheduler, workers, threads or 1) as client:
                n_shards = shards or max(1, sum(client.nthreads().values()))
                records = sweep_dask(backend, target, k, out, client=client, shards=n_shards, layout=route or "rows",
                                     threads=threads, **common)
        else:
            records = sweep(backend, target, k, out, threads=threads, memory_limit=limit, task=task, **common)
    finally:
        database.close()
    print_records(records, f"{backend} on {spec.name}, k={k}, {records[0]['threads'] if records else ''} threads", k)
    console.print(f"results and runs.jsonl in {out}")


def _check_combination(backend: str, use_dask: bool, route: str | None, memory_limit: int | None,
                       task: str | None) -> None:
    from laionknn.errors import UsageError

    if route and not use_dask:
        raise UsageError("--route places inverted lists on Dask shards; add --dask (or --scheduler ADDRESS)")
    if use_dask and (memory_limit or task):
        raise UsageError("--memory-limit/--task run each build in a local child process and cannot be combined "
                         "with --dask; give the Dask workers their own limit (dask worker --memory-limit)")
    if task:
        from laionknn.indexes.memlimit import check_task_backend

        check_task_backend(task, backend)


def print_records(records: list[dict], title: str, k: int) -> None:
    """The sweep's table; a point that exceeded its memory limit shows what happened instead of timings."""
    def num(value, fmt):
        return "" if value is None else format(value, fmt)

    rows = [[r["params"], num(r["buildtime"], ".2f"), num(r["querytime"], ".3f"), num(r["qps"], ".0f"),
             f"{r['recall']:.4f}" if r.get("recall") is not None else "",
             r.get("outcome_detail") or ("yes" if r.get("cached") else "")] for r in records]
    print_table(title, ["params", "build s", "query s", "QPS", f"recall@{k}", "cached / memory"], rows)


def _print_backends(plugin: str | None = None) -> None:
    """Every backend: built-in ones, the installed entry points (``laionknn.backends``) and ``plugin``
    (``--list --index module:Class``), whether its library imports and, when not, why."""
    from laionknn.errors import LaionKnnError
    from laionknn.indexes.mainjob import BRUTE_FORCE
    from laionknn.indexes.registry import (BACKENDS, ENTRY_NAMES, PEERS, PLUGINS, VARIANTS, _library_error, cpu_error,
                                           get_backend, known_backends, resolve_backend)

    known_backends()  # registers the entry points
    if plugin:
        resolve_backend(plugin)
    swept = {**{b: "with --peers" for b in PEERS}, **{b: "with --all" for b in VARIANTS},
             **{b: "only with --index" for b in BRUTE_FORCE}}
    rows = []
    for name, (target, library) in BACKENDS.items():
        err = cpu_error(name) or _library_error(library)  # the CPU first: never call a library it would crash
        metrics = ""
        if err is None:
            try:
                metrics = ", ".join(sorted(m.value for m in get_backend(name).metrics))
            except LaionKnnError as exc:  # a plug-in that imports but fails its checks
                err = str(exc)
        source = ("entry point" if name in ENTRY_NAMES else "plug-in" if name in PLUGINS
                  else "built-in" if target.startswith("laionknn.indexes.") else "registered")
        rows.append([name, source, metrics, "yes" if err is None else f"no ({err})", swept.get(name, "yes")])
    print_table("index backends", ["backend", "source", "metrics", "available", "in `run`"], rows)
