"""Gold-standard and result files: the only place where 1-based ids and ``1 - dot`` are handled.

On disk (official): ``knns`` int32 1-based, ``dists`` float32, shape (n_queries, k) as h5py sees it.
Gold ``dists`` hold ``1 - dot`` ascending (the 2024 page says "similarity", so readers detect a
descending orientation and convert). Inside the package: :class:`~laionknn.types.KnnResult` with
0-based int64 ids and ascending float32 distances.

Result files add metadata: ``algo``, ``data``, ``size``, ``buildtime``, ``querytime``, ``params``
(and ``task`` from 2025) as HDF5 attributes, or, as JLD2 writes them, scalar string datasets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from laionknn.errors import FormatError
from laionknn.fsutil import atomic_path
from laionknn.io.vectors import open_h5
from laionknn.types import KnnResult

RESULT_META = ("algo", "data", "size", "buildtime", "querytime", "params")
RESULT_OPTIONAL = ("task",)


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _decode(value[()])
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_meta(f: h5py.File) -> dict:
    """Attributes of the file root, plus scalar datasets (the JLD2 style), attributes winning."""
    meta = {}
    for name, obj in f.items():
        if isinstance(obj, h5py.Dataset) and obj.shape == ():
            meta[name] = _decode(obj[()])
    for name, value in f.attrs.items():
        meta[name] = _decode(value)
    return meta


def _raw_knn(path: Path, f: h5py.File) -> tuple[np.ndarray, np.ndarray]:
    missing = [k for k in ("knns", "dists") if k not in f]
    if missing:
        raise FormatError(f"{path}: missing dataset(s) {', '.join(missing)} (found: {', '.join(f.keys()) or 'none'}); "
                          f"expected 'knns' (int32, 1-based) and 'dists' (float32), shape (n_queries, k)")
    try:
        knns, dists = f["knns"][()], f["dists"][()]
    except OSError as exc:
        raise FormatError(f"{path}: cannot read knns/dists (truncated file?): {exc}") from None
    if knns.ndim != 2 or dists.ndim != 2:
        raise FormatError(f"{path}: knns {knns.shape} and dists {dists.shape} should both be 2-d (n_queries, k)")
    if knns.shape != dists.shape:
        raise FormatError(f"{path}: knns {knns.shape} and dists {dists.shape} have different shapes")
    if knns.dtype.kind not in "iu":
        raise FormatError(f"{path}: knns is {knns.dtype}, expected integer ids (int32, 1-based)")
    if dists.dtype.kind != "f":
        raise FormatError(f"{path}: dists is {dists.dtype}, expected floating-point distances (float32)")
    return knns, dists


def _to_zero_based(path: Path, knns: np.ndarray, n_database: int | None) -> np.ndarray:
    ids = knns.astype(np.int64)
    if ids.size and ids.min() < 1:
        bad = int(ids.min())
        what = "0-based ids" if bad == 0 else f"negative ids ({bad})"
        raise FormatError(f"{path}: knns contains {what}; official files hold 1-based row numbers "
                          f"(add 1 to every id when writing)")
    if n_database is not None and ids.size and ids.max() > n_database:
        raise FormatError(f"{path}: knns contains id {int(ids.max())}, beyond the database's {n_database} rows; "
                          f"is this file for another subset?")
    return ids - 1


def _check_orientation(path: Path, shape: tuple[int, int], n_queries: int | None, k: int | None) -> None:
    if n_queries is None:
        return
    if shape[0] != n_queries:
        if shape[1] == n_queries:
            raise FormatError(f"{path}: knns has shape {shape}, which looks transposed; expected "
                              f"(n_queries={n_queries}, k) as h5py sees the official files")
        raise FormatError(f"{path}: knns has {shape[0]} rows but there are {n_queries} queries")


def ascending_dists(path: Path, dists: np.ndarray) -> np.ndarray:
    """Return ``1 - dot`` ascending distances, converting a descending similarity matrix."""
    d = dists.astype(np.float32, copy=True)
    if np.isnan(d).any():
        row = int(np.flatnonzero(np.isnan(d).any(axis=1))[0])
        raise FormatError(f"{path}: dists contains NaN values (first in row {row}); the file is damaged")
    if d.shape[1] < 2 or d.size == 0:
        return d
    diffs = np.diff(d, axis=1)
    tol = 1e-6
    if (diffs >= -tol).all():
        return d
    if (diffs <= tol).all():
        return (1.0 - d).astype(np.float32)
    row = int(np.flatnonzero(~(diffs >= -tol).all(axis=1))[0])
    raise FormatError(f"{path}: dists row {row} is neither ascending (distances) nor descending (similarities)")


def read_gold(path: "str | os.PathLike[str]", *, n_database: int | None = None,
              n_queries: int | None = None, record=None) -> KnnResult:
    """Read an official gold-standard file as 0-based int64 ids and ascending ``1 - dot`` float32
    distances, shape (n_queries, k). ``n_database`` bounds the ids; ``record`` (a catalog record)
    checks keys, dtypes and shape first."""
    path = Path(path)
    if record is not None:
        from laionknn.io.check import check_against_record

        check_against_record(path, record)
    with open_h5(path) as f:
        knns, dists = _raw_knn(path, f)
        attrs = read_meta(f)
    _check_orientation(path, knns.shape, n_queries, None)
    ids = _to_zero_based(path, knns, n_database)
    return KnnResult(ids=ids, dists=ascending_dists(path, dists), attrs=attrs)


def write_gold(path: "str | os.PathLike[str]", result: KnnResult, attrs: dict | None = None,
               datasets: "dict[str, np.ndarray] | None" = None) -> Path:
    """Write ``result`` (0-based ids, ascending distances) in the official gold layout (atomic).

    ``datasets`` adds extra named datasets beside ``knns``/``dists`` (e.g. ``tie_at_k``, uint8 per
    query); readers of the official layout ignore them.
    """
    path = Path(path)
    if result.ids.size and result.ids.min() < 0:
        raise FormatError(f"{path}: refusing to write a gold standard with missing neighbours (id -1); "
                          f"k is larger than the database?")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("knns", data=(result.ids + 1).astype(np.int32))
        f.create_dataset("dists", data=result.dists.astype(np.float32))
        for name, data in (datasets or {}).items():
            if name in ("knns", "dists"):
                raise FormatError(f"{path}: extra dataset name {name!r} clashes with the official layout")
            f.create_dataset(name, data=np.asarray(data))
        for k, v in {**result.attrs, **(attrs or {})}.items():
            f.attrs[k] = v
    return path


@dataclass
class ResultFile:
    """A participant's result file: 0-based ids, distances as written, and the metadata."""

    ids: np.ndarray
    dists: np.ndarray
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def algo(self) -> str:
        return str(self.meta.get("algo", ""))

    @property
    def querytime(self) -> float:
        return float(self.meta.get("querytime", "nan"))

    @property
    def buildtime(self) -> float:
        return float(self.meta.get("buildtime", "nan"))


