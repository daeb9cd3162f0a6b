"""``laionknn project pca|binwalk|sketch`` and ``laionknn baselines``."""

from __future__ import annotations

from pathlib import Path

import click

from laionknn.cli.common import catalogs, console, print_table
from laionknn.cli.options import K, SEED, count, renamed


def _ints(text: str, what: str) -> list[int]:
    from laionknn.errors import UsageError

    try:
        return [int(t) for t in str(text).replace(" ", "").split(",") if t]
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated integers such as 10,30, got {text!r}") from None


def _fit_or_load(ctx, fit_on, model_path, out_dir, fit, load, default_name, matches):
    """Fit a model on ``fit_on`` (saved to ``model_path`` or ``out_dir/default_name(src)``) or load
    ``model_path``; ``matches(model)`` returns an error message when a loaded model does not fit."""
    from laionknn.errors import UsageError
    from laionknn.io import VectorFile
    from laionknn.projections import apply as pa

    if fit_on:
        src = pa.resolve_input(fit_on, catalogs(ctx))
        with VectorFile(src) as vf:
            model = fit(vf)
        mpath = Path(model_path) if model_path else out_dir / default_name(src)
        model.save(mpath)
        return model, mpath
    if model_path:
        model = load(model_path)
        problem = matches(model)
        if problem:
            raise UsageError(f"{model_path}: {problem}")
        return model, Path(model_path)
    raise UsageError("give --fit-on NAME|FILE to fit a model, or --model FILE to use one")


@click.group()
def project() -> None:
    """Project clip768 files: PCA, official BinWalk sketches, learned sketches."""


@project.command("pca")
@click.option("--dims", type=count(max=768), required=True, help="Number of components (32 and 96 give the official pca32/pca96).")
@click.option("--fit-on", "fit_on", help="Catalog name or file the model is fitted on.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False),
              help="Use (or, with --fit-on, write) this .npz model; default: beside the outputs.")
@click.option("--fit-rows", type=count(), default=None, help="Fit on N rows only (see --sample).")
@click.option("--sample", type=click.Choice(["first", "random"]), default="first", show_default=True,
              help="Which N rows: the first N (reads a prefix) or a seeded uniform sample.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--apply", "apply_to", multiple=True, help="Catalog name or file to project (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: workspace projections/).")
@click.pass_context
def pca_cmd(ctx, dims, fit_on, model_path, fit_rows, sample, seed, apply_to, out) -> None:
    """Fit a PCA on L2-normalised, mean-centred rows (no whitening) and project files with it."""
    from laionknn.projections import apply as pa
    from laionknn.projections.pca import PCAModel, fit_pca

    out_dir = pa.out_dir_or_default(out)
    model, mpath = _fit_or_load(ctx, fit_on, model_path, out_dir,
                                lambda vf: fit_pca(vf, dims, fit_rows=fit_rows, sample=sample, seed=seed),
                                PCAModel.load, lambda src: f"pca{dims}-model-{src.stem}.npz",
                                lambda m: m.dims != dims and f"has {m.dims} components, but --dims {dims} was asked")
    console.print(f"model: {mpath} ({model.n_fit} rows, {model.dims} dims keep {model.explained_ratio:.3f} of the variance)")
    for item in apply_to:
        path = pa.pca_file(model, pa.resolve_input(item, catalogs(ctx)), out_dir)
        console.print(f"wrote {path}")


@project.command("binwalk")
@click.option("--apply", "apply_to", multiple=True, required=True, help="Catalog name or clip768 file (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: workspace projections/).")
@click.pass_context
def binwalk_cmd(ctx, apply_to, out) -> None:
    """Official 1024-bit BinWalk sketches (``hamming`` uint64 (n, 16)) with the organisers' model."""
    from laionknn.projections import apply as pa

    out_dir = pa.out_dir_or_default(out)
    for item in apply_to:
        console.print(f"wrote {pa.binwalk_file(pa.resolve_input(item, catalogs(ctx)), out_dir)}")


