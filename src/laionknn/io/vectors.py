"""Vector files in the official layout: one vector per row, as h5py sees the Julia-written files.

| family | key | dtype | shape |
| database clip768v2 | emb | float16 | (n, 768) |
| queries clip768v2 | emb | float32 | (nq, 768) |
| pca32v2 / pca96v2 | pca32 / pca96 | float32 | (n, 32) / (n, 96) |
| hammingv2 | hamming | uint64 | (n, 16) |

:class:`VectorFile` streams row ranges with a memory budget (float16 stays float16 unless a dtype is
asked for); :class:`VectorWriter` appends blocks to a chunked dataset and renames the file into place
only when complete.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from laionknn.errors import DataError, FormatError

log = logging.getLogger(__name__)

KNOWN_KEYS = ("emb", "pca32", "pca96", "hamming")
KEY_DTYPE = {"emb": None, "pca32": np.float32, "pca96": np.float32, "hamming": np.uint64}
KEY_DIM = {"emb": 768, "pca32": 32, "pca96": 96, "hamming": 16}
#: laionknn's own projections use the official keys' pattern: ``pcaN`` (N columns, float32) for any
#: N, and ``hamming`` with bits/64 words for any sketch length; without a catalog record, a file's
#: key fixes its dimension only for ``pcaN`` (``emb`` and ``hamming`` take any width)
_PCA_KEY = re.compile(r"^pca(\d+)$")


def _vector_key(key: str) -> bool:
    return key in KNOWN_KEYS or _PCA_KEY.match(key) is not None


def _key_dim(key: str) -> int | None:
    m = _PCA_KEY.match(key)
    return int(m.group(1)) if m else None


def _key_dtype(key: str):
    return np.float32 if _PCA_KEY.match(key) else KEY_DTYPE.get(key)


#: what to do with a damaged file: fetch never replaces a file that is present, so it must go first
REPLACE_ADVICE = ("delete it and fetch it again if it is a catalog file (`laionknn datasets fetch` keeps a file "
                  "that is present), else write it again")


def open_h5(path: "str | os.PathLike[str]") -> h5py.File:
    """Open an HDF5 file for reading, turning every failure into a :class:`FormatError`."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file; fetch it with `laionknn datasets fetch` or check the path")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path}: not a readable HDF5 file (truncated or damaged?): {exc}; "
                          f"{REPLACE_ADVICE}") from None


def parse_memory(text: "str | int | None") -> int | None:
    """'8G' -> 8 GiB in bytes, '512M' -> bytes, an int is bytes, None -> None."""
    if text is None or isinstance(text, int):
        return text
    from laionknn.errors import UsageError

    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    try:
        if t and t[-1] in mult:
            return int(float(t[:-1]) * mult[t[-1]])
        return int(float(t))
    except (ValueError, OverflowError):  # 'abc', 'nanG' / 'infG', '1e999'
        raise UsageError(f"cannot read memory size {text!r}: expected e.g. 8G, 512M or a byte count") from None


