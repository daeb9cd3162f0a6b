"""`laionknn gold`: exact gold standards (official layout) with the certified exact engine."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from laionknn.cli.common import catalogs, console, print_table
from laionknn.cli.options import K, MEMORY_SIZE, THREADS, count, dask_options, number


def resolve_input(text: str, ctx: click.Context | None = None, role: str = "database") -> Path:
    """A FILE (any layout of :mod:`laionknn.io.formats`, as an official-layout path), or a catalog NAME
    made present locally (download or synthesise)."""
    from laionknn.io.formats import user_path

    path = user_path(text, role)
    if path is not None:
        return path
    path = Path(text).expanduser()
    from laionknn.catalog import local_path, resolve
    from laionknn.errors import CatalogError, UsageError

    try:
        record = resolve(text, catalogs(ctx))
    except CatalogError:
        if path.suffix in (".h5", ".hdf5") or "/" in text:
            raise UsageError(f"{text}: no such file, and not a catalog name; check the path") from None
        raise
    local = local_path(record)
    if local.exists():
        return local
    try:
        from laionknn.catalog import ensure
        return Path(ensure(record))
    except ModuleNotFoundError:
        raise CatalogError(f"{record.name} is not present at {local}; fetch it first with "
                           f"`laionknn datasets fetch {record.name}`") from None


@click.command()
@click.option("--database", required=True, metavar="NAME|FILE", help="Database: catalog name or HDF5 file.")
@click.option("--queries", required=True, metavar="NAME|FILE", help="Queries: catalog name or HDF5 file.")
@click.option("--k", "k", type=K, default=1000, show_default=True, help="Neighbours per query.")
@click.option("--normalize", is_flag=True, help="L2-normalise database and queries (cosine; 2023/2024-public gold).")
@click.option("--metric", type=click.Choice(["dot", "cosine", "l2", "hamming"]), default="dot", show_default=True,
              help="dot (1 - dot), l2 (squared, projections), hamming (uint64 sketches).")
@click.option("--memory", type=MEMORY_SIZE, default="8G", show_default=True, help="Memory budget for blocks and state.")
@click.option("--out", type=click.Path(), help="Output file, or a folder (existing, or ending with /) to write the "
              "default file name into (default: under the workspace gold/).")
@click.option("--resume", is_flag=True, help="Continue from this output's checkpoint (must match the inputs).")
@click.option("--threads", type=THREADS, help="Threads for BLAS and kernels (default: all cores).")
@click.option("--blas", type=click.Choice(["auto", "numpy", "faiss", "bf16", "int16"]), default="auto", show_default=True,
              help="Matrix-multiply backend for the filter stage: float32 BLAS (numpy, faiss) or the certified "
                   "bf16 or int16 filter (auto: bf16 with AMX, int16 with AVX512-VNNI, else float32).")
@click.option("--checkpoint-every", type=number(min=0), default=30.0, show_default=True,
              help="Seconds between checkpoints (0: after every row range).")
@dask_options("Run on Dask: a local cluster of --workers processes (or --scheduler). Same output file.",
              "With --dask: worker processes of the local cluster (--threads = threads per worker).", "the files",
              "With --dask: row ranges (tasks); default 2 per worker thread.")
@click.option("--split-every", type=count(min=2), default=8, show_default=True,
              help="With --dask: fan-in of the merge tree.")
@click.option("--block-rows", type=count(), hidden=True, help="Override the planned block size.")
@click.option("--query-batch", type=count(), hidden=True, help="Override the planned query batch.")
@click.pass_context
def gold(ctx: click.Context, database: str, queries: str, k: int, normalize: bool, metric: str, memory: int,
         out: str | None, resume: bool, threads: int | None, blas: str, checkpoint_every: float,
         use_dask: bool, workers: int, scheduler: str | None, shards: int | None, split_every: int,
         block_rows: int | None, query_batch: int | None) -> None:
    """Exact k nearest neighbours of every query, written as an official gold-standard file.

    knns are int32 1-based, dists float32 ascending (1 - dot), identical to a float64 computation
    (ties broken by the lower id). The file also records how many candidates were rescored in
    float64 and, per query, whether ranks k and k+1 are tied (dataset tie_at_k).
    """
    from laionknn.exact.gold import gold_standard
    from laionknn.io import read_gold

    db_path = resolve_input(database, ctx)
    q_path = resolve_input(queries, ctx, "queries")
    t0 = time.perf_counter()
    if use_dask or scheduler:
        path = _gold_dask(db_path, q_path, k, normalize=normalize, out=out, memory=memory, resume=resume,
                          metric=metric, threads=threads, blas=blas, workers=workers, scheduler=scheduler,
                          shards=shards, split_every=split_every)
    else:
        path = gold_standard(db_path, q_path, k, normalize=normalize, out=out, memory=memory, resume=resume,
                             metric=metric, threads=threads, blas=blas, block_rows=block_rows,
                             query_batch=query_batch, checkpoint_every=checkpoint_every)
    seconds = time.perf_counter() - t0
    res = read_gold(path)
    a = res.attrs
    print_table(None, ["output", "queries", "k", "metric", "rescored", "ties at k", "seconds"],
                [[str(path), res.n_queries, res.k, a.get("metric"), a.get("n_rescored"), a.get("n_tie_at_k"),
                  f"{seconds:.1f}"]])
    if not (ctx.obj or {}).get("quiet"):
        console.print(f"wrote {path}", highlight=False)


def _gold_dask(db_path: Path, q_path: Path, k: int, *, resume: bool, workers: int, scheduler: str | None,
               threads: int | None, **kw) -> Path:
    """``gold --dask``: the Dask engine on a local cluster or the cluster at ``scheduler``."""
    from laionknn.distributed.engine import connect, gold_standard_dask
    from laionknn.errors import UsageError

    if resume:
        raise UsageError("--resume applies to the local engine's checkpoints; with --dask a lost task is "
                         "recomputed by Dask, so run again without --resume")
    threads_per_task = threads or (None if scheduler else max(1, (os.cpu_count() or 1) // workers))
    with connect(scheduler, workers, threads_per_task) as client:
        return gold_standard_dask(db_path, q_path, k, client=client, threads=threads_per_task, **kw)
