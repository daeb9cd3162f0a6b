"""A user's own vector files: which layout a file has, and a view of it that the rest of laionknn reads.

Accepted layouts (``detect``):

| layout | how it is recognised | database | queries | gold |
| official | HDF5 with one vector key (``emb``, ``pca32``, ``pca96``, ``pcaN``, ``hamming``) | that key | beside it | beside it |
| ann-benchmarks | HDF5 with ``train`` and ``test`` (attr ``distance``) | ``train`` | ``test`` | ``neighbors`` / ``distances`` (0-based) |
| FILE#KEY | any HDF5 file, ``KEY`` a 2-d dataset in it | ``KEY`` | beside it | beside it |
| .npy | NumPy 2-d array, C order | the array | beside it | beside it |
| .fbin | uint32 n, uint32 d, then n*d float32 rows (big-ann-benchmarks) | the rows | beside it | beside it |

Every layout holds one vector per row. Files "beside it" share the database's stem followed by one of
:data:`QUERY_SUFFIXES` (``my-db.queries.npy`` for ``my-db.npy``) or :data:`GOLD_SUFFIXES` (an official
gold file, ``knns`` 1-based); options (``--queries``, ``--gold``) name them otherwise.

A file that is not in the official layout is read through a *view* (``as_official``): a small HDF5 file
in the workspace's ``data/views`` folder whose ``emb`` (or ``hamming``) dataset is an HDF5 external link
(an HDF5 source) or external raw storage (``.npy``, ``.fbin``) onto the user's bytes, so nothing is
copied. An ann-benchmarks gold standard is rewritten once into the official gold layout (``ann_gold``).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laionknn.errors import FormatError
from laionknn.types import Metric

OFFICIAL_KEYS = ("emb", "pca32", "pca96", "hamming")
ANN_KEYS = ("train", "test", "neighbors", "distances")
VECTOR_SUFFIXES = (".h5", ".hdf5", ".npy", ".fbin")
QUERY_SUFFIXES = (".queries", "-queries", "_queries", ".query", "-query", "_query")
GOLD_SUFFIXES = (".gold", "-gold", "_gold", ".gt", "-gt", "_gt")
#: ann-benchmarks' ``distance`` attribute -> laionknn's metric (euclidean distances are squared here)
ANN_METRICS = {"angular": Metric.COSINE, "euclidean": Metric.L2}
EXPECTED = ("an official vector file (one 2-d dataset emb, pca32, pca96, pcaN or hamming), an ann-benchmarks "
            "file (train, test, neighbors, distances), FILE#KEY naming a 2-d dataset, a .npy array or a .fbin file")


@dataclass(frozen=True)
class FileLayout:
    """What ``detect`` found: ``kind`` is official, ann-benchmarks, hdf5-key, npy or fbin; ``key`` the
    HDF5 dataset of the vectors (None for .npy/.fbin); ``metric`` the one the file states (ann-benchmarks'
    ``distance`` attribute), else None; ``offset`` the first data byte of a .npy/.fbin file."""

    path: Path
    kind: str
    key: str | None
    n: int
    dim: int
    dtype: np.dtype
    metric: Metric | None = None
    offset: int = 0


def split_key(text: "str | os.PathLike[str]") -> tuple[Path, str | None]:
    """``"file.h5#train"`` -> ``(Path("file.h5"), "train")``; a path without ``#KEY`` -> ``(path, None)``
    (a file whose own name holds ``#`` is taken as it is)."""
    text = str(text)
    path = Path(text).expanduser()
    if "#" in text and not path.exists():
        head, key = text.rsplit("#", 1)
        return Path(head).expanduser(), key or None
    return path, None


def is_user_file(text: "str | os.PathLike[str]") -> bool:
    """Whether ``text`` names an existing file (``FILE#KEY`` included) rather than a catalog name."""
    return split_key(text)[0].is_file()


def detect(text: "str | os.PathLike[str]", key: str | None = None) -> FileLayout:
    """The layout of a vector file (``FILE#KEY`` accepted); :class:`FormatError` naming the keys found
    and the layouts expected when it is none of them."""
    path, given = split_key(text)
    key = key or given
    if not path.is_file():
        raise FormatError(f"{path}: no such file; give {EXPECTED}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _detect_npy(path)
    if suffix == ".fbin":
        return _detect_fbin(path)
    import h5py

    if not h5py.is_hdf5(path):
        raise FormatError(f"{path}: not an HDF5, .npy or .fbin file; give {EXPECTED}")
    with h5py.File(path, "r") as f:
        keys = sorted(f.keys())
        if key is not None:
            return _hdf5_dataset(path, f, key, "hdf5-key", keys)
        if "train" in f and "test" in f:
            raw = f.attrs.get("distance", "")
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if name and name not in ANN_METRICS:
                raise FormatError(f"{path}: ann-benchmarks distance {name!r} is not supported; laionknn searches "
                                  f"{', '.join(ANN_METRICS)} ann-benchmarks files")
            layout = _hdf5_dataset(path, f, "train", "ann-benchmarks", keys)
            return FileLayout(**{**layout.__dict__, "metric": ANN_METRICS.get(name)})
        vectors = [k for k in keys if k in OFFICIAL_KEYS or (k.startswith("pca") and k[3:].isdigit())]
        if len(vectors) == 1:
            return _hdf5_dataset(path, f, vectors[0], "official", keys)
    found = ", ".join(keys) or "none"
    if len(vectors) > 1:
        raise FormatError(f"{path}: several vector keys ({', '.join(vectors)}); name one as {path.name}#KEY")
    if "knns" in keys:
        raise FormatError(f"{path}: a gold-standard or result file (keys {found}), not vectors; give it with --gold")
    raise FormatError(f"{path}: neither layout: keys found {found}; expected {EXPECTED}")


def _hdf5_dataset(path: Path, f, key: str, kind: str, keys: list[str]) -> FileLayout:
    import h5py

    ds = f.get(key)
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
        what = "no such dataset" if ds is None else f"shape {getattr(ds, 'shape', 'a group')}"
        raise FormatError(f"{path}: {key!r} is not a 2-d dataset ({what}; keys found: {', '.join(keys) or 'none'}); "
                          f"expected one vector per row")
    return FileLayout(path, kind, key, int(ds.shape[0]), int(ds.shape[1]), ds.dtype)


def _detect_npy(path: Path) -> FileLayout:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise FormatError(f"{path}: not a readable .npy array ({exc}); save it with numpy.save") from None
    if arr.ndim != 2 or not arr.flags.c_contiguous:
        raise FormatError(f"{path}: a .npy database must be a 2-d C-ordered array (one vector per row); "
                          f"found shape {arr.shape}{'' if arr.flags.c_contiguous else ', Fortran order'}")
    if arr.dtype not in (np.float16, np.float32, np.float64, np.uint64):
        raise FormatError(f"{path}: .npy dtype {arr.dtype} is not supported; save float32 (or float16) vectors, "
                          f"or uint64 words of packed bit sketches")
    return FileLayout(path, "npy", None, int(arr.shape[0]), int(arr.shape[1]), arr.dtype, offset=int(arr.offset))


def _detect_fbin(path: Path) -> FileLayout:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        raise FormatError(f"{path}: {size} bytes, too short for an .fbin header (uint32 rows, uint32 dimension)")
    n, dim = struct.unpack("<II", head)
    if dim == 0 or size != 8 + 4 * n * dim:
        raise FormatError(f"{path}: the .fbin header says {n} rows of {dim} float32 ({8 + 4 * n * dim} bytes) but "
                          f"the file has {size} bytes; write uint32 n, uint32 d, then n*d float32 values")
    return FileLayout(path, "fbin", None, n, dim, np.dtype(np.float32), offset=8)


# --- views -------------------------------------------------------------------------------------------
def _stamp(path: Path, extra: str) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{extra}".encode()).hexdigest()[:12]


def as_official(text: "str | os.PathLike[str]", role: str = "database") -> Path:
    """A path in the official vector layout for ``text``: the file itself when it already is one, else a
    view (written once, atomically) whose ``emb``/``hamming`` dataset reads the user's bytes in place.
    ``role="queries"`` takes an ann-benchmarks file's ``test`` rows instead of ``train``."""
    layout = detect(text)
    if layout.kind == "official":
        return layout.path
    if layout.kind == "ann-benchmarks" and role == "queries":
        import h5py

        with h5py.File(layout.path, "r") as f:
            layout = _hdf5_dataset(layout.path, f, "test", "ann-benchmarks", sorted(f.keys()))
    return _view(layout)


def _view(layout: FileLayout) -> Path:
    import h5py

    from laionknn import workspace
    from laionknn.fsutil import atomic_path

    if layout.dtype.kind not in "fu" or (layout.dtype.kind == "u" and layout.dtype != np.uint64):
        raise FormatError(f"{layout.path}: vectors of dtype {layout.dtype} are not supported; give float vectors "
                          f"or uint64 words of packed bit sketches")
    key = "hamming" if layout.dtype == np.uint64 else "emb"
    stem = f"{layout.path.stem}-{layout.key or layout.kind}"
    out = workspace.data_dir() / "views" / f"{stem}-{_stamp(layout.path, str(layout.key))}.h5"
    if out.is_file():
        return out
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        if layout.key is not None:
            f[key] = h5py.ExternalLink(str(layout.path.resolve()), layout.key)
        else:
            nbytes = layout.n * layout.dim * layout.dtype.itemsize
            f.create_dataset(key, shape=(layout.n, layout.dim), dtype=layout.dtype,
                             external=[(str(layout.path.resolve()), layout.offset, nbytes)])
        f.attrs["laionknn_view_of"] = f"{layout.path.resolve()}" + (f"#{layout.key}" if layout.key else "")
        f.attrs["laionknn_layout"] = layout.kind
        if layout.metric is not None:
            f.attrs["laionknn_metric"] = layout.metric.value
    return out


def ann_gold(path: "str | os.PathLike[str]") -> Path:
    """An ann-benchmarks file's ``neighbors`` (0-based ids) and ``distances`` as an official gold file
    (1-based ``knns``, ascending ``dists``; euclidean distances squared, as laionknn's l2), written once
    into the workspace's gold folder."""
    import h5py

    from laionknn import workspace
    from laionknn.io.knnfiles import write_gold
    from laionknn.types import KnnResult

    layout = detect(path)
    if layout.kind != "ann-benchmarks":
        raise FormatError(f"{layout.path}: not an ann-benchmarks file (no train/test datasets)")
    out = workspace.gold_dir() / f"gold-{layout.path.stem}-ann-{_stamp(layout.path, 'gold')}.h5"
    if out.is_file():
        return out
    with h5py.File(layout.path, "r") as f:
        missing = [k for k in ("neighbors", "distances") if k not in f]
        if missing:
            raise FormatError(f"{layout.path}: ann-benchmarks file without {', '.join(missing)} (keys found: "
                              f"{', '.join(sorted(f.keys()))}); give the gold standard with --gold")
        ids = np.asarray(f["neighbors"][()], dtype=np.int64)
        dists = np.asarray(f["distances"][()], dtype=np.float64)
    if layout.metric is Metric.L2:
        dists = dists * dists
    write_gold(out, KnnResult(ids=ids, dists=dists.astype(np.float32)),
               attrs={"source": f"ann-benchmarks neighbors/distances of {layout.path.name}"})
    return out


def view_metric(path: "str | os.PathLike[str]") -> Metric | None:
    """The metric a view (or an ann-benchmarks file) states, else None."""
    layout = detect(path)
    if layout.metric is not None:
        return layout.metric
    import h5py

    if layout.kind == "official":
        with h5py.File(layout.path, "r") as f:
            value = f.attrs.get("laionknn_metric")
        if value is not None:
            return Metric.parse(value.decode() if isinstance(value, bytes) else str(value))
    return None


# --- companions -------------------------------------------------------------------------------------
def beside(text: "str | os.PathLike[str]", suffixes: tuple[str, ...],
           extensions: tuple[str, ...] = VECTOR_SUFFIXES) -> Path | None:
    """The first existing file named ``<stem><suffix><extension>`` in the folder of ``text``."""
    path, _ = split_key(text)
    for suffix in suffixes:
        for ext in extensions:
            candidate = path.with_name(f"{path.stem}{suffix}{ext}")
            if candidate.is_file():
                return candidate
    return None


def companions(text: "str | os.PathLike[str]") -> tuple[str | None, str | None]:
    """``(queries, gold)`` of a database file: inside it (an ann-benchmarks file: ``FILE#test`` and its
    neighbours) or beside it (:data:`QUERY_SUFFIXES`, :data:`GOLD_SUFFIXES`); None where none is found."""
    layout = detect(text)
    if layout.kind == "ann-benchmarks":
        import h5py

        with h5py.File(layout.path, "r") as f:
            has_gold = "neighbors" in f and "distances" in f
        return f"{layout.path}#test", (str(ann_gold(layout.path)) if has_gold else None)
    queries = beside(text, QUERY_SUFFIXES)
    gold = beside(text, GOLD_SUFFIXES, (".h5", ".hdf5"))
    return (str(queries) if queries else None), (str(gold) if gold else None)


def user_path(text: "str | os.PathLike[str]", role: str = "database") -> Path | None:
    """``as_official(text, role)`` when ``text`` names an existing file (``FILE#KEY`` included), else None
    (a catalog name): the first step of every command's input resolution."""
    return as_official(text, role) if is_user_file(text) else None


def gold_file(text: "str | os.PathLike[str]") -> Path:
    """A ``--gold`` argument as an official gold file: an ann-benchmarks dataset file gives its
    ``neighbors``/``distances`` (rewritten once, :func:`ann_gold`); any other path is returned as it is."""
    path = split_key(text)[0]
    if path.is_file() and path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                ann = "train" in f and "neighbors" in f
            if ann:
                return ann_gold(path)
    return Path(text).expanduser()
