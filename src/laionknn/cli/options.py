"""Click parameter types over :mod:`laionknn.validation`: every command declares its numeric options
with these, so all of them refuse the same values with the same one-line message.

``type=K`` for ``--k``, ``THREADS``, ``REPEATS``, ``SEED``, ``count("--fit-rows")`` for row counts,
``Number(check_float, min=...)`` for floats, ``MEMORY_SIZE`` for ``--memory-limit`` sizes,
``GOLD_FILE`` for a gold-standard file given by path (``--gold`` of ``run`` and ``search``). A refused
value raises the package's :class:`~laionknn.errors.UsageError` (exit 2, one line, no usage block).
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from laionknn import validation
from laionknn.errors import UsageError


class Number(click.ParamType):
    """A click type that converts through ``check(value, option_name, **kwargs)``."""

    def __init__(self, check, name: str = "NUMBER", **kwargs) -> None:
        self.check = functools.partial(check, **kwargs) if kwargs else check
        self.name = name

    def convert(self, value, param, ctx):
        opt = param.opts[0] if param is not None and param.opts else "value"
        return self.check(value, opt)  # UsageError -> one line, exit 2 (cli.main)


class ExistingFile(click.ParamType):
    """A path to a file that must exist when the command starts (before any data is made or read)."""

    name = "FILE"

    def __init__(self, hint: str = "") -> None:
        self.hint = hint

    def convert(self, value, param, ctx):
        opt = param.opts[0] if param is not None and param.opts else "FILE"
        path = Path(value).expanduser()
        if path.is_dir():
            raise UsageError(f"{opt} {value}: is a folder, a file was expected{'; ' + self.hint if self.hint else ''}")
        if not path.is_file():
            raise UsageError(f"{opt} {value}: no such file{'; ' + self.hint if self.hint else ''}")
        return str(path)


def count(min: int = 1, max: int | None = None) -> Number:
    return Number(validation.check_count, "INTEGER", min=min, max=max)


def number(min: float | None = None, max: float | None = None, min_exclusive: bool = False) -> Number:
    return Number(validation.check_float, "FLOAT", min=min, max=max, min_exclusive=min_exclusive)


K = Number(validation.check_k, "K")
THREADS = Number(validation.check_threads, "INTEGER")
REPEATS = Number(validation.check_repeats, "INTEGER")
SEED = Number(validation.check_seed, "INTEGER")
RETRIES = count(min=0, max=100)
MEMORY_SIZE = Number(validation.check_memory_size, "SIZE")
GOLD_FILE = ExistingFile("pass the file `laionknn gold --out` wrote, or leave --gold out to use the catalog's gold standard")


def dask_options(dask_help: str, workers_help: str, files: str, shards_help: str):
    """The four Dask options shared by `gold` and `search` (--dask, --workers, --scheduler, --shards),
    with each command's own help texts; ``files`` names what must be on the shared filesystem."""
    def decorate(fn):
        for opt in reversed([
            click.option("--dask", "use_dask", is_flag=True, help=dask_help),
            click.option("--workers", type=count(), default=2, show_default=True, help=workers_help),
            click.option("--scheduler", metavar="ADDRESS",
                         help=f"Connect to an existing Dask cluster (e.g. tcp://host:8786); {files} must be on a "
                              f"shared filesystem at the same path. Implies --dask."),
            click.option("--shards", type=count(), help=shards_help),
        ]):
            fn = opt(fn)
        return fn
    return decorate