def result_shape(path: "str | os.PathLike[str]") -> tuple[int, int] | None:
    """``(n_queries, k)`` of a result file's ``knns`` as h5py sees it, from the header only; None when
    the file or its ``knns`` cannot be read (reading it fully says why)."""
    try:
        with open_h5(Path(path)) as f:
            knns = f.get("knns")
            if not isinstance(knns, h5py.Dataset) or knns.ndim != 2:
                return None
            return int(knns.shape[0]), int(knns.shape[1])
    except (OSError, FormatError):
        return None


def read_result(path: "str | os.PathLike[str]", *, n_database: int | None = None,
                n_queries: int | None = None) -> ResultFile:
    """Read a result file (attributes or JLD2-style scalar datasets); ids become 0-based."""
    path = Path(path)
    with open_h5(path) as f:
        knns, dists = _raw_knn(path, f)
        meta = read_meta(f)
    missing = [m for m in RESULT_META if m not in meta]
    if missing:
        raise FormatError(f"{path}: missing metadata {', '.join(missing)}; a result file needs attributes "
                          f"{', '.join(RESULT_META)}")
    _check_orientation(path, knns.shape, n_queries, None)
    ids = _to_zero_based(path, knns, n_database)
    return ResultFile(ids=ids, dists=dists.astype(np.float32), meta=meta, path=path)


def write_result(path: "str | os.PathLike[str]", ids: np.ndarray, dists: np.ndarray, *, algo: str, data: str,
                 size: str, buildtime: float, querytime: float, params: str, task: str | None = None,
                 extra: dict | None = None) -> Path:
    """Write an official result file from 0-based ids (atomic)."""
    path = Path(path)
    ids = np.asarray(ids)
    if ids.shape != np.shape(dists) or ids.ndim != 2:
        raise FormatError(f"{path}: ids {ids.shape} and dists {np.shape(dists)} must share one (n_queries, k) shape")
    if ids.size and ids.min() < 0:
        raise FormatError(f"{path}: ids contain -1 (fewer than k neighbours found); the search returned too few")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("knns", data=(ids + 1).astype(np.int32))
        f.create_dataset("dists", data=np.asarray(dists, dtype=np.float32))
        meta = {"algo": algo, "data": data, "size": size, "buildtime": float(buildtime),
                "querytime": float(querytime), "params": params}
        if task is not None:
            meta["task"] = task
        for k, v in {**meta, **(extra or {})}.items():
            f.attrs[k] = v
    return path
