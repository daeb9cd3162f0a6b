"""File-level projections: resolve inputs (catalog name or file), stream blocks through a model, write
official-layout outputs atomically (:class:`laionknn.io.VectorWriter`).

Output names follow the official families: ``…clip768v2…`` becomes ``…pca32v2…``, ``…pca96v2…`` or
``…hammingv2…``; other names get a suffix (``-pca32``, ``-hamming``, ``-sketch-hiob-1024``). Outputs go
to ``--out DIR`` or the workspace's ``projections/`` folder.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import h5py
import numpy as np

from laionknn import workspace
from laionknn.errors import LaionKnnError, UsageError
from laionknn.fsutil import atomic_path
from laionknn.io import VectorFile, VectorWriter, check_vectors, write_result
from laionknn.progress import progress_bar

log = logging.getLogger(__name__)

DEFAULT_BLOCK_ROWS = 65536


def resolve_input(name_or_file: str, catalogs=None) -> Path:
    """An existing file path as is; otherwise a catalog name, fetched or synthesised if needed."""
    from laionknn.io.formats import user_path

    p = user_path(name_or_file)
    if p is not None:
        return p
    from laionknn import catalog

    try:
        rec = catalog.resolve(name_or_file, catalogs)
    except LaionKnnError as exc:
        raise UsageError(f"{name_or_file!r} is neither an existing file nor a catalog name ({exc})") from None
    return Path(catalog.ensure(rec))


def output_name(in_path: Path, family: str, suffix: str) -> str:
    """``…clip768v2…`` -> ``…{family}…``; otherwise ``{stem}-{suffix}.h5``."""
    stem = in_path.name[:-3] if in_path.name.endswith(".h5") else in_path.stem
    if "clip768v2" in stem and family:
        return stem.replace("clip768v2", family) + ".h5"
    return f"{stem}-{suffix}.h5"


def out_dir_or_default(out: "str | os.PathLike[str] | None") -> Path:
    d = Path(out) if out is not None else workspace.projections_dir()
    d.mkdir(parents=True, exist_ok=True)
    return d


def transform_file(in_path: Path, out_path: Path, fn, *, key: str, dim: int, dtype, desc: str,
                   block_rows: int = DEFAULT_BLOCK_ROWS, attrs: dict | None = None) -> tuple[Path, float]:
    """Stream ``in_path``'s rows through ``fn(block) -> (m, dim)`` into ``out_path`` (``key``).
    Returns the output path and the seconds spent. NaN/inf input rows raise DataError."""
    t0 = time.perf_counter()
    with VectorFile(in_path) as vf, progress_bar(desc, vf.n) as bar, \
            VectorWriter(out_path, key, dim, dtype, expected_rows=vf.n, attrs=attrs) as w:
        for lo, block in vf.blocks(rows=block_rows):
            check_vectors(block, what=str(in_path), first_row=lo)
            w.append(fn(block))
            bar.advance(block.shape[0])
    return out_path, time.perf_counter() - t0


def check_model_dim(in_path: Path, dim: int, what: str) -> None:
    """UsageError when ``in_path``'s vectors are not ``dim``-dimensional (header only)."""
    with VectorFile(in_path) as vf:
        if vf.dim != dim:
            raise UsageError(f"{in_path}: {vf.dim}-dimensional vectors, but {what} works on {dim}-dimensional "
                             f"data; use a model fitted on this kind of file")


def pca_file(model, in_path: Path, out_dir: Path, **kw) -> Path:
    """Project one file with a PCA model: ``pca{D}`` float32 (n, D)."""
    check_model_dim(in_path, model.dim, "the PCA model")
    key = f"pca{model.dims}"
    out = out_dir / output_name(in_path, f"{key}v2" if model.dims in (32, 96) else "", key)
    return transform_file(in_path, out, model.transform, key=key, dim=model.dims, dtype=np.float32,
                          desc=f"pca{model.dims} {in_path.name}", **kw)[0]


def binwalk_file(in_path: Path, out_dir: Path, **kw) -> Path:
    """Official BinWalk sketches of one clip768 file: ``hamming`` uint64 (n, 16)."""
    from laionknn.projections import binwalk

    model = binwalk.default_model()
    check_model_dim(in_path, model.dim, "BinWalk")
    out = out_dir / output_name(in_path, "hammingv2", "hamming")
    return transform_file(in_path, out, lambda b: binwalk.encode(b, model), key="hamming", dim=binwalk.WORDS,
                          dtype=np.uint64, desc=f"binwalk {in_path.name}", **kw)[0]


def sketch_file(model, in_path: Path, out_dir: Path, **kw) -> Path:
    """Learned sketches of one file: ``hamming`` uint64 (n, bits/64)."""
    check_model_dim(in_path, model.dim, f"the {model.method} sketch model")
    tag = f"sketch-{model.method}-{model.bits}"
    out = out_dir / output_name(in_path, "", tag)
    return transform_file(in_path, out, model.encode, key="hamming", dim=model.bits // 64, dtype=np.uint64,
                          desc=f"{tag} {in_path.name}", **kw)[0]


def write_task_b(out_path: Path, db_sketches: np.ndarray, query_sketches: np.ndarray, k: int = 10, *,
                 algo: str, size: str, buildtime: float = 0.0, params: str = "") -> Path:
    """Task B output: datasets ``db`` and ``queries`` (uint64 sketches, one per row), and ``knns``/``dists``
    (brute-force Hamming k-NN of the queries in ``db``; ids written 1-based by :mod:`laionknn.io`)."""
    from laionknn.projections.kernels import hamming_knn

    t0 = time.perf_counter()
    res = hamming_knn(db_sketches, query_sketches, k)
    querytime = time.perf_counter() - t0
    with atomic_path(out_path) as tmp:
        write_result(tmp, res.ids, res.dists, algo=algo, data="hammingv2", size=size, buildtime=buildtime,
                     querytime=querytime, params=params, task="task2")
        with h5py.File(tmp, "a") as f:
            f.create_dataset("db", data=np.ascontiguousarray(db_sketches, dtype=np.uint64))
            f.create_dataset("queries", data=np.ascontiguousarray(query_sketches, dtype=np.uint64))
    return out_path
