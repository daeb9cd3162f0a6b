"""Progress reporting that library code can use without printing anything itself when quiet.

The CLI calls :func:`set_quiet` from ``--quiet``; library code wraps long loops in
:func:`progress_bar`. On a terminal the bar is drawn by rich (description shortened first, numbers
never cut). When stderr is not a terminal (``> log``, ``| tee``, nohup, SLURM) a bar would be cut to
80 columns and print nothing while a step runs, so plain lines are written instead: one when the step
starts, one every :data:`PLAIN_EVERY_S` seconds from a timer thread (done/total, share, rate,
elapsed, ETA, the current phase), and a summary when it ends. ``$LAIONKNN_PROGRESS_EVERY`` sets the
interval in seconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from typing import Callable, Iterator, Protocol, TextIO

_QUIET = os.environ.get("LAIONKNN_QUIET", "") not in ("", "0")
PLAIN_EVERY_S = 30.0


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET


class Bar(Protocol):
    def advance(self, amount: float = 1) -> None: ...
    def update(self, completed: float) -> None: ...
    def describe(self, phase: str) -> None: ...


class _NullBar:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(self, completed: float) -> None:
        pass

    def describe(self, phase: str) -> None:
        pass


class _RichBar:
    def __init__(self, progress, task_id, description: str) -> None:
        self._p = progress
        self._t = task_id
        self._d = description

    def advance(self, amount: float = 1) -> None:
        self._p.advance(self._t, amount)

    def update(self, completed: float) -> None:
        self._p.update(self._t, completed=completed)

    def describe(self, phase: str) -> None:
        self._p.update(self._t, description=f"{self._d}: {phase}" if phase else self._d)


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _amount(x: float, bytes_mode: bool) -> str:
    if bytes_mode:
        for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if x >= size:
                return f"{x / size:,.1f} {unit}"
        return f"{x:,.0f} B"
    return f"{x:,.0f}" if float(x).is_integer() or x >= 100 else f"{x:,.2f}"


class PlainBar:
    """Progress as plain lines on ``stream``: :meth:`line` is what a tick prints."""

    def __init__(self, description: str, total: float | None, *, unit: str = "rows", bytes_mode: bool = False,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.description, self.total, self.unit, self.bytes_mode = description, total, unit, bytes_mode
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.t0 = clock()
        self.done = 0.0
        self.phase = ""
        self._lock = threading.Lock()

    def advance(self, amount: float = 1) -> None:
        with self._lock:
            self.done += amount

    def update(self, completed: float) -> None:
        with self._lock:
            self.done = float(completed)

    def describe(self, phase: str) -> None:
        with self._lock:
            self.phase = phase
        self._print(self.line())

    def _name(self) -> str:
        return f"{self.description}: {self.phase}" if self.phase else self.description

    def _of(self) -> str:
        unit = "" if self.bytes_mode else f" {self.unit}"
        if self.total:
            return f"{_amount(self.done, self.bytes_mode)}/{_amount(self.total, self.bytes_mode)}{unit}"
        return f"{_amount(self.done, self.bytes_mode)}{unit}"

    def _rate(self, elapsed: float) -> str:
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return f"{_amount(rate, self.bytes_mode)}{'' if self.bytes_mode else ' ' + self.unit}/s"

    def line(self) -> str:
        """``desc: done/total unit (share), rate, elapsed H:MM:SS, ETA H:MM:SS``."""
        with self._lock:
            elapsed = self.clock() - self.t0
            share = f" ({100 * self.done / self.total:.1f} %)" if self.total else ""
            eta = (elapsed * (self.total - self.done) / self.done) if self.total and self.done > 0 else math.inf
            return (f"{self._name()}: {self._of()}{share}, {self._rate(elapsed)}, elapsed {_clock(elapsed)}"
                    + (f", ETA {_clock(eta)}" if self.total else ""))

    def summary(self) -> str:
        with self._lock:
            elapsed = self.clock() - self.t0
            return f"{self.description}: done, {self._of()} in {_clock(elapsed)} ({self._rate(elapsed)})"

    def start_line(self) -> str:
        total = f", {_amount(self.total, self.bytes_mode)}{'' if self.bytes_mode else ' ' + self.unit}" if self.total else ""
        return f"{self.description}: started{total}"

    def _print(self, text: str) -> None:
        try:
            print(text, file=self.stream, flush=True)
        except (OSError, ValueError):  # closed pipe or stream: progress is never worth a crash
            pass


def plain_every() -> float:
    try:
        return max(0.05, float(os.environ.get("LAIONKNN_PROGRESS_EVERY", PLAIN_EVERY_S)))
    except ValueError:
        return PLAIN_EVERY_S


@contextlib.contextmanager
def _plain(bar: PlainBar, every: float) -> Iterator[PlainBar]:
    bar._print(bar.start_line())
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            bar._print(bar.line())

    thread = threading.Thread(target=tick, name="laionknn-progress", daemon=True)
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join()
    bar._print(bar.summary())


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress_bar(description: str, total: float | None, *, unit: str = "rows", bytes_mode: bool = False) -> Iterator[Bar]:
    """A progress report with rate and ETA; a no-op when quiet.

    ``bytes_mode`` shows transferred bytes and transfer speed (downloads). ``bar.describe(phase)``
    names what the step is doing now ("building M=16").
    """
    if _QUIET:
        yield _NullBar()
        return
    if not _stderr_is_terminal():
        with _plain(PlainBar(description, total, unit=unit, bytes_mode=bytes_mode), plain_every()) as bar:
            yield bar
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)
    from rich.table import Column

    # the description takes what is left and is shortened first; counts and times keep their width
    columns = [TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
               BarColumn(bar_width=16), TaskProgressColumn()]
    if bytes_mode:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn(table_column=Column(no_wrap=True)),
                    TextColumn(unit, table_column=Column(no_wrap=True))]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False, expand=True) as progress:
        task_id = progress.add_task(description, total=total)
        yield _RichBar(progress, task_id, description)
