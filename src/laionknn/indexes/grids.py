"""Build grids and query grids, one TOML file per backend in ``grids/<backend>.toml``.

Layout of a grid file::

    repeats = 3               # optional: timed searches after the warm-up (default 3)
    [[build]]                 # one table per build configuration; a list value expands into
    M = 16                    # one configuration per element (cartesian product)
    ef_construction = 100

    [query]                   # the query grid: every key takes a list, the sweep is the product
    ef = [16, 32, 64]

    [[override]]              # optional, in order; the last matching one wins
    min_rows = 50000          # applies when the database has at least this many rows, and/or
    max_rows = 200000         # at most this many rows, and/or
    match = "*n=300K*"        # a shell pattern on the dataset name (for user grids; the default
                              # grids choose by size only, so plain files get the same grids)
    build = [{ M = 8, ef_construction = 40 }]   # replaces [[build]] when given
    query = { ef = [8, 16] }                     # replaces [query] when given

Any value (or list element) may be a rule of the data, a string starting with ``=``:
``nlist = "=pow2(sqrt(n))"``, ``ef = ["=k", "=2*k"]`` (:mod:`laionknn.indexes.rules`). Rules are
evaluated per expanded configuration once the database size is known; the notes of each
configuration say which rule chose which value. Every key is checked against the backend's
accepted keys: a key it does not know raises a :class:`UsageError` naming the accepted ones.
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
from laionknn.indexes.base import check_params
from laionknn.indexes.rules import is_rule, resolve_config
from laionknn.validation import check_int

TOP_KEYS = {"build", "query", "override", "description", "repeats"}
OVERRIDE_KEYS = {"match", "min_rows", "max_rows", "build", "query"}
DEFAULT_K = 10  # the k rules see when the caller does not say (the 2023 challenge's)


@dataclass
class Grid:
    """Expanded grids: ``build`` and ``query`` are lists of parameter dicts (at least one each)."""

    backend: str
    build: list[dict[str, Any]]
    query: list[dict[str, Any]]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    repeats: int | None = None  # timed searches after the warm-up (None: the runner's default, 3)
    # parallel to build / query: the rules that chose each configuration's values ("" when none)
    build_rules: list[str] = field(default_factory=list)
    query_rules: list[str] = field(default_factory=list)

    def quick(self) -> "Grid":
        """The first build configuration and at most three query points (lowest, middle, highest)."""
        picks = list(range(len(self.query)))
        if len(picks) > 3:
            picks = [0, len(picks) // 2, len(picks) - 1]
        return Grid(self.backend, self.build[:1], [self.query[i] for i in picks], self.source,
                    self.notes + ["quick"], self.repeats, self.build_rules[:1],
                    [self.query_rules[i] for i in picks if i < len(self.query_rules)])

    def build_rule(self, i: int) -> str:
        return self.build_rules[i] if i < len(self.build_rules) else ""

    def query_rule(self, i: int) -> str:
        return self.query_rules[i] if i < len(self.query_rules) else ""


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
              n_rows: int | None = None, k: int | None = None, dim: int | None = None) -> Grid:
    """Read the grid of ``backend`` (its default file unless ``path``), apply the overrides that match
    ``dataset``/``n_rows``, expand the products, evaluate the rules (of ``n_rows``, ``k``, ``dim``) and
    validate every key against the backend. Query points that rules make equal are kept once."""
    from laionknn.indexes.registry import BACKENDS, get_backend, plugin_grid, resolve_backend

    backend = resolve_backend(backend)
    if backend not in BACKENDS:
        raise UsageError(f"unknown index backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    own_file, own_grid = plugin_grid(backend) if path is None else (None, None)
    file = Path(path) if path is not None else (own_file or default_grid_path(backend))
    if own_grid is not None:
        raw = own_grid
        source = f"<grid of {backend}>"
    elif file is None:
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
        if not {"match", "min_rows", "max_rows"} & set(ov):
            raise UsageError(f"{source}: an override needs `min_rows`/`max_rows` (database size) or `match` "
                             f"(dataset pattern)")
        if "match" in ov and (dataset is None or not fnmatch.fnmatchcase(dataset, str(ov["match"]))):
            continue
        bound = {key: check_int(ov[key], f"{source}: override {key}", min=0, hint="a row count such as 20000")
                 for key in ("min_rows", "max_rows") if key in ov}
        if "min_rows" in bound and (n_rows is None or n_rows < bound["min_rows"]):
            continue
        if "max_rows" in bound and (n_rows is None or n_rows > bound["max_rows"]):
            continue
        if "build" in ov:
            build_tables = _as_list(ov["build"], "override build", source)
        if "query" in ov:
            query_table = ov["query"]
        notes.append("override " + " ".join(f"{key}={ov[key]}" for key in ("match", "min_rows", "max_rows")
                                            if key in ov))
    if not isinstance(query_table, dict):
        raise UsageError(f"{source}: query must be a table of key = [values]")
    cls = get_backend(backend)
    env = {"k": int(k or DEFAULT_K)}
    if n_rows is not None:
        env["n"] = int(n_rows)
    if dim is not None:
        env["dim"] = int(dim)
    build, build_rules = _resolve([cfg for table in build_tables for cfg in _expand(table)], env, source)
    query, query_rules = _resolve(_expand(query_table), env, source, dedupe=True)
    _validate(backend, "build", build, cls.build_defaults, source)
    _validate(backend, "query", query, cls.query_defaults, source)
    repeats = raw.get("repeats")
    if repeats is not None and (not isinstance(repeats, int) or repeats < 1):
        raise UsageError(f"{source}: repeats must be a positive whole number, found {repeats!r}")
    return Grid(backend, build, query, source, notes, repeats, build_rules, query_rules)


def _resolve(configs: list[dict], env: dict, source: str, *, dedupe: bool = False) -> tuple[list[dict], list[str]]:
    """Configurations with their rules evaluated (at least one, ``{}``), and one rule note per config."""
    out: list[dict] = []
    rules: list[str] = []
    for cfg in configs or [{}]:
        if "n" not in env and any(is_rule(v) for v in cfg.values()):
            raise UsageError(f"{source}: the grid has rules of the data (values starting with '='); "
                             f"load it with the database size (n_rows)")
        plain, notes = resolve_config(cfg, env)
        if dedupe and plain in out:
            continue
        out.append(plain)
        rules.append("; ".join(notes))
    return out, rules


def _validate(backend: str, kind: str, configs: list[dict], accepted: dict, source: str) -> None:
    for cfg in configs:
        unknown = sorted(set(cfg) - set(accepted))
        if unknown:
            raise UsageError(f"{source}: backend {backend!r} does not accept {kind} key(s) {', '.join(unknown)}; "
                             f"accepted {kind} keys: {', '.join(sorted(accepted)) or 'none'}")
        try:  # the values as evaluated from the rules: typed and range-checked as the index will check them
            check_params(backend, kind, cfg, accepted, rules=False)
        except UsageError as exc:
            raise UsageError(f"{source}: {exc}") from None
