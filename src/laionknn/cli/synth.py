"""`laionknn synth` (write a synthetic database + query file) and `laionknn stats` (describe any file)."""

from __future__ import annotations

import click

from laionknn.cli.common import catalogs, console
from laionknn.cli.options import count, renamed
from laionknn.errors import UsageError
from laionknn.types import format_size


def _seed(value: "str | int") -> int:
    """Seeds are parsed here (not by click) so a bad one is a one-line error with exit code 2."""
    from laionknn.validation import check_seed

    return check_seed(value)


@click.command("synth")
@click.option("--size", "size", default="100K", show_default=True,
              help="Database rows: 100K, 300K, 1M, 10M or any count such as 20K or 2500.")
@click.option("--queries", "n_queries", default="10000", show_default=True, help="Number of queries (10000 = 10k).")
@click.option("--seed", default="0", show_default=True, help="Dataset seed (non-negative); 0 gives the standard names.")
@click.option("--generator", default=None, metavar="VERSION",
              help="Generator version: v3 (default), v2 (the earlier one, to reproduce earlier figures) "
                   "or v4 (a calibration candidate; docs/synthetic.md).")
@click.option("--force", is_flag=True, help="Rewrite files that are already present.")
@click.pass_context
def synth(ctx: click.Context, size: str, n_queries: str, seed: str, generator: str | None, force: bool) -> None:
    """Write a LAION-like synthetic database (emb float16 (n,768)) and query file (emb float32 (nq,768))
    in the official layout, registered in the catalog as synthetic-v3-clip768v2-n=SIZE[-seed=S]
    (generator v2: synthetic-clip768v2-n=SIZE[-seed=S])."""
    from laionknn.catalog import local_path, resolve, synthetic_database_name, synthetic_queries_name
    from laionknn.catalog.manifest import check_generator
    from laionknn.synthetic import materialize
    from laionknn.synthetic.model import DIM
    from laionknn.types import DEFAULT_GENERATOR, parse_size

    seed_value = _seed(seed)
    gen = check_generator((generator or DEFAULT_GENERATOR).strip().lower())
    n, nq = parse_size(size), parse_size(n_queries)
    if n < DIM:
        raise UsageError(f"--size must be at least {DIM} rows (the number of dimensions) for a LAION-like "
                         f"database, got {n:,}; use e.g. --size 2K")
    if nq < 1:
        raise UsageError(f"--queries must be at least 1, got {nq}")
    for name in (synthetic_database_name(n, seed_value, generator=gen),
                 synthetic_queries_name(nq, seed_value, generator=gen)):
        record = resolve(name, catalogs(ctx))
        existed = local_path(record).exists()
        path = materialize(record, force=force)
        status = "kept (already present; --force rewrites)" if existed and not force else "written"
        dtype = record.dtype_shape.split()[0]
        console.print(f"{record.kind:8s} [bold]{record.name}[/bold]  {record.n_rows:,} x 768 {dtype}  {status}",
                      highlight=False, soft_wrap=True)
        console.print(f"         {path}", highlight=False, soft_wrap=True)


def _fmt(value, digits: int = 3) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@click.command("stats", cls=renamed({"--recall-queries": "--n-queries"}))
@click.argument("target", metavar="FILE|NAME", required=False)
@click.option("--database", "database", default=None, metavar="NAME|FILE",
              help="The vector file or catalog name described (same as the FILE|NAME argument).")
@click.option("--sample", default=1024, type=count(min=2), show_default=True, help="Random rows for the global statistics.")
@click.option("--queries", "queries", default=None, metavar="NAME|FILE",
              help="Queries for the projection recall (default: the dataset's companion query file).")
@click.option("--recall-rows", default="300K", show_default=True,
              help="First rows used as database for neighbour figures and pca32/pca96 recall@30 (0 skips).")
@click.option("--n-queries", "recall_queries", default=1000, type=count(), show_default=True,
              help="Queries used (random subset).")
@click.option("--seed", default="0", show_default=True, help="Seed of the random row/query sample.")
@click.option("--fingerprint", is_flag=True,
              help="Also measure every public real-LAION difficulty figure at its own scale (pca32/pca96 recall "
                   "at 100K/300K/10M, BinWalk at 10M, IVF at 1M, HNSW at 10M) on the file's prefixes.")
