"""Raw LAION parts: discovery, header checks, chunked readers and the NSFW rule.

A part ``i`` is ``img_emb_XXXX.npy`` (float16 (n, 768), one embedding per row; or the same array
inside ``img_emb_XXXX.npz``) with ``metadata_XXXX.parquet`` (one row per embedding, same order, with
an ``NSFW`` column). Everything here reads headers only, until :meth:`PartEmbeddings.chunks` streams
rows; nothing loads a whole part.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from laionknn.errors import FormatError, UsageError

DIM = 768
EMB_RE = re.compile(r"^img_emb_(\d+)\.(npy|npz)$")
META_RE = re.compile(r"^metadata_(\d+)\.parquet$")
NSFW_COLUMN = "NSFW"


@dataclass(frozen=True)
class Part:
    """One raw part: its number and its two files."""

    number: int
    embeddings: Path
    metadata: Path

    @property
    def label(self) -> str:
        return f"part {self.number} ({self.embeddings.name} + {self.metadata.name})"


def find_parts(parts_dir: "str | Path", numbers: "list[int] | range") -> list[Part]:
    """Locate the files of parts ``numbers`` in ``parts_dir`` (any zero padding, .npy or .npz).

    Raises :class:`UsageError` naming the first part with a missing file.
    """
    parts_dir = Path(parts_dir)
    if not parts_dir.is_dir():
        raise UsageError(f"--parts {parts_dir}: not a folder; expected a folder holding img_emb_XXXX.npy and "
                         f"metadata_XXXX.parquet files")
    emb: dict[int, Path] = {}
    meta: dict[int, Path] = {}
    for p in parts_dir.iterdir():
        if m := EMB_RE.match(p.name):
            num = int(m.group(1))
            if num in emb and emb[num].suffix != p.suffix:
                raise UsageError(f"part {num}: both {emb[num].name} and {p.name} exist in {parts_dir}; keep one")
            emb[num] = p
        elif m := META_RE.match(p.name):
            meta[int(m.group(1))] = p
    found = sorted(set(emb) & set(meta))
    have = _ranges(found) or "none"
    parts = []
    for num in numbers:
        missing = [what for what, d in (("img_emb_%04d.npy/.npz" % num, emb), ("metadata_%04d.parquet" % num, meta))
                   if num not in d]
        if missing:
            raise UsageError(f"part {num} is missing from {parts_dir} ({' and '.join(missing)} not found); the "
                             f"subsets need parts {numbers[0]}..{numbers[-1]} in sequence, complete parts present: "
                             f"{have}")
        parts.append(Part(num, emb[num], meta[num]))
    return parts


def _ranges(nums: list[int]) -> str:
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(out)


class PartEmbeddings:
    """Header view of a part's embedding array; :meth:`chunks` streams it in row order.

    ``.npy`` files are memory-mapped; ``.npz`` members are read sequentially from the zip stream
    (one chunk in memory at a time) unless stored in Fortran order, which needs a full load.
    """

    def __init__(self, path: "str | Path", label: str | None = None) -> None:
        self.path = Path(path)
        self.label = label or str(self.path)
        try:
            if self.path.suffix == ".npz":
                self._init_npz()
            else:
                self._arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
                self.shape, self.dtype = self._arr.shape, self._arr.dtype
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise FormatError(f"{self.label}: {self.path.name} is not a readable .npy/.npz array ({exc})") from None
        if len(self.shape) != 2 or self.shape[1] != DIM:
            raise FormatError(f"{self.label}: {self.path.name} has shape {self.shape}, expected (n, {DIM}) "
                              f"CLIP ViT-L/14 embeddings, one per row; is this part from another model?")
        if self.dtype.kind != "f":
            raise FormatError(f"{self.label}: {self.path.name} is {self.dtype}, expected float16 embeddings")
        self.n = int(self.shape[0])

    def _init_npz(self) -> None:
        with zipfile.ZipFile(self.path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".npy")]
            if not names:
                raise FormatError(f"{self.label}: {self.path.name} holds no array")
            pick = [n for n in names if n in ("emb.npy", "arr_0.npy", "img_emb.npy")] or names
            if len(pick) > 1:
                raise FormatError(f"{self.label}: {self.path.name} holds several arrays ({', '.join(names)}); "
                                  f"expected one embedding array")
            self._member = pick[0]
            with zf.open(self._member) as fh:
                self.shape, self._fortran, self.dtype = _read_npy_header(fh)

    def chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Yield consecutive blocks of at most ``rows`` rows."""
        with self.reader() as r:
            for lo in range(0, self.n, rows):
                yield r.take(min(rows, self.n - lo))

    def reader(self) -> "_SequentialReader":
        """A context manager whose ``take(m)`` returns the next ``m`` rows, in order."""
        return _SequentialReader(self)


