"""Finding a gold standard (catalog name or file) and the k its year implies.

The challenges scored at k = 10 in 2023 and k = 30 in 2024. The year is read from the catalog record's
role (``gold-2023-…``, ``gold-2024-…``, ``gold-synthetic``) when the argument is a catalog name or a
file named like one, else from the official file-name patterns: ``gold-standard-dbsize=…`` (2024) and
``laion2B-en-…gold-standard-v2…`` (2023). Synthetic gold (``synthetic-gold-standard-…``) follows 2023.
A file written by ``laionknn gold`` (default name ``gold-<database>--<queries>-k=<k>-<metric>.h5``,
attributes ``database`` and ``queries``) takes the year of its query set: ``…-2024-…`` queries are
2024's, the 2023 public/private and synthetic query sets 2023's.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from laionknn.errors import CatalogError, UsageError

log = logging.getLogger(__name__)

YEAR_K = {2023: 10, 2024: 30}


@dataclass(frozen=True)
class GoldSource:
    """A gold-standard file with its challenge year (None: unknown) and default k."""

    path: Path
    year: int | None
    default_k: int
    name: str
    subset: str | None = None


_LAIONKNN_GOLD = re.compile(r"^gold-(?P<db>.+?)--(?P<queries>.+)-k=\d+-(?:cosine|dot|l2|hamming)(?:\.h5)?$")


def year_from_queries(name: str) -> int | None:
    """Challenge year of a query file name: 2024 query sets carry ``2024``; the 2023 public and
    private sets (``public-queries-10k-…``, ``…-queries-…-2023…``) and synthetic queries count as 2023."""
    base = Path(str(name)).name
    if "queries" not in base:
        return None
    record = _record_for(base[:-3] if base.endswith(".h5") else base, None)
    if record is not None and record.role.startswith("queries-"):
        role_year = record.role.split("-")[1]
        return 2023 if role_year == "synthetic" else int(role_year) if role_year.isdigit() else None
    if "2024" in base:
        return 2024
    if base.startswith("synthetic-queries") or "2023" in base or re.search(r"(public|private)-queries-10k", base):
        return 2023
    return None


def year_from_name(name: str) -> int | None:
    """Challenge year implied by a gold file name, or None; synthetic gold counts as 2023."""
    base = Path(name).name
    if re.search(r"gold-standard-dbsize=", base):
        return 2024
    if re.search(r"laion2B-en-.*gold-standard-v2", base) or re.match(r"synthetic-(v\d+-)?gold-standard", base):
        return 2023
    m = _LAIONKNN_GOLD.match(base)
    if m:
        return year_from_queries(m.group("queries"))
    return None


def year_from_attrs(path: Path) -> int | None:
    """Year from the ``queries`` attribute that ``laionknn gold`` writes (None when absent/unreadable)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            queries = f.attrs.get("queries")
    except OSError:
        return None
    if isinstance(queries, bytes):
        queries = queries.decode("utf-8", "replace")
    return year_from_queries(queries) if queries else None


def _year_from_role(role: str) -> int | None:
    if role == "gold-synthetic":
        return 2023
    m = re.match(r"gold-(\d{4})", role)
    return int(m.group(1)) if m else None


def _record_for(text: str, catalogs) -> "object | None":
    from laionknn.catalog import resolve

    try:
        return resolve(Path(text).name, catalogs)
    except CatalogError:
        return None


def locate_gold(name_or_path: "str | os.PathLike[str]", catalogs=None, *, fetch: bool = True,
                warn: bool = True) -> GoldSource:
    """Resolve ``--gold``: an existing file, or a catalog name (made present with ``catalog.ensure``).
    ``warn=False`` (the caller has its own k) keeps quiet about an unknown year."""
    from laionknn.io.formats import gold_file

    text = str(name_or_path)
    path = gold_file(text)
    record = _record_for(text, catalogs) if not path.is_dir() else None
    if record is not None and record.kind != "gold":
        raise UsageError(f"{text!r} is a {record.kind} file in the catalog; --gold takes a gold standard "
                         f"(`laionknn datasets list --role gold` lists them)")
    if not path.exists():
        if record is None:
            raise UsageError(f"--gold {text!r}: no such file and no gold standard of that name in the catalog; "
                             f"`laionknn datasets list --role gold` lists the known ones")
        from laionknn.catalog import local_path

        path = local_path(record)
        if not path.exists():
            if not fetch:
                raise UsageError(f"gold standard {record.name} is not present locally; fetch it with "
                                 f"`laionknn datasets fetch {record.name}`")
            try:
                from laionknn.catalog import ensure

                path = Path(ensure(record))
            except ModuleNotFoundError:  # no downloader/synthesiser installed in this build
                raise UsageError(f"gold standard {record.name} is not present locally; fetch or make it first "
                                 f"(`laionknn datasets fetch {record.name}`)") from None
    year = _year_from_role(record.role) if record is not None else None
    if year is None:
        year = year_from_name(path.name)
    if year is None and path.is_file():
        year = year_from_attrs(path)
    if year is None and warn:
        # only informative: eval takes k from --k or from the result files (evaluate.infer_k)
        log.info("cannot tell the challenge year of gold file %s from its name or attributes", path)
    subset = record.subset if record is not None else None
    return GoldSource(path=path, year=year, default_k=YEAR_K.get(year, 10), name=path.stem, subset=subset)
