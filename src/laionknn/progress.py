"""Progress bars that library code can use without printing anything itself when quiet.

The CLI calls :func:`set_quiet` from ``--quiet``; library code wraps long loops in
:func:`progress_bar`. Bars go to stderr through rich and vanish in non-interactive use when quiet.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Protocol

_QUIET = os.environ.get("LAIONKNN_QUIET", "") not in ("", "0")


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET


class Bar(Protocol):
    def advance(self, amount: float = 1) -> None: ...
    def update(self, completed: float) -> None: ...


class _NullBar:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(self, completed: float) -> None:
        pass


class _RichBar:
    def __init__(self, progress, task_id) -> None:
        self._p = progress
        self._t = task_id

    def advance(self, amount: float = 1) -> None:
        self._p.advance(self._t, amount)

    def update(self, completed: float) -> None:
        self._p.update(self._t, completed=completed)


@contextlib.contextmanager
def progress_bar(description: str, total: float | None, *, unit: str = "rows", bytes_mode: bool = False) -> Iterator[Bar]:
    """A progress bar with rate and ETA; a no-op when quiet.

    ``bytes_mode`` shows transferred bytes and transfer speed (downloads).
    """
    if _QUIET:
        yield _NullBar()
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    if bytes_mode:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn(), TextColumn(unit)]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task_id = progress.add_task(description, total=total)
        yield _RichBar(progress, task_id)
