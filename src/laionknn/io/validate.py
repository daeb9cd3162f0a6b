"""Raw structural checks of result files written by anyone (the checks behind ``laionknn results check``).

Unlike :func:`laionknn.io.read_result`, which stops at the first problem, :func:`result_file_problems`
looks at the file as stored (1-based ``knns``, ``dists`` as written) and lists *every* problem it finds,
one human-readable sentence each. It lives in ``io`` because it has to see the on-disk conventions
(1-based ids, orientation as h5py sees it) that the rest of the package never sees.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from laionknn.io.knnfiles import RESULT_META, read_meta

_SORT_TOL = 1e-6


def _first_rows(mask: np.ndarray, limit: int = 3) -> str:
    rows = np.flatnonzero(mask)[:limit]
    more = ", ..." if mask.sum() > limit else ""
    return ", ".join(str(int(r)) for r in rows) + more


def _meta_problems(meta: dict) -> list[str]:
    problems = []
    missing = [m for m in RESULT_META if m not in meta]
    if missing:
        problems.append(f"missing metadata {', '.join(missing)} (needed as attributes or scalar datasets: "
                        f"{', '.join(RESULT_META)})")
    for name in ("buildtime", "querytime"):
        if name in meta:
            try:
                value = float(meta[name])
            except (TypeError, ValueError):
                problems.append(f"{name} is {meta[name]!r}, expected a number of seconds")
                continue
            if not np.isfinite(value) or value < 0 or (name == "querytime" and value == 0):
                problems.append(f"{name} is {value}, expected a positive number of seconds")
    return problems


def _orientation_problem(shape: tuple[int, int], k: int | None, n_queries: int | None) -> str | None:
    rows, cols = shape
    if n_queries is not None:
        if rows == n_queries:
            return None
        if cols == n_queries:
            return (f"knns has shape {shape}: looks transposed (k, n); expected (n_queries={n_queries}, k) "
                    f"as h5py sees the official files (write the transpose)")
        return f"knns has {rows} rows but there are {n_queries} queries"
    if rows < cols or (k is not None and rows == k and cols > rows):
        return (f"knns has shape {shape}: fewer rows than columns, looks transposed (k, n); expected "
                f"(n_queries, k) as h5py sees the official files (write the transpose)")
    return None


def _id_problems(knns: np.ndarray, n_database: int | None) -> list[str]:
    problems = []
    if knns.size == 0:
        return ["knns is empty"]
    ids = knns.astype(np.int64)
    lo, hi = int(ids.min()), int(ids.max())
    if (ids == 0).any():
        problems.append(f"knns contains 0 in {int((ids == 0).any(axis=1).sum())} rows (0-based ids?); official "
                        f"files hold 1-based row numbers (add 1 to every id)")
    if lo < 0:
        problems.append(f"knns contains negative ids (smallest {lo}) in {int((ids < 0).any(axis=1).sum())} rows; "
                        f"missing neighbours must not be written")
    if n_database is not None and hi > n_database:
        bad = (ids > n_database).any(axis=1)
        problems.append(f"knns contains ids beyond the database size {n_database} (largest {hi}) in "
                        f"{int(bad.sum())} rows (first: {_first_rows(bad)})")
    if ids.shape[1] > 1:
        srt = np.sort(ids, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        if dup.any():
            problems.append(f"knns repeats an id within {int(dup.sum())} rows (first: {_first_rows(dup)})")
    return problems


def _dist_problems(dists: np.ndarray) -> list[str]:
    problems = []
    if dists.dtype.kind not in "fiu":
        return [f"dists is {dists.dtype}, expected float32 distances"]
    d = dists.astype(np.float64)
    nan = np.isnan(d).any(axis=1)
    if nan.any():
        problems.append(f"dists contains NaN in {int(nan.sum())} rows (first: {_first_rows(nan)})")
    if d.shape[1] > 1:
        diffs = np.diff(d, axis=1)
        asc = (diffs >= -_SORT_TOL).all(axis=1) & ~nan
        desc = (diffs <= _SORT_TOL).all(axis=1) & ~nan
        # a file sorted consistently one way is fine: distances ascending, or similarities descending
        if not (asc | nan).all() and not (desc | nan).all():
            bad = ~asc & ~nan if asc.sum() >= desc.sum() else ~desc & ~nan
            way = "ascending" if asc.sum() >= desc.sum() else "descending (similarities)"
            problems.append(f"dists not sorted: {int(bad.sum())} rows are not {way} like the others "
                            f"(first: {_first_rows(bad)})")
    return problems


def result_file_problems(path: "str | os.PathLike[str]", *, n_database: int | None = None,
                         k: int | None = None, n_queries: int | None = None) -> list[str]:
    """Every problem found in a result file, as sentences (empty list: the file is valid).

    Checks: readable HDF5; datasets ``knns`` and ``dists`` present, 2-d, same shape, integer ids; metadata
    ``algo, data, size, buildtime, querytime, params`` present as attributes or JLD2-style scalar
    datasets, times numeric; orientation (n_queries, k) rather than (k, n); ids 1-based (no 0, no
    negatives), at most ``n_database``; no repeated id within a row; at least ``k`` columns; no NaN
    distances; distances sorted (ascending, or a file whose every row is descending similarities).

    Without ``n_queries`` the orientation check uses "fewer rows than columns" (query sets are far
    larger than k in every official setting); a transposed file is checked further as its transpose.
    """
    path = Path(path)
    if not path.exists():
        return ["no such file"]
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        return [f"not a readable HDF5 file (truncated or damaged?): {exc}"]
    with f:
        problems: list[str] = []
        try:
            meta = read_meta(f)
        except OSError as exc:
            meta = {}
            problems.append(f"cannot read metadata: {exc}")
        missing = [name for name in ("knns", "dists") if name not in f or not isinstance(f[name], h5py.Dataset)]
        if missing:
            problems.append(f"missing dataset(s) {', '.join(missing)}; expected 'knns' (int32, 1-based) and "
                            f"'dists' (float32), shape (n_queries, k)")
        problems += _meta_problems(meta)
        knns = dists = None
        try:
            if "knns" not in missing:
                knns = f["knns"][()]
            if "dists" not in missing:
                dists = f["dists"][()]
        except OSError as exc:
            problems.append(f"cannot read knns/dists (truncated file?): {exc}")
            return problems
    if knns is not None:
        if knns.ndim != 2:
            problems.append(f"knns has shape {knns.shape}, expected 2-d (n_queries, k)")
            knns = None
        elif knns.dtype.kind not in "iu":
            problems.append(f"knns is {knns.dtype}, expected integer ids (int32)")
            knns = None
    if dists is not None and dists.ndim != 2:
        problems.append(f"dists has shape {dists.shape}, expected 2-d (n_queries, k)")
        dists = None
    if knns is not None and dists is not None and knns.shape != dists.shape:
        problems.append(f"knns {knns.shape} and dists {dists.shape} have different shapes")
    if knns is not None:
        orient = _orientation_problem(knns.shape, k, n_queries)
        if orient:
            problems.append(orient)
            if "transposed" in orient:  # check the rest as the writer meant it, one query per row
                if dists is not None and dists.shape == knns.shape:
                    dists = dists.T
                knns = knns.T
        if k is not None and knns.shape[1] < k:
            problems.append(f"knns has {knns.shape[1]} columns, fewer than k={k}")
        problems += _id_problems(knns, n_database)
    if dists is not None:
        problems += _dist_problems(dists)
    return problems
