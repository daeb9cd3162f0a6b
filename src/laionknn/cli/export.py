"""`laionknn export`: a run folder's runs in the layouts of ann-benchmarks, big-ann-benchmarks, CSV or JSON."""

from __future__ import annotations

import click

from laionknn.cli.common import quiet


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False), metavar="RUN_DIR")
@click.option("--format", "fmt", required=True, type=click.Choice(["ann-benchmarks", "big-ann", "csv", "json"]),
              help="ann-benchmarks / big-ann: results/<dataset>/<count>/<algo>/<name>.hdf5 as their results.py "
                   "writes (and data_export.py, plot.py read); csv / json: the run records.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: RUN_DIR/export-<format>).")
@click.option("--dataset", default=None, help="Dataset name in the paths and attributes (default: the records').")
@click.pass_context
def export(ctx: click.Context, run_dir: str, fmt: str, out_dir: str | None, dataset: str | None) -> None:
    """Export the runs of RUN_DIR (the folder `laionknn search --out` or `laionknn run` wrote)."""
    from pathlib import Path

    from laionknn.results.export import export_runs

    out = Path(out_dir) if out_dir else Path(run_dir) / f"export-{fmt}"
    paths = export_runs(run_dir, fmt, out, dataset=dataset)
    if not quiet(ctx):
        click.echo(f"wrote {len(paths)} file(s) under {out}")
