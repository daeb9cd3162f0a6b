"""Check a file's HDF5 layout against its catalog record (keys, dtypes, shape, row count).

Only headers and one row per dataset are read, so checking a 147 GB database is instant; reading the
last row makes a file cut short inside its data fail here rather than half-way through a search.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from laionknn.errors import FormatError
from laionknn.io.vectors import REPLACE_ADVICE, open_h5

log = logging.getLogger(__name__)

_DTYPE_SHAPE = re.compile(r"^\s*([\w/]+)\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)\s*$")


@dataclass(frozen=True)
class Layout:
    """What a record promises: dataset keys, one dtype per key, and the (rows, cols) shape as h5py
    sees it, ``None`` where the catalog leaves it open (``n``, ``k``)."""

    keys: tuple[str, ...]
    dtypes: tuple[np.dtype, ...]
    rows: int | None
    cols: int | None
    #: False when ``rows`` comes from the subset name of a built-in record (e.g. 30M) rather than from
    #: a number the catalog states: a disagreement is then logged, and the md5 decides
    rows_strict: bool = True


def expected_layout(record) -> Layout:
    """Parse ``record.keys`` and ``record.dtype_shape`` ('float16 (n,768)', 'int32/float32 (10000,k)')."""
    m = _DTYPE_SHAPE.match(record.dtype_shape or "")
    if not m:
        raise FormatError(f"catalog entry {record.name}: cannot read dtype/shape {record.dtype_shape!r}; expected "
                          f"e.g. 'float16 (n,768)' or 'int32/float32 (10000,k)'")
    names = m.group(1).split("/")
    keys = tuple(record.keys)
    if len(names) == 1 and len(keys) > 1:
        names = names * len(keys)
    if len(names) != len(keys):
        raise FormatError(f"catalog entry {record.name}: {len(keys)} key(s) {', '.join(keys)} but dtypes {m.group(1)}")
    try:
        dtypes = tuple(np.dtype(n) for n in names)
    except TypeError:
        raise FormatError(f"catalog entry {record.name}: unknown dtype in {m.group(1)!r}") from None

    def num(text: str) -> int | None:
        return int(text) if text.isdigit() else None

    rows, strict = num(m.group(2)), True
    if rows is None and record.kind == "database":
        rows = record.n_rows
        strict = record.synthetic or record.source != "builtin"
    return Layout(keys, dtypes, rows, num(m.group(3)), strict)


def check_against_record(path: "str | os.PathLike[str]", record) -> Layout:
    """Raise :class:`FormatError` unless ``path`` holds ``record``'s datasets with its dtypes and shape.

    Checks: every key present; each a 2-d dataset of the catalog dtype; the column count (dimension,
    or k) and row count where the catalog fixes them (database subsets have exact row counts); all
    datasets of one file sharing one shape (``knns`` and ``dists``); the last row readable (a file
    truncated inside its data). Returns the layout found (rows and cols filled in).
    """
    path = Path(path)
    want = expected_layout(record)
    shape = None
    with open_h5(path) as f:
        missing = [k for k in want.keys if k not in f]
        if missing:
            raise FormatError(f"{path}: missing dataset(s) {', '.join(missing)} (found: {', '.join(f.keys()) or 'none'}); "
                              f"the catalog entry {record.name} has {', '.join(want.keys)}")
        for key, dtype in zip(want.keys, want.dtypes):
            ds = f[key]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
                raise FormatError(f"{path}: {key!r} should be a 2-d dataset, found {getattr(ds, 'shape', 'a group')}")
            if ds.dtype != dtype:
                raise FormatError(f"{path}: {key!r} is {ds.dtype}, expected {dtype} ({record.name}: {record.dtype_shape})")
            rows, cols = (int(s) for s in ds.shape)
            if want.cols is not None and cols != want.cols:
                if rows == want.cols:
                    raise FormatError(f"{path}: {key!r} has shape {(rows, cols)}, which looks transposed; expected "
                                      f"one vector per row, ({want.rows or 'n'}, {want.cols}) as h5py sees the official files")
                raise FormatError(f"{path}: {key!r} has {cols} columns, expected {want.cols} "
                                  f"({record.name}: {record.dtype_shape})")
            if want.rows is not None and rows != want.rows and not want.rows_strict:
                log.warning("%s: %r has %d rows; subset %s of %s suggests %d (the md5 is what is checked)",
                            path, key, rows, record.subset, record.name, want.rows)
            elif want.rows is not None and rows != want.rows:
                raise FormatError(f"{path}: {key!r} has {rows} rows, expected {want.rows} ({record.name}); "
                                  f"is this file for another subset?")
            if shape is not None and (rows, cols) != shape:
                raise FormatError(f"{path}: {key!r} has shape {(rows, cols)} but {want.keys[0]!r} has {shape}")
            shape = (rows, cols)
            if rows:
                try:
                    ds[rows - 1]
                except OSError as exc:
                    raise FormatError(f"{path}: the last row of {key!r} cannot be read (truncated file?): {exc}; "
                                      f"{REPLACE_ADVICE}") from None
    return Layout(want.keys, want.dtypes, shape[0] if shape else None, shape[1] if shape else None, True)
