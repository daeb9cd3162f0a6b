"""Learned binary sketches (hyperplane hashing) that beat BinWalk at the same number of bits.

Every method ends as the same model: a row x becomes ``bits`` bits
``bit_b(x) = [ (x/|x| - mean) · W[b] > offset[b] ]`` (W float32 (bits, dim)), packed into
``bits/64`` uint64 words exactly like the official sketches: bit b lives in word ``b // 64`` at
position ``b % 64``, least significant bit first. Hamming distance = popcount(xor).

Methods (all fitted on L2-normalised rows; ``itq`` also centres them on their mean, the others keep
hyperplanes through the origin, ``mean = 0``, ``offset = 0``, because the target is the cosine of the
*uncentred* rows: a hyperplane through the origin splits two rows with probability angle/π, while
centring or median offsets make the bits estimate the angle of the centred rows, a different metric
(on ``laionknn.synthetic`` 300K, 1024 bits: SRP through the origin R@10 0.654 vs 0.595 through the
mean; HIOB 0.696 vs 0.624 with median offsets):

- ``srp``: sign of random projections (Charikar's SimHash); the baseline.
- ``cfsrp``: coloured tight-frame SRP. Hyperplane normals are the rows of a random tight frame
  (``bits`` rows of a random ``max(bits, dim)`` rotation restricted to ``dim`` columns, rows
  normalised: as close to mutually orthogonal as ``bits`` vectors in ``dim`` dimensions can be, which
  lowers the variance of the angle estimate, "super-bit" LSH) expressed in the eigenbasis of the
  fitted second-moment matrix ``E[xxᵀ] = P Λ Pᵀ`` and scaled by ``Λ^(γ/2)``: ``W = F Λ^(γ/2) Pᵀ``
  (rows renormalised). ``γ = -0.1`` (default) is a slight whitening: the few dominant directions
  (the mean direction above all) get slightly fewer hyperplanes. The best 1024-bit method on
  ``laionknn.synthetic`` (see docs/BENCHMARKS.md).
- ``itq``: PCA + iterative quantisation (Gong & Lazebnik 2011): rotate the top-``bits`` principal
  axes by R minimising ``|sign(VR) - VR|²`` (alternating sign / orthogonal Procrustes). When ``bits``
  exceeds the dimension (e.g. 1024 > 768) there are not enough axes for a rotation: R becomes a
  ``dim × bits`` matrix with orthonormal rows (a tight frame, started from rows of a random
  ``bits × bits`` rotation), i.e. ITQ on the PCA data spread over ``bits`` coordinates; the Procrustes
  step is then the polar factor ``(M Mᵀ)^(-1/2) M`` of ``M = Vᵀ B``.
- ``hiob``: iterative hyperplane optimisation in the spirit of HIOB (Thordsen & Schubert, SISAP
  2022/2023; their hyperplanes also pass through the origin): start from stacked random orthogonal
  hyperplanes; repeatedly push every hyperplane away from the hyperplanes whose median-thresholded
  bits agree with it more (or less) often than chance, ``W ← W - η·C·W`` with C the bit correlation
  matrix (diagonal zero), renormalising the rows. The final bits are thresholded at 0 (through the
  origin). Works for any number of bits.

Models are ``.npz`` files (``method``, ``mean``, ``W``, ``offset``), loaded without pickle.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.io import check_vectors
from laionknn.progress import progress_bar
from laionknn.projections.modelfile import load_npz, save_npz
from laionknn.projections.pca import iter_fit_blocks, normalize_rows

log = logging.getLogger(__name__)

METHODS = ("srp", "itq", "hiob", "cfsrp")
LEARNED_METHODS = ("itq", "hiob", "cfsrp")
CENTRED_METHODS = ("itq",)  # the others keep hyperplanes through the origin (mean = 0)


def check_bits(bits: int) -> int:
    """``bits`` must be a positive multiple of 64 (sketches are packed in uint64 words)."""
    bits = int(bits)
    if bits < 64 or bits % 64:
        raise UsageError(f"--bits must be a positive multiple of 64 (64, 128, ..., 1024), got {bits}; sketches "
                         f"are packed into 64-bit words")
    return bits


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """bool (n, b) -> uint64 (n, b/64): bit c goes to word c // 64, position c % 64 (LSB first)."""
    n, b = bits.shape
    packed = np.packbits(bits, axis=1, bitorder="little")  # byte t holds bits 8t..8t+7, LSB first
    return np.ascontiguousarray(packed).view("<u8").reshape(n, b // 64).astype(np.uint64)


def unpack_bits(words: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_bits`: uint64 (n, w) -> bool (n, 64·w)."""
    w = np.ascontiguousarray(words, dtype="<u8")
    return np.unpackbits(w.view(np.uint8), axis=1, bitorder="little").astype(bool)


@dataclass(frozen=True)
class SketchModel:
    """Hyperplane sketch model: ``mean`` (dim,) float64, ``W`` (bits, dim) float32, ``offset`` (bits,)
    float32. See the module docstring for the encoding rule."""

    method: str
    mean: np.ndarray
    W: np.ndarray
    offset: np.ndarray
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def bits(self) -> int:
        return int(self.W.shape[0])

    @property
    def dim(self) -> int:
        return int(self.W.shape[1])

    def encode(self, block: np.ndarray) -> np.ndarray:
        """Sketches of the rows of ``block`` (any norm, not modified): uint64 (n, bits/64)."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise UsageError(f"this {self.method} sketch model encodes {self.dim}-dimensional vectors, but the "
                             f"input has shape {block.shape}; fit a model on data of this dimension")
        x = normalize_rows(block, dtype=np.float32)
        x -= self.mean.astype(np.float32)
        return pack_bits(x @ self.W.T > self.offset)

    def save(self, path: "str | os.PathLike[str]") -> Path:
        """Write the model; ``n_fit`` (rows really fitted on) is stored when known."""
        extra = {"n_fit": np.int64(self.meta["n_fit"])} if "n_fit" in self.meta else {}
        return save_npz(path, "sketch", method=np.array(self.method), mean=self.mean, W=self.W, offset=self.offset,
                        **extra)

    @classmethod
    def load(cls, path: "str | os.PathLike[str]") -> "SketchModel":
        z = load_npz(path, "sketch", "laionknn project sketch")
        meta = {"n_fit": int(z["n_fit"])} if "n_fit" in z else {}  # older files do not record it
        return cls(method=str(z["method"]), mean=z["mean"], W=z["W"], offset=z["offset"], meta=meta)


def load_fit_set(source, fit_rows: int | None, *, sample: str = "first", seed: int = 0) -> np.ndarray:
    """The fit set as L2-normalised float32 rows (in memory: it is a sample, 100K rows = 300 MB).
    A NaN/inf or zero row raises :class:`DataError` naming it (a model fitted on it would be all NaN)."""
    blocks, seen = [], 0
    for b in iter_fit_blocks(source, fit_rows, sample=sample, seed=seed):
        check_vectors(b, what="fit set", first_row=seen, nonzero=True)
        blocks.append(normalize_rows(b, dtype=np.float32))
        seen += len(b)
    return np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)


def _random_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _fit_srp(xc: np.ndarray, bits: int, rng: np.random.Generator, **_) -> tuple[np.ndarray, np.ndarray]:
    W = rng.standard_normal((bits, xc.shape[1])).astype(np.float32)
    return W, np.zeros(bits, np.float32)


def _tight_frame(bits: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(bits, d) unit rows of a random tight frame: the first ``d`` columns of ``bits`` rows of a random
    ``max(bits, d)`` rotation (orthonormal rows when bits ≤ d, orthonormal columns when bits ≥ d)."""
    q = _random_orthogonal(max(bits, d), rng)[:bits, :d]
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _fit_cfsrp(x: np.ndarray, bits: int, rng: np.random.Generator, gamma: float = -0.1, **_) -> tuple[np.ndarray, np.ndarray]:
    """``W = F Λ^(γ/2) Pᵀ`` (rows normalised), ``E[xxᵀ] = P Λ Pᵀ`` over the (uncentred) fit rows."""
    d = x.shape[1]
    m = np.zeros((d, d))
    for lo in range(0, x.shape[0], 16384):
        blk = x[lo:lo + 16384].astype(np.float64)
        m += blk.T @ blk
    evals, evecs = np.linalg.eigh(m / x.shape[0])
    evals = np.clip(evals, max(evals.max(), 1e-300) * 1e-9, None)
    frame = _tight_frame(bits, d, rng)
    W = (frame * evals ** (float(gamma) / 2.0)) @ evecs.T
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    return W.astype(np.float32), np.zeros(bits, np.float32)


def _pca_axes(xc: np.ndarray, k: int) -> np.ndarray:
    cov = (xc.T.astype(np.float64) @ xc) / xc.shape[0]
    evals, evecs = np.linalg.eigh(cov)
    return evecs[:, np.argsort(evals)[::-1][:k]]


def _polar_rows(M: np.ndarray) -> np.ndarray:
    """The (c, b) matrix with orthonormal rows nearest to M (c ≤ b): ``(M Mᵀ)^(-1/2) M``.
    Equal to U Wᵀ from the SVD M = U Σ Wᵀ, via a c×c eigendecomposition (much cheaper here)."""
    M = M.astype(np.float64)
    evals, evecs = np.linalg.eigh(M @ M.T)
    inv_sqrt = evecs / np.sqrt(np.clip(evals, 1e-12 * max(evals.max(), 1e-300), None))
    return (inv_sqrt @ evecs.T) @ M


def _fit_itq(xc: np.ndarray, bits: int, rng: np.random.Generator, iterations: int = 30, **_) -> tuple[np.ndarray, np.ndarray]:
    d = xc.shape[1]
    c = min(bits, d)
    P = _pca_axes(xc, c).astype(np.float32)             # (d, c) top principal axes
    V = xc @ P                                           # (n, c)
    # R (c, bits) with orthonormal rows: a rotation when bits <= d, otherwise a random frame spreading
    # the d axes over ``bits`` coordinates (the trick that lifts ITQ's bits <= dim limit)
    R = _random_orthogonal(bits, rng)[:c].astype(np.float32)
    with progress_bar("ITQ", iterations, unit="iterations") as bar:
        for _ in range(iterations):
            B = np.where(V @ R >= 0, 1.0, -1.0).astype(np.float32)
            R = _polar_rows(V.T @ B).astype(np.float32)     # orthogonal Procrustes step
            bar.advance()
    W = (P @ R).T                                        # (bits, d)
    return np.ascontiguousarray(W, np.float32), np.zeros(bits, np.float32)


def _stacked_orthogonal(bits: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(bits, d) rows: blocks of up to d mutually orthogonal random unit vectors (super-bit init)."""
    blocks, left = [], bits
    while left > 0:
        blocks.append(_random_orthogonal(d, rng)[:min(d, left)])
        left -= d
    return np.concatenate(blocks).astype(np.float32)


def _fit_hiob(xc: np.ndarray, bits: int, rng: np.random.Generator, iterations: int = 20, batch: int = 8192,
              eta: float = 0.05, **_) -> tuple[np.ndarray, np.ndarray]:
    n, d = xc.shape
    W = _stacked_orthogonal(bits, d, rng)
    with progress_bar("HIOB", iterations, unit="iterations") as bar:
        for it in range(iterations):
            x = xc if n <= batch else xc[rng.choice(n, size=batch, replace=False)]
            proj = x @ W.T                                   # (m, bits)
            offset = np.median(proj, axis=0).astype(np.float32)
            S = np.where(proj > offset, 1.0, -1.0).astype(np.float32)
            C = (S.T @ S) / S.shape[0]                      # bit correlations in [-1, 1]
            np.fill_diagonal(C, 0.0)
            step = eta * (1.0 - it / iterations)             # anneal the push
            W = W - step * (C @ W) / np.sqrt(bits)
            W /= np.linalg.norm(W, axis=1, keepdims=True)
            bar.advance()
    return W.astype(np.float32), np.zeros(bits, np.float32)   # final bits through the origin


_FITTERS = {"srp": _fit_srp, "itq": _fit_itq, "hiob": _fit_hiob, "cfsrp": _fit_cfsrp}


def fit_sketch(source, bits: int, method: str = "hiob", *, fit_rows: int | None = 100_000, sample: str = "first",
               seed: int = 0, **params) -> SketchModel:
    """Fit a ``bits``-bit sketch model on ``source`` (ndarray or VectorFile; rows = vectors).

    ``fit_rows`` (default 100K) caps the fit set: the first N rows, or a seeded uniform sample with
    ``sample='random'``. ``params`` go to the method (``iterations``, ``eta``, ``batch``, ``gamma``).
    ``itq`` centres the fit rows on their mean; the other methods keep ``mean = 0`` (hyperplanes through
    the origin, see the module docstring).
    """
    bits = check_bits(bits)
    if method not in _FITTERS:
        raise UsageError(f"unknown sketch method {method!r}; choose one of {', '.join(METHODS)}")
    dim = source.dim if hasattr(source, "dim") else np.asarray(source).shape[1]
    x = load_fit_set(source, fit_rows, sample=sample, seed=seed)
    if x.shape[0] < dim:
        raise UsageError(f"the fit set has {x.shape[0]} rows but the data has {dim} dimensions; fit on at least "
                         f"{dim} rows (more rows or a larger --fit-rows)")
    if method in CENTRED_METHODS:
        mean = x.mean(axis=0, dtype=np.float64)
        x -= mean.astype(np.float32)
    else:
        mean = np.zeros(dim, np.float64)
    rng = np.random.default_rng(seed)
    W, offset = _FITTERS[method](x, bits, rng, **params)
    log.info("fitted %s sketch: %d bits on %d rows", method, bits, x.shape[0])
    return SketchModel(method=method, mean=mean, W=np.ascontiguousarray(W, np.float32),
                       offset=np.ascontiguousarray(offset, np.float32), meta={"n_fit": int(x.shape[0])})
