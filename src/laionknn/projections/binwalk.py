"""The organisers' BinWalk sketches (the official 1024-bit ``hammingv2`` files), re-implemented.

Model (package data ``data/binwalk-model-nrefs=1024-permsize=64.jld2``, HDF5 in JLD2 flavour):
``refs`` float32 (1024, 768), L2-normalised LAION vectors; ``pool`` int32 (16, 64), 1-based indices
into ``refs`` (walk i = row i).

Encoding of one L2-normalised vector x: for walk i (0..15) and j (0..63),
``v[j] = 1 - <refs[pool[i, j] - 1], x>`` (float32); word i is a uint64 whose bit j (least
significant first) is set when ``v[j] < v[j+1]`` for j = 0..62, and bit 63 when ``v[63] < v[0]``.
A sketch is 16 words (1024 bits) per row; the Hamming distance is popcount(xor).

Precision, following the organisers' Julia code as the data README states it:

- float16 database rows are normalised *in Float16 arithmetic* (``LinearAlgebra.normalize!``):
  ``nrm = norm(x)`` where Julia's ``generic_norm2`` squares each element in Float16 (``abs2``, rounded
  to Float16), accumulates those squares in Float64 (``sum::promote_type(Float64, T)``), and rounds
  ``sqrt(sum)`` to Float16; then ``invnrm = inv(nrm)`` (Float16) and ``x[i] * invnrm`` (Float16).
  The Float64 sum of Float16 squares is exact whatever the order (the squares span < 40 bits), so
  this step is reproduced bit for bit. (Vectors whose largest entry is below 2⁻¹² take Julia's
  scaled branch; CLIP rows never do, and we use the same unscaled formula there.)
- the dot products ``<ref, x>`` are evaluated in Float32 (x widened to Float32) and ``1 - dot`` is
  rounded to Float32 before the comparisons. Here they come from a float32 BLAS matrix product;
  Julia's ``dot`` sums in another order, so a comparison whose two sides differ by about one float32
  ulp (≈ 6e-8) may fall the other way. That is the one known source of possible bit differences.
- float32 query rows are normalised in Float32: the norm (BLAS ``nrm2`` in Julia; here a float64 sum
  rounded to float32, which matches it except in the last ulp at worst), then ``x * inv(nrm)``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import h5py
import numpy as np

from laionknn.errors import DataError, FormatError, UsageError

MODEL_FILE = "binwalk-model-nrefs=1024-permsize=64.jld2"
WORDS = 16
PERM = 64


@dataclass(frozen=True)
class BinWalkModel:
    """``refs`` float32 (nrefs, dim) unit rows; ``pool`` int64 (16, 64) 0-based indices into refs."""

    refs: np.ndarray
    pool: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.refs.shape[1])

    @functools.cached_property
    def walk_refs(self) -> np.ndarray:
        """float32 (dim, 16·64): column 64·i + j is refs[pool[i, j]] (walk-major order)."""
        return np.ascontiguousarray(self.refs[self.pool.reshape(-1)].T)


def load_model(path: "str | os.PathLike[str] | None" = None) -> BinWalkModel:
    """Read the organisers' JLD2 model (the copy shipped in the package unless ``path`` is given)."""
    if path is None:
        ref = resources.files("laionknn.projections") / "data" / MODEL_FILE
        with resources.as_file(ref) as p:
            return _read_model(Path(p))
    return _read_model(Path(path))


def _read_model(path: Path) -> BinWalkModel:
    try:
        with h5py.File(path, "r") as f:
            m = f["model"][()]
            refs = np.asarray(f[m["refs"]["matrix"]][()], dtype=np.float32)
            pool = np.asarray(f[m["pool"]][()], dtype=np.int64)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"{path}: not a BinWalk model ({exc}); expected the organisers' "
                          f"{MODEL_FILE}") from None
    if pool.shape != (WORDS, PERM) or pool.min() < 1 or pool.max() > refs.shape[0]:
        raise FormatError(f"{path}: pool has shape {pool.shape} and range {pool.min()}..{pool.max()}; expected "
                          f"(16, 64) 1-based indices into {refs.shape[0]} refs")
    return BinWalkModel(refs=refs, pool=pool - 1)


def normalize_float16_julia(block: np.ndarray) -> np.ndarray:
    """Julia ``normalize!`` on Float16 rows (see module docstring); returns a new float16 array."""
    x = np.asarray(block, dtype=np.float16)
    x32 = x.astype(np.float32)
    # a product of two float16 values is exact in float32, so rounding it to float16 is exactly
    # Julia's (and numpy's) Float16 multiplication, only much faster than numpy's float16 loops
    sq = (x32 * x32).astype(np.float16).astype(np.float64)  # abs2 in Float16, then widened
    nrm = np.sqrt(sq.sum(axis=1)).astype(np.float16)
    if (nrm == 0).any():
        row = int(np.flatnonzero(nrm == 0)[0])
        raise DataError(f"row {row} has zero norm in float16 and cannot be normalised for BinWalk; drop it")
    inv = (np.float16(1) / nrm).astype(np.float16)
    return (x32 * inv.astype(np.float32)[:, None]).astype(np.float16)


def normalize_float32(block: np.ndarray) -> np.ndarray:
    """Float32 normalisation of query rows: float32 norm, then ``x * inv(nrm)`` in float32."""
    x = np.asarray(block, dtype=np.float32)
    nrm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)
    if (nrm == 0).any():
        row = int(np.flatnonzero(nrm == 0)[0])
        raise DataError(f"row {row} has zero norm and cannot be normalised for BinWalk; drop it")
    inv = (np.float32(1) / nrm).astype(np.float32)
    return x * inv[:, None]


def _normalized_float32(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.float16:
        return normalize_float16_julia(block).astype(np.float32)
    if block.dtype in (np.float32, np.float64):
        return normalize_float32(block)
    raise UsageError(f"BinWalk encodes float16 or float32 vectors, got {block.dtype}")


def pack_walk_bits(v: np.ndarray) -> np.ndarray:
    """Packed words from walk values. ``v`` float32 (n, 16, 64): bit j of word i is
    ``v[:, i, j] < v[:, i, (j + 1) % 64]``, least significant first. Returns uint64 (n, 16)."""
    bits = v < np.roll(v, -1, axis=2)
    packed = np.packbits(bits, axis=2, bitorder="little")  # (n, 16, 8) bytes, byte 0 = bits 0..7
    return packed.view("<u8").reshape(v.shape[0], v.shape[1]).astype(np.uint64)


def encode(block: np.ndarray, model: BinWalkModel | None = None) -> np.ndarray:
    """BinWalk sketches of the rows of ``block`` (float16 database rows or float32 query rows, any
    norm; the caller's array is not modified). Returns uint64 (n, 16)."""
    model = model or default_model()
    block = np.asarray(block)
    if block.ndim != 2 or block.shape[1] != model.dim:
        raise UsageError(f"BinWalk's model works on {model.dim}-dimensional vectors, the input has shape "
                         f"{block.shape}; pass clip768 vectors")
    x = _normalized_float32(block)
    v = np.float32(1) - (x @ model.walk_refs)
    return pack_walk_bits(v.reshape(x.shape[0], WORDS, PERM))


@functools.lru_cache(maxsize=1)
def default_model() -> BinWalkModel:
    return load_model()
