"""The catalog: one record per official (or synthetic, or user-added) file.

The built-in records come from ``data/sisap-laion2b-files.tsv`` (a copy of the organisers' file lists,
shipped inside the package). Users add records from a TSV with the same columns via ``--catalog FILE``
or ``$LAIONKNN_CATALOG`` (several files separated by ``os.pathsep``). Synthetic files are records too,
generated on demand from their names (``synthetic-v3-clip768v2-n=100K`` ...), so the rest of the system
treats real and synthetic data alike. The generator version is part of a synthetic name: ``synthetic-v3-…``
is generator v3 (the default), a name without a version token (``synthetic-clip768v2-n=100K``) is v2.
"""

from __future__ import annotations

import csv
import functools
import os
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from laionknn.errors import CatalogError
from laionknn.fsutil import check_plain_name
from laionknn.types import DEFAULT_GENERATOR, SYNTHETIC_GENERATORS, format_size, parse_size

COLUMNS = ("file", "role", "family", "subset", "h5_keys", "dtype_shape_as_h5py_sees_it", "md5",
           "listed_size", "listed_in", "urls")

FAMILY_DIM = {"clip768v2": 768, "pca32v2": 32, "pca96v2": 96, "hammingv2": 16}
FAMILY_KEY = {"clip768v2": "emb", "pca32v2": "pca32", "pca96v2": "pca96", "hammingv2": "hamming"}

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2, "G": 1024**3, "GB": 1024**3}


def parse_listed_size(text: str) -> int | None:
    """'77MB' -> 80740352, '1.3G' -> ..., '' -> None. The lists round, so this is approximate;
    a plain integer (as user catalogs may give) is taken as an exact byte count."""
    text = (text or "").strip()
    if not text:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?B?)", text, flags=re.IGNORECASE)
    if not m:
        raise CatalogError(f"cannot read listed size {text!r}: expected e.g. 77MB, 1.3G or a byte count")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


@dataclass(frozen=True)
class Record:
    """One catalog file. ``name`` is the file name without ``.h5``; ``md5s`` lists every accepted md5
    (the 2023 and 2024 lists disagree for one file); ``urls`` are in order of preference."""

    name: str
    filename: str
    role: str
    family: str
    subset: str
    keys: tuple[str, ...]
    dtype_shape: str
    md5s: tuple[str, ...] = ()
    listed_size: str = ""
    listed_in: str = ""
    urls: tuple[str, ...] = ()
    synthetic: bool = False
    seed: int | None = None
    source: str = "builtin"
    generator: str = ""  # synthetic records: the generator version (v2, v3); "" for real files
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def size_bytes(self) -> int | None:
        """The listed size in bytes (approximate unless the catalog gave an exact integer)."""
        return parse_listed_size(self.listed_size)

    @property
    def size_is_exact(self) -> bool:
        return self.listed_size.strip().isdigit()

    @property
    def kind(self) -> str:
        """'database', 'queries' or 'gold'."""
        if self.role.startswith("gold"):
            return "gold"
        if self.role.startswith("queries"):
            return "queries"
        return "database"

    @property
    def dim(self) -> int | None:
        return FAMILY_DIM.get(self.family)

    @property
    def n_rows(self) -> int | None:
        """Row count implied by the subset (exact for official database subsets)."""
        from laionknn.types import OFFICIAL_SIZES

        if self.kind == "database":
            if not self.synthetic and self.subset in OFFICIAL_SIZES:
                return OFFICIAL_SIZES[self.subset]
            try:
                return parse_size(self.subset)
            except Exception:
                return None
        if self.kind == "queries":
            try:
                return parse_size(self.subset)
            except Exception:
                return None
        return None


