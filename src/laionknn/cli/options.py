"""Click parameter types over :mod:`laionknn.validation`: every command declares its numeric options
with these, so all of them refuse the same values with the same one-line message.

``type=K`` for ``--k``, ``THREADS``, ``REPEATS``, ``SEED``, ``count("--fit-rows")`` for row counts,
``Number(check_float, min=...)`` for floats, ``MEMORY_SIZE`` for ``--memory-limit`` sizes. A refused value raises the package's
:class:`~laionknn.errors.UsageError` (exit 2, one line, no usage block).
"""

from __future__ import annotations

import functools

import click

from laionknn import validation


class Number(click.ParamType):
    """A click type that converts through ``check(value, option_name, **kwargs)``."""

    def __init__(self, check, name: str = "NUMBER", **kwargs) -> None:
        self.check = functools.partial(check, **kwargs) if kwargs else check
        self.name = name

    def convert(self, value, param, ctx):
        opt = param.opts[0] if param is not None and param.opts else "value"
        return self.check(value, opt)  # UsageError -> one line, exit 2 (cli.main)


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
