"""One validation of every numeric parameter, shared by the library and every CLI command.

Each ``check_*`` takes the raw value (an int, a float or the text typed on the command line) and
either returns it converted or raises :class:`~laionknn.errors.UsageError` with a one-line message
that names the option, says what is expected, what was found and what to do. ``cli/options.py``
wraps the same functions as click parameter types, so ``search``, ``run``, ``eval``, ``gold``,
``project``, ``prepare`` and ``synth`` refuse exactly the same things; library entry points call
them too, so ``k=0`` or ``threads=-2`` never silently becomes a default.

The ranges: ``k`` 1..:data:`MAX_K` (official gold standards hold at most 1000 neighbours);
``threads`` and ``repeats`` at least 1 (``None`` means the default); seeds at least 0; counts of
rows, queries, components at least 1; floats finite; memory sizes (``--memory-limit``) a positive
number of bytes with an optional binary suffix (``512M``, ``2G``, ``1.5GiB``).
"""

from __future__ import annotations

import math
import re

from laionknn.errors import UsageError

#: deepest k anything in laionknn computes or scores: the official gold standards hold 1000 columns.
MAX_K = 1000


def _name(name: str) -> str:
    """Option names as typed: ``fit_rows`` -> ``--fit-rows``; ``--k``, ``$ENV`` and phrases unchanged."""
    return name if name[:1] in "-$" or " " in name else f"--{name.replace('_', '-')}"


def check_int(value, name: str, *, min: int | None = None, max: int | None = None, hint: str = "") -> int:
    """``value`` as an int within ``[min, max]``; text is parsed strictly (``'1.5'``, ``'1e3'``,
    ``'ten'`` and booleans are refused)."""
    opt = _name(name)
    if isinstance(value, bool):
        raise UsageError(f"{opt} must be an integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise UsageError(f"{opt} must be an integer, got {value!r}")
        value = int(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        body = text[1:] if text[:1] in "+-" else text
        if not body.isdigit() or not body.isascii():
            within = f" ({_range(min, max)})" if min is not None or max is not None else ""
            raise UsageError(f"{opt} must be an integer{within}, got {value!r}{_hint(hint)}")
        value = int(text)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{opt} must be an integer, got {value!r}") from None
    if (min is not None and value < min) or (max is not None and value > max):
        raise UsageError(f"{opt} must be {_range(min, max)}, got {value}{_hint(hint)}")
    return value


def check_float(value, name: str, *, min: float | None = None, max: float | None = None,
                min_exclusive: bool = False, hint: str = "") -> float:
    """``value`` as a finite float within the bounds (``min`` excluded when ``min_exclusive``)."""
    opt = _name(name)
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise UsageError(f"{opt} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(out):
        raise UsageError(f"{opt} must be a finite number, got {value!r}")
    low_bad = min is not None and (out <= min if min_exclusive else out < min)
    if low_bad or (max is not None and out > max):
        lo = "" if min is None else (f"more than {min:g}" if min_exclusive else f"at least {min:g}")
        hi = "" if max is None else f"at most {max:g}"
        raise UsageError(f"{opt} must be {' and '.join(p for p in (lo, hi) if p)}, got {out:g}"
                         f"{_hint(hint)}")
    return out


def _range(min, max) -> str:
    if min is not None and max is not None:
        return f"between {min} and {max}"
    if min is not None:
        return f"at least {min}"
    return f"at most {max}"


def _hint(hint: str) -> str:
    return f"; {hint}" if hint else ""


def check_k(k, name: str = "--k") -> int:
    """Neighbours per query: 1..MAX_K."""
    return check_int(k, name, min=1, max=MAX_K, hint="official gold standards hold at most 1000 neighbours")


def check_optional(check, value, *args, **kwargs):
    """``None`` stays ``None`` (the documented default applies); anything else goes through ``check``."""
    return None if value is None else check(value, *args, **kwargs)


def check_threads(threads, name: str = "--threads") -> int:
    """Threads: at least 1 (leave the option out for all cores)."""
    return check_int(threads, name, min=1, hint="leave it out to use all cores")


def check_repeats(repeats, name: str = "--repeats") -> int:
    return check_int(repeats, name, min=1, hint="leave it out for the grid's default")


def check_seed(seed, name: str = "--seed") -> int:
    try:
        return check_int(seed, name, min=0)
    except UsageError:
        raise UsageError(f"{_name(name)} must be a non-negative integer such as 0 or 7, got {seed!r}") from None


def check_count(n, name: str, *, min: int = 1, max: int | None = None) -> int:
    """A number of rows, queries, components, parts...: at least ``min`` (default 1)."""
    return check_int(n, name, min=min, max=max)


_MEMORY = re.compile(r"^\s*((?:\d+(?:\.\d*)?|\.\d+)(?:e\+?\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_MEMORY_MULT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def check_memory_size(value, name: str = "--memory-limit") -> int:
    """A memory size in bytes, at least 1: an integer (bytes) or text such as ``512M``, ``2G``,
    ``1.5GiB``, ``4096`` (binary units). Negative, zero, ``nan``/``inf`` and unreadable text are refused."""
    opt = _name(name)
    example = "a positive size such as 512M, 2G or a byte count"
    if isinstance(value, bool):
        raise UsageError(f"{opt} must be {example}, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 1:
            raise UsageError(f"{opt} must be {example}, got {value!r}")
        return int(value)
    m = _MEMORY.match(str(value))
    if not m:
        raise UsageError(f"{opt} must be {example}, got {value!r}")
    amount = float(m.group(1)) * _MEMORY_MULT[m.group(2).upper()]
    if not math.isfinite(amount) or amount < 1:
        raise UsageError(f"{opt} must be {example}, got {value!r}")
    return int(amount)


__all__ = ["MAX_K", "check_count", "check_float", "check_int", "check_k", "check_memory_size", "check_optional",
           "check_repeats", "check_seed", "check_threads"]
