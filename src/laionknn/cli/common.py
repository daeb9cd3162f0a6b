"""Helpers shared by CLI modules: console output, catalog options, table printing."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

# In a pipe or a log file rich would assume 80 columns and fold paths and table cells; give it room.
console = Console()
if not console.is_terminal:
    console = Console(width=200, soft_wrap=True)


def catalogs(ctx: click.Context) -> list[str]:
    return (ctx.obj or {}).get("catalogs", []) if ctx is not None else []


def quiet(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("quiet", False)) if ctx is not None else False


def print_table(title: str | None, columns: list[str], rows: list[list[object]]) -> None:
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    console.print(table)
