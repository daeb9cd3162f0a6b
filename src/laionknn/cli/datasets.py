"""`laionknn datasets list|info|fetch|verify`."""

from __future__ import annotations

import click

from laionknn.cli.common import catalogs, console, print_table


@click.group()
def datasets() -> None:
    """The catalog of official and synthetic files: list, inspect, fetch, verify."""


@datasets.command("list")
@click.option("--role", help="Only records whose role starts with this (database, queries, gold...).")
@click.option("--family", help="Only this family (clip768v2, pca32v2, pca96v2, hammingv2).")
@click.pass_context
def list_cmd(ctx: click.Context, role: str | None, family: str | None) -> None:
    """List catalog records with their md5 and listed size."""
    from laionknn.catalog import all_records, local_path

    rows = []
    for r in all_records(catalogs(ctx)):
        if role and not r.role.startswith(role):
            continue
        if family and r.family != family:
            continue
        present = "yes" if local_path(r).exists() else ""
        rows.append([r.name, r.role, r.family, r.subset, "/".join(r.md5s) or "(synthetic)", r.listed_size, present])
    print_table(None, ["name", "role", "family", "subset", "md5", "size", "local"], rows)
    console.print(f"{len(rows)} files")


@datasets.command("info")
@click.argument("name")
@click.pass_context
def info_cmd(ctx: click.Context, name: str) -> None:
    """Print one record in full."""
    from laionknn.catalog import local_path, resolve

    r = resolve(name, catalogs(ctx))
    fields = [("name", r.name), ("file", r.filename), ("role", r.role), ("family", r.family), ("subset", r.subset),
              ("keys", ", ".join(r.keys)), ("dtype/shape", r.dtype_shape), ("md5", ", ".join(r.md5s) or "-"),
              ("listed size", r.listed_size or "-"), ("listed in", r.listed_in or "-"), ("source", r.source),
              ("local path", str(local_path(r))), ("present", "yes" if local_path(r).exists() else "no")]
    for i, u in enumerate(r.urls):
        fields.append((f"url {i + 1}", u))
    for k, v in fields:
        console.print(f"[bold]{k:>12}[/bold]  {v}", highlight=False)