class VectorFile:
    """Read-only view of one 2-d dataset; one vector per row. Use as a context manager.

    ``n``, ``dim``, ``dtype`` come from the header only; nothing is read until asked.
    """

    def __init__(self, path: "str | os.PathLike[str]", key: str | None = None, *,
                 expect_dim: int | None = None, expect_dtype=None, expect_rows: int | None = None,
                 record=None) -> None:
        self.path = Path(path)
        if record is not None:
            # the catalog record fixes the key, dtype, dimension and (for database subsets) rows
            from laionknn.io.check import expected_layout

            want = expected_layout(record)
            if len(want.keys) != 1:
                raise FormatError(f"{self.path}: catalog entry {record.name} is not a vector file "
                                  f"(keys {', '.join(want.keys)}); read it with read_gold")
            key = key or want.keys[0]
            expect_dtype = expect_dtype if expect_dtype is not None else want.dtypes[0]
            expect_dim = expect_dim if expect_dim is not None else want.cols
            if expect_rows is None and want.rows_strict:
                expect_rows = want.rows
        self._f = open_h5(self.path)
        try:
            self.key = key or self._detect_key()
            if self.key not in self._f:
                raise FormatError(f"{self.path}: no dataset {self.key!r} (found: {', '.join(self._f.keys()) or 'none'}); "
                                  f"expected the official key for this file family")
            ds = self._f[self.key]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
                shape = getattr(ds, "shape", "a group")
                raise FormatError(f"{self.path}: {self.key!r} should be a 2-d dataset (rows = vectors), found {shape}")
            self._ds = ds
            self.n, self.dim = (int(s) for s in ds.shape)
            self.dtype = ds.dtype
            self._check(expect_dim, expect_dtype, expect_rows)
        except BaseException:
            self._f.close()
            raise

    def _detect_key(self) -> str:
        found = [k for k in self._f.keys() if _vector_key(k) and isinstance(self._f[k], h5py.Dataset)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise FormatError(f"{self.path}: none of the official vector keys {', '.join(KNOWN_KEYS)} is present, nor "
                              f"a pcaN of laionknn's projections (found: {', '.join(self._f.keys()) or 'none'}); "
                              f"store the vectors under one of them")
        raise FormatError(f"{self.path}: several vector keys present ({', '.join(found)}); keep one vector dataset "
                          f"per file (or, in Python, give VectorFile(path, key=...))")

    def _check(self, expect_dim, expect_dtype, expect_rows) -> None:
        expect_dim = expect_dim if expect_dim is not None else _key_dim(self.key)
        if expect_dim is not None and self.dim != expect_dim:
            if self.n == expect_dim:
                raise FormatError(f"{self.path}: {self.key!r} has shape {(self.n, self.dim)}, which looks transposed; "
                                  f"expected one vector per row, (n, {expect_dim}) as h5py sees the official files")
            raise FormatError(f"{self.path}: {self.key!r} has {self.dim} columns, expected dimension {expect_dim}")
        want = expect_dtype if expect_dtype is not None else _key_dtype(self.key)
        if want is not None and self.dtype != np.dtype(want):
            raise FormatError(f"{self.path}: {self.key!r} is {self.dtype}, expected {np.dtype(want)}")
        if self.key == "emb" and self.dtype not in (np.float16, np.float32, np.float64):
            raise FormatError(f"{self.path}: 'emb' is {self.dtype}, expected float16 (database) or float32 (queries)")
        if expect_rows is not None and self.n != expect_rows:
            raise FormatError(f"{self.path}: {self.key!r} has {self.n} rows, expected {expect_rows}")
        if self.n == 0:
            raise DataError(f"{self.path}: {self.key!r} has no rows; an empty file cannot be searched")

    # --- reading ---------------------------------------------------------------------------
    def read(self, start: int = 0, stop: int | None = None, dtype=None) -> np.ndarray:
        """Rows [start, stop) as a fresh array (converted to ``dtype`` when given)."""
        stop = self.n if stop is None else min(stop, self.n)
        try:
            block = self._ds[start:stop]
        except OSError as exc:
            raise FormatError(f"{self.path}: rows {start}..{stop} cannot be read (truncated file?): {exc}") from None
        return block if dtype is None or block.dtype == dtype else block.astype(dtype)

    def rows_for_budget(self, memory_bytes: int, *, dtype=None, copies: int = 1) -> int:
        """How many rows fit in ``memory_bytes`` with ``copies`` buffers of ``dtype`` (at least 1)."""
        item = np.dtype(dtype or self.dtype).itemsize
        return max(1, int(memory_bytes // max(1, copies * item * self.dim)))

    def blocks(self, rows: int | None = None, *, memory: "int | str | None" = None, start: int = 0,
               stop: int | None = None, dtype=None, check: bool = False,
               nonzero: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, block)`` over rows [start, stop) in blocks of ``rows`` rows, or as many
        as fit in ``memory`` bytes (default 256 MiB), aligned to the dataset's chunks when possible.
        ``check``: raise :class:`DataError` naming the file and row at the first NaN/inf value
        (``nonzero``: also at the first all-zero row, which cannot be normalised)."""
        stop = self.n if stop is None else min(stop, self.n)
        if rows is None:
            rows = self.rows_for_budget(parse_memory(memory) or 256 * 1024**2, dtype=dtype)
            chunk = (self._ds.chunks or (1,))[0]
            if rows > chunk:
                rows -= rows % chunk
        rows = max(1, int(rows))
        for lo in range(start, stop, rows):
            block = self.read(lo, min(lo + rows, stop), dtype=dtype)
            if check or nonzero:
                check_vectors(block, what=f"{self.path} ({self.key!r})", first_row=lo, nonzero=nonzero)
            yield lo, block

    def __len__(self) -> int:
        return self.n

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "VectorFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VectorFile({str(self.path)!r}, key={self.key!r}, n={self.n}, dim={self.dim}, dtype={self.dtype})"


def read_vectors(path: "str | os.PathLike[str]", key: str | None = None, *, dtype=None, check: bool = False,
                 nonzero: bool = False, **expect) -> np.ndarray:
    """Read a whole (small) vector file, e.g. a query file, as an (n, dim) array (one vector per row).

    ``expect``: ``expect_dim``, ``expect_dtype``, ``expect_rows`` or ``record`` (a catalog record).
    ``check``/``nonzero``: refuse NaN/inf values / all-zero rows (:class:`DataError` naming the row).
    """
    with VectorFile(path, key, **expect) as vf:
        block = vf.read(dtype=dtype)
        if check or nonzero:
            check_vectors(block, what=f"{vf.path} ({vf.key!r})", nonzero=nonzero)
        return block


def check_vectors(block: np.ndarray, *, what: str = "vectors", first_row: int = 0, nonzero: bool = False) -> None:
    """Raise :class:`DataError` naming the first bad row: NaN/inf values, or (``nonzero``) zero norm."""
    if block.dtype.kind == "f":
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0]) + first_row
            raise DataError(f"{what}: row {row} contains NaN or infinite values; clean or drop that row")
        if nonzero:
            zero = ~np.any(block != 0, axis=1)
            if zero.any():
                row = int(np.flatnonzero(zero)[0]) + first_row
                raise DataError(f"{what}: row {row} has zero norm and cannot be L2-normalised; drop that row "
                                f"or run without normalisation")


def close_abandoned(f: h5py.File) -> None:
    """Close an h5py file being given up (a write failed, the disk is full) without writing to it
    again: its descriptor is pointed at /dev/null first, so HDF5's final metadata flush cannot fail
    (a failed flush left an open file id whose close at exit crashed Python with exit 139), and the
    bytes on disk stay as the last successful flush left them (what a resumable job resumes from)."""
    if not f.id.valid:
        return
    try:
        fd = f.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, int(fd))
        finally:
            os.close(null)
    except (AttributeError, OSError, TypeError, ValueError):
        pass  # a driver without a plain descriptor: the close below may still fail, which is then ignored
    try:
        f.close()
    except Exception:  # noqa: BLE001 - nothing more can be done for a file being discarded
        log.debug("closing an abandoned HDF5 file failed", exc_info=True)


def raise_disk_full(exc: Exception, path: Path) -> None:
    """Re-raise an h5py/OS error of a write into ``path`` as :class:`DiskFullError` when it is ENOSPC."""
    from laionknn.errors import DiskFullError
    from laionknn.fsutil import explain_os_error, os_error_errno

    if os_error_errno(exc) in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        raise DiskFullError(explain_os_error(exc, path)) from None


class VectorWriter:
    """Append blocks of rows into ``key`` of a new HDF5 file; renamed onto ``path`` by :meth:`close`.

    The dataset is chunked and resizable, so writing needs only one block in memory. If the writer is
    abandoned (exception, kill) the final path is never created. ``attrs`` are stored on the file.
    """

    def __init__(self, path: "str | os.PathLike[str]", key: str, dim: int, dtype, *, expected_rows: int = 0,
                 chunk_rows: int | None = None, attrs: dict | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        from laionknn.fsutil import temp_path

        self.tmp = temp_path(self.path)
        self.dtype = np.dtype(dtype)
        self.dim = int(dim)
        if chunk_rows is None:
            chunk_rows = max(1, min(65536, (1 << 20) // max(1, self.dim * self.dtype.itemsize)))
        if expected_rows:
            from laionknn.fsutil import check_free_space

            check_free_space(self.path.parent, expected_rows * self.dim * self.dtype.itemsize, f"writing {self.path}")
        self._f = h5py.File(self.tmp, "w")
        self._ds = self._f.create_dataset(key, shape=(0, self.dim), maxshape=(None, self.dim), dtype=self.dtype,
                                          chunks=(chunk_rows, self.dim))
        if expected_rows:
            self._ds.resize((expected_rows, self.dim))
            self._ds.resize((0, self.dim))
        for k, v in (attrs or {}).items():
            self._f.attrs[k] = v
        self.n = 0

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise FormatError(f"{self.path}: block of shape {block.shape} does not fit rows of dimension {self.dim}")
        m = block.shape[0]
        try:
            self._ds.resize((self.n + m, self.dim))
            self._ds[self.n:self.n + m] = block.astype(self.dtype, copy=False)
        except (OSError, RuntimeError) as exc:  # h5py reports some failed writes as RuntimeError
            self.abort()
            raise_disk_full(exc, self.tmp)
            raise
        self.n += m

    def close(self) -> Path:
        """Finish the file and move it into place. Returns the final path."""
        try:
            self._f.close()
        except (OSError, RuntimeError) as exc:  # h5py reports some failed writes as RuntimeError
            self.abort()
            raise_disk_full(exc, self.tmp)
            raise
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Give the file up: closed without another write, the temporary file removed."""
        from laionknn.fsutil import discard

        close_abandoned(self._f)
        discard(self.tmp)

    def __enter__(self) -> "VectorWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_vectors(path: "str | os.PathLike[str]", array: np.ndarray, key: str, dtype=None,
                  attrs: dict | None = None) -> Path:
    """Write a whole array as one official vector file (atomic)."""
    array = np.asarray(array)
    with VectorWriter(path, key, array.shape[1], dtype or array.dtype, attrs=attrs) as w:
        w.append(array)
    return Path(path)
