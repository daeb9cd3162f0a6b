"""What the organisers' own scorers will do with a result file (``laionknn results check --organisers``).

Each prediction restates the scorer's code (read with the search tool), not our reader:

- **2023**: sisap23-laion-challenge-evaluation ``eval.py`` at commit 0a6f90de (2023-08-09, the final
  one). It walks ``result/`` for ``*.h5``; reads ``size = res.attrs["size"]`` and ``d = dict(res.attrs)``,
  or, when that raises, ``res["size"][()].decode()`` and the scalar datasets of the seven CSV columns
  (0 when absent); downloads ``laion2B-en-public-gold-standard-v2-{size}.h5``; scores
  ``get_recall(np.array(res["knns"]), gt, 10)`` (asserting ≥ 10 columns and as many rows as the gold);
  prints ``d["data"], d["algo"], d["params"]`` and writes ``d`` with a ``csv.DictWriter`` whose
  fieldnames are ``data,size,algo,buildtime,querytime,params,recall`` (an extra key raises).
- **2024**: sisap2024 ``evaluate-sisap24.jl`` at commit 2ab9c096. It reads ``f["knns"][]`` and
  ``read_attribute(f, …)`` for ``algo, params, buildtime, querytime`` (attributes only) and scores
  ``macrorecall(view(gold, 1:30, :), knns)``: Julia sees the h5py shape reversed, loops over the gold's
  queries and intersects every returned column of each with the gold's first 30.

A line is returned for everything that makes the scorer stop, skip the file, or score or label it
differently from what the file means; an empty list means the scorer will read and score it as meant.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

#: sizes whose 2023 public gold ``eval.py`` can download (laion2B-en-public-gold-standard-v2-{size}.h5)
EVAL2023_SIZES = ("100K", "300K", "10M", "30M", "100M")
EVAL2023_COLUMNS = ("data", "size", "algo", "buildtime", "querytime", "params", "recall")
JULIA2024_ATTRIBUTES = ("algo", "params", "buildtime", "querytime")
ORGANISERS_QUERIES = 10_000
YEAR_K = {2023: 10, 2024: 30}


def _is_bytes(value) -> bool:
    return isinstance(value, (bytes, np.bytes_))


def organisers_problems(path: "str | os.PathLike[str]", year: int, *, n_queries: int | None = None) -> list[str]:
    """Sentences predicting where the ``year`` (2023 or 2024) organisers' scorer fails on ``path``.

    ``n_queries``: rows of the gold the scorer uses (default 10,000, every official query set).
    """
    if year not in YEAR_K:
        raise ValueError(f"year must be 2023 or 2024, got {year}")
    path = Path(path)
    n = int(n_queries or ORGANISERS_QUERIES)
    if year == 2023 and path.suffix != ".h5":
        return [f"eval.py (2023) reads only files ending in .h5: {path.name} is never scored"]
    try:
        f = h5py.File(path, "r")
    except OSError:
        return ["not readable as HDF5: eval.py prints 'Unable to read' and skips it" if year == 2023
                else "not readable as HDF5: evaluate-sisap24.jl's h5open raises and the scoring stops"]
    with f:
        attrs = {name: f.attrs[name] for name in f.attrs}
        datasets = {name: obj for name, obj in f.items() if isinstance(obj, h5py.Dataset)}
        shape = datasets["knns"].shape if "knns" in datasets else None
        if year == 2023:
            return _eval2023(attrs, datasets, shape, n)
        return _julia2024(attrs, datasets, shape, n)


def _eval2023(attrs: dict, datasets: dict, shape, n: int) -> list[str]:
    stops = "eval.py stops (no later file is scored)"
    out: list[str] = []
    if "size" in attrs:
        extra = sorted(a for a in attrs if a not in EVAL2023_COLUMNS)
        if extra:
            out.append(f"attribute(s) {', '.join(extra)} beyond eval.py's columns: dict(res.attrs) goes to a "
                       f"csv.DictWriter with fieldnames {','.join(EVAL2023_COLUMNS)}, which raises ValueError; {stops}")
        for name in ("data", "algo", "params"):
            if name not in attrs:
                out.append(f"attribute {name} missing while size is an attribute: eval.py prints d[{name!r}] "
                           f"and raises KeyError; {stops}")
        for name in ("buildtime", "querytime"):
            if name not in attrs:
                out.append(f"attribute {name} missing: res.csv gets an empty {name}"
                           + (" and plot.py's 10000/float(querytime) raises" if name == "querytime" else ""))
        size = attrs["size"]
        if _is_bytes(size):
            out.append(f"attribute size is a byte string ({bytes(size)!r}): eval.py downloads the gold of size "
                       f"{str(bytes(size))!r}, which does not exist; {stops} (write it as a str)")
            size_text = None
        else:
            size_text = str(size)
        for name in ("data", "algo", "params"):
            if name in attrs and _is_bytes(attrs[name]):
                out.append(f"attribute {name} is a byte string: res.csv gets {str(bytes(attrs[name]))!r} instead of "
                           f"{bytes(attrs[name]).decode('utf-8', 'replace')!r}, so the run is filed under the wrong "
                           f"name (write it as a str)")
    else:
        ds = datasets.get("size")
        if ds is None or ds.shape != ():
            return [f"no size attribute and no scalar size dataset: eval.py's fallback res['size'][()] raises; {stops}"]
        value = ds[()]
        if not _is_bytes(value):
            return [f"size is a scalar dataset of {ds.dtype}, not a string: eval.py's .decode() raises; {stops}"]
        size_text = bytes(value).decode("utf-8", "replace")
    if size_text is not None and size_text not in EVAL2023_SIZES:
        out.append(f"size {size_text!r}: eval.py downloads laion2B-en-public-gold-standard-v2-{size_text}.h5, "
                   f"which is not published (only {', '.join(EVAL2023_SIZES)}); {stops}")
    if shape is None:
        out.append(f"no knns dataset: eval.py's res['knns'] raises KeyError; {stops}")
    elif len(shape) != 2:
        out.append(f"knns has shape {shape}: get_recall needs (n_queries, k); {stops}")
    else:
        if shape[1] < YEAR_K[2023]:
            out.append(f"knns has {shape[1]} columns: get_recall asserts k=10 <= I.shape[1]; {stops}")
        if shape[0] != n:
            out.append(f"knns has {shape[0]} rows, the gold {n} queries"
                       + (" (transposed? eval.py wants one query per row as h5py sees it)" if shape[1] == n else "")
                       + f": get_recall asserts len(I) == len(gt); {stops}")
    return out


def _julia2024(attrs: dict, datasets: dict, shape, n: int) -> list[str]:
    stops = "evaluate-sisap24.jl stops (no later file is scored)"
    out: list[str] = []
    missing = [a for a in JULIA2024_ATTRIBUTES if a not in attrs]
    if missing:
        as_ds = [a for a in missing if a in datasets]
        out.append(f"attribute(s) {', '.join(missing)} missing"
                   + (f" ({', '.join(as_ds)} stored as datasets, JLD2 style)" if as_ds else "")
                   + f": read_attribute raises; {stops} (store them as HDF5 attributes)")
    if shape is None:
        out.append(f"no knns dataset: f[\"knns\"] raises; {stops}")
        return out
    if len(shape) != 2:
        out.append(f"knns has shape {shape}: macrorecall needs a matrix; {stops}")
        return out
    rows, cols = shape
    if rows < n:
        out.append(f"knns has {rows} rows (Julia: {rows} columns) for {n} gold queries"
                   + (" (transposed? one query per row as h5py sees it)" if cols == n else "")
                   + f": macrorecall's view(resI, :, i) raises BoundsError; {stops}")
    elif rows > n:
        out.append(f"knns has {rows} rows for {n} gold queries: macrorecall scores the first {n} and ignores the rest")
    k = YEAR_K[2024]
    if cols < k:
        out.append(f"knns has {cols} columns: macrorecall scores them against gold[1:30] without complaint, "
                   f"so recall is at most {cols}/30")
    elif cols > k:
        out.append(f"knns has {cols} columns: macrorecall intersects all {cols} with gold[1:30] (rule all-columns), "
                   f"not the first 30; recall can exceed recall@30")
    return out
