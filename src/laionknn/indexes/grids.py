"""Build grids and query grids, one TOML file per backend in ``grids/<backend>.toml``.

Layout of a grid file::

    repeats = 3               # optional: timed searches after the warm-up (default 3)
    [[build]]                 # one table per build configuration; a list value expands into
    M = 16                    # one configuration per element (cartesian product)
    ef_construction = 100

    [query]                   # the query grid: every key takes a list, the sweep is the product
    ef = [16, 32, 64]

    [[override]]              # optional, in order; the last matching one wins
    match = "*n=300K*"        # shell pattern on the dataset name, and/or
    max_rows = 20000          # applies when the database has at most this many rows
    build = [{ M = 8, ef_construction = 40 }]   # replaces [[build]] when given
    query = { ef = [8, 16] }                     # replaces [query] when given

Every key is checked against the backend's accepted keys: a key it does not know raises a
:class:`UsageError` naming the accepted ones.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from laionknn.errors import UsageError
from laionknn.validation import check_int

TOP_KEYS = {"build", "query", "override", "description", "repeats"}
OVERRIDE_KEYS = {"match", "max_rows", "build", "query"}


@dataclass
class Grid:
    """Expanded grids: ``build`` and ``query`` are lists of parameter dicts (at least one each)."""

    backend: str
    build: list[dict[str, Any]]
    query: list[dict[str, Any]]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    repeats: int | None = None  # timed searches after the warm-up (None: the runner's default, 3)

    def quick(self) -> "Grid":
        """The first build configuration and at most three query points (lowest, middle, highest)."""
        q = self.query
        if len(q) > 3:
            q = [q[0], q[len(q) // 2], q[-1]]
        return Grid(self.backend, self.build[:1], q, self.source, self.notes + ["quick"], self.repeats)


def default_grid_path(backend: str) -> Path | None:
    ref = resources.files("laionknn.indexes").joinpath("grids", f"{backend}.toml")
    return Path(str(ref)) if ref.is_file() else None


def _expand(table: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(table)
    values = [v if isinstance(v, list) else [v] for v in table.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _as_list(value, what: str, source: str) -> list[dict]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise UsageError(f"{source}: {what} must be a table or a list of tables, found {type(value).__name__}")


def load_grid(backend: str, path: "str | os.PathLike[str] | None" = None, *, dataset: str | None = None,
              n_rows: int | None = None) -> Grid:
    """Read the grid of ``backend`` (its default file unless ``path``), apply the overrides that match
    ``dataset``/``n_rows``, expand the products and validate every key against the backend."""
    from laionknn.indexes.registry import BACKENDS, get_backend

    if backend not in BACKENDS:
        raise UsageError(f"unknown index backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    file = Path(path) if path is not None else default_grid_path(backend)
    if file is None:
        raw: dict[str, Any] = {}
        source = f"<defaults of {backend}>"
    else:
        source = str(file)
        if not file.is_file():
            raise UsageError(f"grid file {file} does not exist; give a TOML file (see docs/indexes.md)")
        try:
            raw = tomllib.loads(file.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UsageError(f"{file}: not a UTF-8 text file (byte {exc.start}); a grid file is TOML text") from None
        except OSError as exc:
            raise UsageError(f"{file}: cannot read the grid file ({exc.strerror or exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{file}: not valid TOML ({exc})") from None
    bad = sorted(set(raw) - TOP_KEYS)
    if bad:
        raise UsageError(f"{source}: unknown section(s) {', '.join(bad)}; a grid file has {', '.join(sorted(TOP_KEYS))}")
    build_tables = _as_list(raw.get("build", [{}]), "build", source)
    query_table = raw.get("query", {})
    notes = []
    for ov in _as_list(raw.get("override", []), "override", source):
        extra = sorted(set(ov) - OVERRIDE_KEYS)
        if extra:
            raise UsageError(f"{source}: override has unknown key(s) {', '.join(extra)}; accepted: "
                             f"{', '.join(sorted(OVERRIDE_KEYS))}")
        if "match" not in ov and "max_rows" not in ov:
            raise UsageError(f"{source}: an override needs `match` (dataset pattern) or `max_rows`")
        if "match" in ov and (dataset is None or not fnmatch.fnmatchcase(dataset, str(ov["match"]))):
            continue
        if "max_rows" in ov and (n_rows is None or n_rows > check_int(ov["max_rows"], f"{source}: override max_rows",
                                                                     min=0, hint="a row count such as 20000")):
            continue
        if "build" in ov:
            build_tables = _as_list(ov["build"], "override build", source)
        if "query" in ov:
            query_table = ov["query"]
        notes.append(f"override {ov.get('match', '')}{'<=' + str(ov['max_rows']) if 'max_rows' in ov else ''}")
    if not isinstance(query_table, dict):
        raise UsageError(f"{source}: query must be a table of key = [values]")
    cls = get_backend(backend)
    build = [cfg for table in build_tables for cfg in _expand(table)] or [{}]
    query = _expand(query_table) or [{}]
    _validate(backend, "build", build, cls.build_defaults, source)
    _validate(backend, "query", query, cls.query_defaults, source)
    repeats = raw.get("repeats")
    if repeats is not None and (not isinstance(repeats, int) or repeats < 1):
        raise UsageError(f"{source}: repeats must be a positive whole number, found {repeats!r}")
    return Grid(backend, build, query, source, notes, repeats)


def _validate(backend: str, kind: str, configs: list[dict], accepted: dict, source: str) -> None:
    for cfg in configs:
        unknown = sorted(set(cfg) - set(accepted))
        if unknown:
            raise UsageError(f"{source}: backend {backend!r} does not accept {kind} key(s) {', '.join(unknown)}; "
                             f"accepted {kind} keys: {', '.join(sorted(accepted)) or 'none'}")