@project.command("sketch")
@click.option("--bits", type=count(min=64), required=True, help="Sketch length, a multiple of 64 (64..1024 typical).")
@click.option("--method", type=click.Choice(["cfsrp", "hiob", "itq", "srp"]), default="cfsrp", show_default=True)
@click.option("--fit-on", "fit_on", help="Catalog name or file the model is fitted on.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Use (or write) this .npz model.")
@click.option("--fit-rows", type=count(), default=100_000, show_default=True, help="Rows of the fit set (held in memory).")
@click.option("--sample", type=click.Choice(["first", "random"]), default="first", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--apply", "apply_to", multiple=True, help="Catalog name or file to encode (repeatable).")
@click.option("--task-b", "task_b", nargs=2, default=None, metavar="DB QUERIES",
              help="Also write the task B file: sketches of DB and QUERIES plus their brute-force Hamming k-NN.")
@click.option("--k", type=K, default=10, show_default=True, help="k of the task B k-NN.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: workspace projections/).")
@click.pass_context
def sketch_cmd(ctx, bits, method, fit_on, model_path, fit_rows, sample, seed, apply_to, task_b, k, out) -> None:
    """Learned binary sketches packed like the official ones (bit b in word b//64 at position b%64, LSB first)."""
    import time

    from laionknn.io import read_vectors
    from laionknn.projections import apply as pa
    from laionknn.projections.sketches import SketchModel, check_bits, fit_sketch

    check_bits(bits)
    out_dir = pa.out_dir_or_default(out)
    t0 = time.perf_counter()
    model, mpath = _fit_or_load(ctx, fit_on, model_path, out_dir,
                                lambda vf: fit_sketch(vf, bits, method, fit_rows=fit_rows, sample=sample, seed=seed),
                                SketchModel.load, lambda src: f"sketch-{method}-{bits}-model-{src.stem}.npz",
                                lambda m: m.bits != bits and f"makes {m.bits}-bit sketches, but --bits {bits} was asked")
    console.print(f"model: {mpath} ({model.method}, {model.bits} bits)")
    fit_time = time.perf_counter() - t0
    for item in apply_to:
        console.print(f"wrote {pa.sketch_file(model, pa.resolve_input(item, catalogs(ctx)), out_dir)}")
    if task_b:
        dbp, qp = (pa.resolve_input(x, catalogs(ctx)) for x in task_b)
        t1 = time.perf_counter()
        fdb, fq = pa.sketch_file(model, dbp, out_dir), pa.sketch_file(model, qp, out_dir)
        from laionknn.types import format_size

        db_s, q_s = read_vectors(fdb, expect_dim=bits // 64), read_vectors(fq, expect_dim=bits // 64)
        dest = out_dir / f"taskB-{method}-{bits}-{dbp.stem}.h5"
        pa.write_task_b(dest, db_s, q_s, k, algo=f"sketch-{method}", size=format_size(len(db_s)),
                        buildtime=fit_time + time.perf_counter() - t1, params=f"method={method} bits={bits} seed={seed}")
        console.print(f"wrote {dest}")


@click.command("baselines", cls=renamed({"--data": "--database"}))
@click.option("--database", default=None, metavar="NAME|FILE",
              help="Catalog database name (queries and gold follow from it), or a clip768 database file (official "
                   "HDF5, ann-benchmarks HDF5, FILE#KEY, .npy, .fbin; queries and gold inside, beside it or given).")
@click.option("--queries", default=None, metavar="FILE|NAME", help="With a database file: the queries.")
@click.option("--gold", type=click.Path(dir_okay=False), default=None, help="With a database file: a gold file (k ≥ 30).")
@click.option("--k", "ks", default="10,30", show_default=True, help="Recall cut-offs.")
@click.option("--bits", default="64,128,256,512,1024", show_default=True, help="Learned sketch lengths.")
@click.option("--methods", default="itq,hiob,cfsrp", show_default=True, help="Learned sketch methods.")
@click.option("--srp/--no-srp", default=False, show_default=True, help="Also the random-projection baseline.")
@click.option("--fit-rows", type=count(), default=None, help="PCA fit rows (default all).")
@click.option("--sketch-fit-rows", type=count(), default=100_000, show_default=True)
@click.option("--engine", type=click.Choice(["kernels", "exact"]), default="kernels", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: workspace projections/).")
@click.pass_context
def baselines(ctx, database, queries, gold, ks, bits, methods, srp, fit_rows, sketch_fit_rows, engine, out) -> None:
    """Brute-force every projection (pca32, pca96, BinWalk, learned sketches) and print the organisers' table."""
    from laionknn.projections.baselines import run_baselines, table_rows

    data, database, queries, gold = _baseline_inputs(database, queries, gold, catalogs(ctx))
    rows: list[dict] = []

    def on_row(row: dict) -> None:
        rows.append(row)
        if row["k"] == max(_ints(ks, "--k")):
            console.print(f"{row['data']}: R@{row['k']} {row['recall']:.4f}  {row['querytime']:.2f} s", highlight=False)

    path = run_baselines(data, _ints(ks, "--k"), out, database=database, queries=queries, gold=gold,
                         bits=_ints(bits, "--bits"), methods=tuple(m for m in methods.split(",") if m), srp=srp,
                         fit_rows=fit_rows, sketch_fit_rows=sketch_fit_rows, engine=engine, catalogs=catalogs(ctx),
                         on_row=on_row)
    print_table("brute-force baselines", ["data", "size", "recall@30", "recall@10", "query s", "QPS"], table_rows(rows))
    console.print(f"csv: {path}")


def _baseline_inputs(database, queries, gold, catalogs):
    """``(data, database, queries, gold)`` for run_baselines: a catalog name becomes ``data``; a database
    file becomes official-layout paths, its queries and gold found inside or beside it unless given."""
    from laionknn.io.formats import as_official, companions, gold_file, is_user_file

    if database is None or not is_user_file(database):
        return database, None, queries, gold
    found_queries, found_gold = companions(database)
    queries = queries or found_queries
    gold = gold or found_gold
    from laionknn.indexes.datasets import input_path

    return (None, str(as_official(database)), str(input_path(queries, "queries", catalogs)) if queries else None,
            str(gold_file(gold)) if gold else None)