def _parse_row(row: dict, source: str) -> Record:
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise CatalogError(f"catalog {source}: missing column(s) {', '.join(missing)}; expected the columns "
                           f"of the shared catalog: {' '.join(COLUMNS)}")
    filename = row["file"].strip()
    if not filename:
        raise CatalogError(f"catalog {source}: a row has an empty 'file' column")
    check_plain_name(filename, f"catalog {source}")
    md5s, labels = [], []
    for part in (row["md5"] or "").split(";"):
        part = part.strip()
        label = ""
        if ":" in part:
            label, part = (s.strip() for s in part.split(":", 1))
        if part:
            labels.append(label)
            if not re.fullmatch(r"[0-9a-fA-F]{32}", part):
                raise CatalogError(f"catalog {source}: {filename}: md5 {part!r} is not 32 hex digits")
            md5s.append(part.lower())
    urls = tuple(u.strip() for u in re.split(r"[;\s]+", row["urls"] or "") if u.strip())
    name = filename[:-3] if filename.endswith(".h5") else filename
    return Record(
        name=name, filename=filename, role=row["role"].strip(), family=row["family"].strip(),
        subset=row["subset"].strip(), keys=tuple(k.strip() for k in row["h5_keys"].split(",") if k.strip()),
        dtype_shape=row["dtype_shape_as_h5py_sees_it"].strip(), md5s=tuple(md5s),
        listed_size=(row["listed_size"] or "").strip(), listed_in=(row["listed_in"] or "").strip(),
        urls=urls, source=source, extra={"md5_labels": tuple(labels)} if any(labels) else {},
    )


def read_catalog_tsv(path: "str | os.PathLike[str]") -> list[Record]:
    """Read a catalog TSV in the shared catalog's columns."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"catalog {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                           f"tab-separated values with the columns {' '.join(COLUMNS)}") from None
    reader = csv.DictReader(text.splitlines(), delimiter="\t")
    records = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            # DictReader fills a short row's missing columns with None and files a long row's extra
            # cells under the key None
            cells = sum(1 for k, v in row.items() if k is not None and v is not None) + len(row.get(None) or ())
            raise CatalogError(f"catalog {path}: line {reader.line_num} has {cells} tab-separated cells, "
                               f"expected {len(reader.fieldnames or ())} ({' '.join(reader.fieldnames or ())}); "
                               f"fix that line (empty cells are allowed, missing tabs are not)")
        records.append(_parse_row(row, str(path)))
    return records


@functools.lru_cache(maxsize=1)
def builtin_records() -> tuple[Record, ...]:
    text = resources.files("laionknn.catalog").joinpath("data/sisap-laion2b-files.tsv").read_text("utf-8")
    reader = csv.DictReader(text.splitlines(), delimiter="\t")
    return tuple(_parse_row(row, "builtin") for row in reader)


# --- synthetic records -------------------------------------------------------------------------
SYNTHETIC_SIZES = ("100K", "300K", "1M", "10M")
_GEN = r"synthetic-(?:(v\d+)-)?"
_SYN_DB = re.compile(rf"^{_GEN}(clip768v2|pca32v2|pca96v2|hammingv2)-n=(\w+?)(?:-seed=(\d+))?$")
_SYN_Q = re.compile(rf"^{_GEN}queries-(\w+?)-(clip768v2|pca32v2|pca96v2|hammingv2)(?:-n=(\w+?))?(?:-seed=(\d+))?$")
_SYN_GOLD = re.compile(rf"^{_GEN}gold-standard-clip768v2-n=(\w+?)-q=(\w+?)(?:-seed=(\d+))?$")


def _seed_suffix(seed: int) -> str:
    return "" if seed == 0 else f"-seed={seed}"


def check_generator(version: str) -> str:
    """A known generator version ('v2', 'v3', 'v4'), else CatalogError."""
    if version not in SYNTHETIC_GENERATORS:
        raise CatalogError(f"unknown synthetic generator version {version!r}; known versions: "
                           f"{', '.join(SYNTHETIC_GENERATORS)} (default {DEFAULT_GENERATOR})")
    return version


def _prefix(version: str | None) -> str:
    """'synthetic-v3-' for v3 (and later versions), 'synthetic-' for v2 (its original names)."""
    version = check_generator(version or DEFAULT_GENERATOR)
    return "synthetic-" if version == "v2" else f"synthetic-{version}-"


def synthetic_database_name(size: "str | int", seed: int = 0, family: str = "clip768v2",
                            generator: str | None = None) -> str:
    return f"{_prefix(generator)}{family}-n={format_size(parse_size(size))}{_seed_suffix(seed)}"


def synthetic_queries_name(n_queries: "str | int", seed: int = 0, family: str = "clip768v2",
                           fitted_on: "str | int | None" = None, generator: str | None = None) -> str:
    """Queries are shared by every size of one seed (like the official ones); projected queries
    depend on the model's fit set, named by ``fitted_on``."""
    nq = format_size(parse_size(n_queries)).lower()
    fit = "" if fitted_on is None else f"-n={format_size(parse_size(fitted_on))}"
    return f"{_prefix(generator)}queries-{nq}-{family}{fit}{_seed_suffix(seed)}"


