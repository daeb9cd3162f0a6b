"""`laionknn datasets list|info|fetch|verify`."""

from __future__ import annotations

import sys

import click
from rich import box
from rich.console import Console
from rich.table import Table

from laionknn.cli.common import catalogs, console, quiet
from laionknn.cli.options import RETRIES

LIST_COLUMNS = ["name", "role", "family", "subset", "size", "md5", "local"]


@click.group()
def datasets() -> None:
    """The catalog of official and synthetic files: list, inspect, fetch, verify."""


def _records(ctx: click.Context, names: tuple[str, ...]):
    from laionknn.catalog import resolve

    return [resolve(n, catalogs(ctx)) for n in names]


def _status(path) -> str:
    if path.exists():
        return "yes"
    if path.with_name(path.name + ".part").exists():
        return "partial"
    return ""


def _print_wide_table(columns: list[str], rows: list[list[str]]) -> None:
    """A rich table whose cells never wrap or fold: the console is made as wide as the widest row,
    so every name and md5 stays whole on one line (a narrow terminal wraps the line, copy-paste
    still gives whole names; pipes and files get one record per line)."""
    table = Table(show_lines=False, pad_edge=False, box=box.SIMPLE_HEAD, show_edge=False)
    for c in columns:
        table.add_column(c, no_wrap=True, overflow="ignore")
    for r in rows:
        table.add_row(*r)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    wide = Console(width=sum(widths) + 3 * len(columns) + 4, soft_wrap=False, highlight=False,
                   force_terminal=console.is_terminal, no_color=not console.is_terminal)
    wide.print(table)


def _md5_text(r) -> str:
    """'md5', or 'year:md5;year:md5' where the 2023 and 2024 lists disagree."""
    if not r.md5s:
        return "(generated)" if r.synthetic else "-"
    labels = r.extra.get("md5_labels") or ("",) * len(r.md5s)
    return ";".join(f"{lab}:{m}" if lab else m for lab, m in zip(labels, r.md5s))


@datasets.command("list")
@click.option("--role", help="Only records whose role starts with this (database, queries, gold, "
                             "gold-2024, queries-2023-public...).")
@click.option("--family", help="Only this family (clip768v2, pca32v2, pca96v2, hammingv2).")
@click.option("--tsv", "tsv", is_flag=True, help="Plain tab-separated output (one record per line, with a header).")
@click.option("--official", "only", flag_value="official", help="Only the files the organisers published.")
@click.option("--synthetic", "only", flag_value="synthetic", help="Only synthetic entries.")
@click.pass_context
def list_cmd(ctx: click.Context, role: str | None, family: str | None, tsv: bool, only: str | None) -> None:
    """List catalog records: name, role, family, subset, listed size, md5(s), local status.

    'local' is 'yes' when the file is in the workspace and 'partial' when a resumable .part exists.
    """
    from laionknn.catalog import all_records, local_path

    rows, picked = [], []
    for r in all_records(catalogs(ctx)):
        if role and not r.role.startswith(role):
            continue
        if family and r.family != family:
            continue
        if only == "official" and (r.synthetic or r.source != "builtin"):
            continue
        if only == "synthetic" and not r.synthetic:
            continue
        picked.append(r)
        md5 = _md5_text(r)
        rows.append([r.name, r.role, r.family, r.subset, r.listed_size or "-", md5, _status(local_path(r)) or "-"])
    if tsv:
        click.echo("\n".join("\t".join(row) for row in [LIST_COLUMNS, *rows]))
        return
    _print_wide_table(LIST_COLUMNS, rows)
    official = [r for r in picked if not r.synthetic and r.source == "builtin"]
    user = [r for r in picked if r.source.startswith("user:")]
    synthetic = [r for r in picked if r.synthetic]
    n_md5 = sum(len(r.md5s) for r in official)
    parts = [f"{len(official)} official files ({n_md5} md5s)"]
    if user:
        parts.append(f"{len(user)} from user catalogs")
    parts.append(f"{len(synthetic)} synthetic (more sizes and seeds resolve by name)")
    console.print(f"{len(picked)} records: " + ", ".join(parts), highlight=False, soft_wrap=True)


