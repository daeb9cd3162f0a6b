"""Validation of result files, as ``laionknn results check`` runs it.

The structural checks need the file as stored (1-based ids, h5py's orientation), so they live in
:func:`laionknn.io.result_file_problems`; this module adds the choice of limits and the policy.
"""

from __future__ import annotations

import os

from laionknn.io import result_file_problems
from laionknn.io.organisers import organisers_problems
from laionknn.types import OFFICIAL_SIZES, parse_size


def database_rows(size: "str | int | None") -> int | None:
    """Row count for ``--n-database``: an official subset name (``10M`` = 10,120,191 rows) or a number."""
    if size is None:
        return None
    if isinstance(size, str) and size.strip().upper() in OFFICIAL_SIZES:
        return OFFICIAL_SIZES[size.strip().upper()]
    return parse_size(size)


def check_result_file(path: "str | os.PathLike[str]", n_database: int | None = None, k: int | None = None,
                      *, n_queries: int | None = None, organisers: int | None = None) -> list[str]:
    """Every problem of the result file at ``path`` (empty list: valid).

    Reported: missing datasets ``knns``/``dists`` or metadata (attributes or JLD2-style scalar string
    datasets both count as present), non-numeric times, orientation (k, n) instead of (n, k), 0-based or
    negative ids, ids beyond ``n_database`` (1-based: largest allowed id is ``n_database``), repeated ids
    within a row, fewer than ``k`` columns, NaN distances, unsorted distances.

    ``organisers`` (2023 or 2024) adds what that year's official scorer would do with the file
    (:func:`laionknn.io.organisers.organisers_problems`), each line prefixed ``organisers YEAR:``.
    """
    problems = result_file_problems(path, n_database=n_database, k=k, n_queries=n_queries)
    if organisers is not None:
        problems += [f"organisers {organisers}: {p}" for p in organisers_problems(path, organisers, n_queries=n_queries)]
    return problems