def synthetic_gold_name(size: "str | int", n_queries: "str | int" = 10_000, seed: int = 0,
                        generator: str | None = None) -> str:
    return (f"{_prefix(generator)}gold-standard-clip768v2-n={format_size(parse_size(size))}"
            f"-q={format_size(parse_size(n_queries)).lower()}{_seed_suffix(seed)}")


def _synthetic_record(name: str) -> Record | None:
    for pattern in (_SYN_DB, _SYN_Q, _SYN_GOLD):
        m = pattern.match(name)
        if m:
            break
    else:
        return None
    generator = check_generator(m.group(1) or "v2")
    if m.group(1) == "v2":  # v2 keeps its original names: one name per dataset
        return _synthetic_record(name.replace("synthetic-v2-", "synthetic-", 1))
    common = dict(filename=name + ".h5", synthetic=True, source="synthetic", listed_in="synthetic",
                  generator=generator)
    if pattern is _SYN_DB:
        family, size, seed = m.group(2), m.group(3), int(m.group(4) or 0)
        parse_size(size)
        dtype = {"clip768v2": "float16", "hammingv2": "uint64"}.get(family, "float32")
        return Record(name=name, role="database", family=family, subset=size, keys=(FAMILY_KEY[family],),
                      dtype_shape=f"{dtype} (n,{FAMILY_DIM[family]})", seed=seed, **common)
    if pattern is _SYN_Q:
        nq, family, seed = m.group(2), m.group(3), int(m.group(5) or 0)
        dtype = "uint64" if family == "hammingv2" else "float32"
        n = parse_size(nq)
        return Record(name=name, role="queries-synthetic", family=family, subset=nq, keys=(FAMILY_KEY[family],),
                      dtype_shape=f"{dtype} ({n},{FAMILY_DIM[family]})", seed=seed,
                      extra={"fitted_on": m.group(4)}, **common)
    size, nq, seed = m.group(2), m.group(3), int(m.group(4) or 0)
    return Record(name=name, role="gold-synthetic", family="clip768v2", subset=size, keys=("knns", "dists"),
                  dtype_shape=f"int32/float32 ({parse_size(nq)},k)", seed=seed,
                  extra={"n_queries": parse_size(nq)}, **common)


def synthetic_records() -> list[Record]:
    """The standard synthetic entries listed by ``datasets list`` (others resolve by name)."""
    out = []
    for size in SYNTHETIC_SIZES:
        out.append(_synthetic_record(synthetic_database_name(size)))
    out.append(_synthetic_record(synthetic_queries_name(10_000)))
    for size in SYNTHETIC_SIZES:
        out.append(_synthetic_record(synthetic_gold_name(size)))
    return out


# --- the whole catalog -------------------------------------------------------------------------
def user_catalog_paths(extra: "list[str] | tuple[str, ...] | None" = None) -> list[Path]:
    paths = [Path(p) for p in (extra or ())]
    env = os.environ.get("LAIONKNN_CATALOG", "")
    paths += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    return paths


def all_records(extra_catalogs: "list[str] | tuple[str, ...] | None" = None) -> list[Record]:
    """Built-in, user (``--catalog``/``$LAIONKNN_CATALOG``) and standard synthetic records.
    A user record with the name of a built-in one replaces it (a private mirror's copy)."""
    by_name: dict[str, Record] = {r.name: r for r in builtin_records()}
    for path in user_catalog_paths(extra_catalogs):
        for rec in read_catalog_tsv(path):
            by_name[rec.name] = replace(rec, source=f"user:{path}")
    for rec in synthetic_records():
        by_name.setdefault(rec.name, rec)
    return list(by_name.values())


def resolve(name: str, extra_catalogs: "list[str] | tuple[str, ...] | None" = None) -> Record:
    """Find a record by name (with or without ``.h5``). No I/O besides reading catalog files."""
    key = name[:-3] if name.endswith(".h5") else name
    for rec in all_records(extra_catalogs):
        if rec.name == key:
            return rec
    rec = _synthetic_record(key)
    if rec is not None:
        return rec
    close = _close_names(key, [r.name for r in all_records(extra_catalogs)])
    hint = f"; did you mean {', '.join(close)}?" if close else "; `laionknn datasets list` shows every name"
    raise CatalogError(f"no catalog entry named {name!r}{hint}")


def _close_names(key: str, names: list[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(key, names, n=3, cutoff=0.6)