class _SequentialReader:
    def __init__(self, emb: PartEmbeddings) -> None:
        self.emb = emb
        self.pos = 0
        self._zf = self._fh = None
        self._arr = getattr(emb, "_arr", None)

    def __enter__(self) -> "_SequentialReader":
        if self._arr is None:
            self._zf = zipfile.ZipFile(self.emb.path)
            if self.emb._fortran:
                with self._zf.open(self.emb._member) as fh:
                    self._arr = np.lib.format.read_array(fh)
            else:
                self._fh = self._zf.open(self.emb._member)
                _read_npy_header(self._fh)
        return self

    def take(self, m: int) -> np.ndarray:
        """The next ``m`` rows as (m, 768); raises :class:`FormatError` past the end."""
        lo = self.pos
        if lo + m > self.emb.n:
            raise FormatError(f"{self.emb.label}: asked for rows {lo}..{lo + m} of {self.emb.n}")
        self.pos += m
        if self._arr is not None:
            return self._arr[lo:lo + m]
        nbytes = m * self.emb.dtype.itemsize * DIM
        buf = self._fh.read(nbytes)
        if len(buf) != nbytes:
            raise FormatError(f"{self.emb.label}: {self.emb.path.name} ends early at row {lo} (truncated?)")
        return np.frombuffer(buf, dtype=self.emb.dtype).reshape(m, DIM)

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._zf is not None:
            self._zf.close()


def _read_npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    return shape, fortran, np.dtype(dtype)


def metadata_rows_and_columns(part: Part) -> tuple[int, list[str]]:
    """Row count and column names of a part's metadata, from the Parquet footer only."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(part.metadata)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise FormatError(f"{part.label}: {part.metadata.name} is not a readable Parquet file ({exc})") from None
    return pf.metadata.num_rows, list(pf.schema_arrow.names)


def check_part(part: Part) -> int:
    """Header checks of one part (dimension, dtype, NSFW column, equal row counts). Returns n rows."""
    emb = PartEmbeddings(part.embeddings, part.label)
    rows, columns = metadata_rows_and_columns(part)
    if NSFW_COLUMN not in columns:
        raise FormatError(f"{part.label}: {part.metadata.name} has no {NSFW_COLUMN!r} column (columns: "
                          f"{', '.join(columns) or 'none'}); the NSFW filter needs it")
    if rows != emb.n:
        raise FormatError(f"{part.label}: {part.embeddings.name} has {emb.n} embeddings but "
                          f"{part.metadata.name} has {rows} rows; they must describe the same images row by row")
    return emb.n


def nsfw_keep_mask(nsfw) -> np.ndarray:
    """bool (n,): True where the NSFW value is present and not equal to ``"NSFW"``.

    ``nsfw`` is a pyarrow array/chunked array (any type; cast to string) or a sequence of values;
    "UNLIKELY" and "UNSURE" are kept, missing values (null) are dropped.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = nsfw if isinstance(nsfw, (pa.Array, pa.ChunkedArray)) else pa.array(nsfw)
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    keep = pc.fill_null(pc.not_equal(arr, pa.scalar("NSFW", arr.type)), False)
    return np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)


def parse_subsets(spec: str) -> list[tuple[str, int]]:
    """'10M=11,30M=33,100M=111' -> [('10M', 11), ('30M', 33), ('100M', 111)], sorted by part count."""
    out: list[tuple[str, int]] = []
    for item in (s.strip() for s in str(spec).split(",")):
        if not item:
            continue
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep or not name or not re.fullmatch(r"[A-Za-z0-9._-]+", name) or not count.strip().isdigit() \
                or int(count) < 1:
            raise UsageError(f"--subsets: cannot read {item!r}; expected NAME=PARTS with a positive part count, "
                             f"e.g. 10M=11,30M=33,100M=111")
        out.append((name, int(count)))
    if not out:
        raise UsageError("--subsets: no subset given; expected e.g. 10M=11")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise UsageError(f"--subsets: a subset name appears twice ({', '.join(names)})")
    counts = [c for _, c in out]
    if len(set(counts)) != len(counts):
        raise UsageError(f"--subsets: two subsets use the same part count ({spec}); they would be identical")
    return sorted(out, key=lambda x: x[1])