@datasets.command("info")
@click.argument("name")
@click.pass_context
def info_cmd(ctx: click.Context, name: str) -> None:
    """Print one record in full (NAME with or without .h5)."""
    from laionknn.catalog import local_path, resolve

    r = resolve(name, catalogs(ctx))
    path = local_path(r)
    fields = [("name", r.name), ("file", r.filename), ("role", r.role), ("kind", r.kind), ("family", r.family),
              ("subset", r.subset), ("keys", ", ".join(r.keys)), ("dtype/shape", r.dtype_shape),
              ("rows", str(r.n_rows) if r.n_rows is not None else "-"),
              ("md5", _md5_text(r).replace(";", " or ") if r.md5s else ("generated locally" if r.synthetic else "-")),
              ("listed size", r.listed_size or "-"), ("listed in", r.listed_in or "-"), ("source", r.source),
              ("local path", str(path)), ("present", {"yes": "yes", "partial": "partial (.part)"}.get(_status(path), "no"))]
    if r.seed is not None:
        fields.insert(7, ("seed", str(r.seed)))
    for i, u in enumerate(r.urls):
        fields.append((f"url {i + 1}", u))
    for k, v in fields:
        console.print(f"[bold]{k:>12}[/bold]  {v}", highlight=False, soft_wrap=True)


@datasets.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option("--dest", type=click.Path(file_okay=False), help="Folder to put the files in (default: the "
              "workspace data folder, $LAIONKNN_HOME/data).")
@click.option("--mirror", envvar="LAIONKNN_MIRROR", help="Base URL or local folder replacing scheme+host+directory "
              "of every URL (also $LAIONKNN_MIRROR).")
@click.option("--retries", type=RETRIES, default=None, help="Retries per URL after a transient failure (default 5).")
@click.pass_context
def fetch_cmd(ctx: click.Context, names: tuple[str, ...], dest: str | None, mirror: str | None,
              retries: int | None) -> None:
    """Download (or synthesise) catalog files, resuming .part files, verifying size and md5."""
    from laionknn.catalog.download import RetryPolicy
    from laionknn.catalog.ensure import ensure

    policy = RetryPolicy.from_env()
    if retries is not None:
        policy = RetryPolicy(retries=retries, backoff=policy.backoff, max_backoff=policy.max_backoff,
                             timeout=policy.timeout)
    for r in _records(ctx, names):
        path = ensure(r, dest=dest, mirror=mirror or None, quiet=quiet(ctx), policy=policy)
        console.print(f"{r.filename}  ok  {path}", highlight=False, soft_wrap=True)


@datasets.command("verify")
@click.argument("names", nargs=-1)
@click.option("--dest", type=click.Path(file_okay=False), help="Folder holding the files (default: workspace).")
@click.option("--all", "show_all", is_flag=True, help="Also list missing files when no NAME is given.")
@click.pass_context
def verify_cmd(ctx: click.Context, names: tuple[str, ...], dest: str | None, show_all: bool) -> None:
    """Recompute the md5 of present files and compare with the catalog: ok / mismatch / missing.

    Without NAME, checks every catalog file present locally. Exit code 1 when a file mismatches
    (or a named file is missing).
    """
    from laionknn.catalog import all_records
    from laionknn.catalog.ensure import target_path, verify

    if names:
        records = _records(ctx, names)
    else:
        records = [r for r in all_records(catalogs(ctx))
                   if show_all or target_path(r, dest).exists()]
    results = [verify(r, dest=dest, quiet=quiet(ctx)) for r in records]
    for res in results:
        colour = {"ok": "green", "mismatch": "red", "missing": "yellow", "unchecked": "cyan"}[res.status]
        detail = f"  {res.detail}" if res.detail else ""
        console.print(f"[{colour}]{res.status:<9}[/{colour}] {res.record.filename}{detail}", highlight=False,
                      soft_wrap=True)
    if not results:
        console.print("no catalog files present locally; `laionknn datasets fetch NAME` downloads one")
    bad = [r for r in results if r.status == "mismatch" or (names and r.status == "missing")]
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "mismatch", "missing", "unchecked")}
    if results:
        console.print(", ".join(f"{v} {k}" for k, v in counts.items() if v), highlight=False)
    if bad:
        sys.exit(1)