@click.option("--no-ivf", is_flag=True, help="With --fingerprint: skip the IVF curve (needs faiss).")
@click.pass_context
def stats(ctx: click.Context, target: str | None, database: str | None, sample: int, queries: str | None,
          recall_rows: str, recall_queries: int, seed: str, fingerprint: bool, no_ivf: bool) -> None:
    """Statistics of a vector file or catalog name, real or synthetic, next to the real LAION figures."""
    from laionknn.synthetic.report import dataset_stats
    from laionknn.types import parse_size

    if target and database and target != database:
        raise UsageError(f"stats: give the dataset once, as FILE|NAME or as --database; got {target!r} and {database!r}")
    target = target or database
    if not target:
        raise UsageError("stats: expected a vector file or catalog name (FILE|NAME or --database); found none")

    rows = 0 if str(recall_rows).strip() == "0" else parse_size(recall_rows)
    if recall_queries < 1:
        raise UsageError(f"--n-queries must be positive, got {recall_queries}")
    rep = dataset_stats(target, sample=sample, queries=queries, recall_rows=rows, recall_queries=recall_queries,
                        seed=_seed(seed), catalogs=catalogs(ctx))
    console.print(f"[bold]{rep.path}[/bold]: {rep.n:,} x {rep.dim} {rep.dtype}", soft_wrap=True)
    s, r = rep.sample, rep.real
    table = [
        ["mean pairwise cosine ± std", f"{s['mean_cos']:.3f} ± {s['std_cos']:.3f}",
         f"{r['mean_cos']:.3f} ± {r['std_cos']:.3f}" if r else "—"],
        ["norm of the mean", _fmt(s["norm_of_mean"]), _fmt(r.get("norm_of_mean"))],
    ]
    for d, v in s["pca"].items():
        table.append([f"PCA variance share, top {d}", _fmt(v), _fmt(r.get("pca", {}).get(d))])
    table += [
        ["mean cosine to nearest other (in sample)", _fmt(s["nn_cos"]), _fmt(r.get("nn_cos"))],
        ["near-duplicate rate (in sample, cos ≥ 0.98)", _fmt(s["near_dup_rate"], 4), _fmt(r.get("near_dup_rate"), 4)],
        ["LID, MLE k=10 (in sample, median)", _fmt(s["lid"], 1), _fmt(r.get("lid"), 1)],
        ["norms min / mean / max", f"{s['norm_min']:.4f} / {s['norm_mean']:.4f} / {s['norm_max']:.4f}",
         "1 / 1 / 1 (normalised)" if r else "—"],
    ]
    if rep.database:
        db = rep.database
        where = f"(vs first {rep.recall_rows:,} rows)"
        table += [
            [f"mean cosine to nearest other {where}", _fmt(db["nn_cos"]), "—"],
            [f"near-duplicate rate {where}", _fmt(db["near_dup_rate"], 4), "—"],
            [f"LID, MLE k=10 {where}", _fmt(db["lid"], 1), "—"],
        ]
    if rep.recall:
        scale, real = rep.real_scale, rep.real_recall
        for d in (32, 96):
            table.append([f"pca{d} recall@30 (organisers: real {format_size(scale)})", _fmt(rep.recall[d]),
                          _fmt(real[d], 3)])
    from rich.console import Console
    from rich.table import Table

    # tables piped to a file or a log keep one statistic per line instead of folding at 80 columns
    out = console if console.is_terminal else Console(width=120, highlight=False)
    title = f"sample of {s['n']} rows" + (f"; recall: {rep.recall_rows:,} rows x {rep.recall_queries} queries "
                                         f"({rep.queries_source})" if rep.recall else "")
    tab = Table(title=title)
    for c in ("statistic", "this file", "real LAION (1024)"):
        tab.add_column(c, no_wrap=True)
    for row in table:
        tab.add_row(*row)
    out.print(tab)
    if fingerprint:
        _print_fingerprint(ctx, out, target, queries, recall_queries, _seed(seed), not no_ivf)


def _print_fingerprint(ctx, out, target, queries, n_queries, seed, ivf) -> None:
    from rich.table import Table

    from laionknn.synthetic.fidelity import table_rows
    from laionknn.synthetic.report import file_fingerprint

    if ivf:
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise UsageError("the fingerprint's IVF row needs faiss (pip install faiss-cpu); pass --no-ivf to skip it")
    fp = file_fingerprint(target, queries=queries, n_queries=n_queries, seed=seed, catalogs=catalogs(ctx), ivf=ivf)
    tab = Table(title=f"real-data fingerprint: prefixes up to {fp.n:,} rows x {fp.n_queries} queries")
    for c in ("figure (real LAION, published)", "scale", "real", "this file", "max |delta|", "verdict"):
        tab.add_column(c, no_wrap=c != "figure (real LAION, published)")
    for row in table_rows(fp):
        tab.add_row(*row)
    out.print(tab)
