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


# --- one spelling per concept -------------------------------------------------------------------------
#: what a count looks like where ``--queries`` used to take one (10000, 10k, 1M)
_COUNT = __import__("re").compile(r"^\d+(?:[kKmM])?$")


def renamed(aliases: dict[str, str], count_of: tuple[str, str] | None = None) -> type[click.Command]:
    """A click command class whose old option spellings still work for one release, each use printing
    one deprecation line on stderr: ``aliases`` maps an old spelling to the new one (``--data`` ->
    ``--database``); ``count_of = ("--queries", "--n-queries")``: ``--queries`` followed by a count (and
    not by an existing file) was the number of queries and becomes ``--n-queries``. The old spellings
    are not in ``--help``."""

    class Renamed(click.Command):
        def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
            return super().parse_args(ctx, respell(args, aliases, count_of))

    return Renamed


def respell(args: list[str], aliases: dict[str, str], count_of: tuple[str, str] | None = None) -> list[str]:
    """``args`` with old spellings replaced by the new ones (see :func:`renamed`)."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        name, eq, value = arg.partition("=")
        new = aliases.get(name)
        if new is None and count_of is not None and name == count_of[0]:
            given = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            if _COUNT.match(given) and not Path(given).exists():
                new = count_of[1]
                click.echo(f"warning: {name} N (a number of queries) is deprecated and will be removed in the next "
                           f"release; use {new} N ({name} now takes a query file or catalog name)", err=True)
        elif new is not None:
            click.echo(f"warning: {name} is deprecated and will be removed in the next release; use {new}", err=True)
        out.append(new + eq + value if new else arg)
    return out
