"""PCA projections as the organisers made them: fitted on L2-normalised rows, mean-centred, no whitening.

The fit streams blocks of a :class:`~laionknn.io.VectorFile` (or an array) into a float64 scatter
matrix ``S = sum_i x_i x_iᵀ`` and a float64 sum, so the data is never loaded whole:
``cov = S/n - μ μᵀ`` with ``μ = sum/n``. The model keeps the top ``dims`` eigenvectors (columns of
``components``, (dim, dims) float64, sign fixed so the largest-magnitude entry of each is positive)
and projects a row x as ``components.T @ (x/|x| - μ)`` (float32 output, one projected vector per row).

Models are plain ``.npz`` files (``mean``, ``components``, ``explained_variance``, ``n_fit``,
``total_variance``), loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laionknn.errors import DataError, UsageError
from laionknn.io import check_vectors
from laionknn.progress import progress_bar
from laionknn.projections.modelfile import load_npz, save_npz
from laionknn.validation import check_count, check_seed

log = logging.getLogger(__name__)


def normalize_rows(block: np.ndarray, dtype=np.float64) -> np.ndarray:
    """L2-normalised copy of ``block`` (rows = vectors) in ``dtype``; zero rows raise DataError."""
    x = np.array(block, dtype=dtype, copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        check_vectors(block, nonzero=True)
    x /= norms
    return x


@dataclass(frozen=True)
class PCAModel:
    """Mean (dim,) float64, components (dim, dims) float64 (columns = principal axes, by decreasing
    variance), explained_variance (dims,), total_variance (float), n_fit (rows used)."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    total_variance: float
    n_fit: int

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    @property
    def explained_ratio(self) -> float:
        return float(self.explained_variance.sum() / self.total_variance) if self.total_variance > 0 else 0.0

    def transform(self, block: np.ndarray) -> np.ndarray:
        """Project rows: ``(x/|x| - mean) @ components`` as float32 (n, dims). Input is not modified."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise UsageError(f"this PCA model projects {self.dim}-dimensional vectors, but the input has "
                             f"{block.shape[-1] if block.ndim else 0} columns; fit a model on data of this "
                             f"dimension or pass the matching file")
        x = normalize_rows(block)
        x -= self.mean
        return (x @ self.components).astype(np.float32)

    def save(self, path: "str | os.PathLike[str]") -> Path:
        return save_npz(path, "pca", mean=self.mean, components=self.components,
                        explained_variance=self.explained_variance, total_variance=np.float64(self.total_variance),
                        n_fit=np.int64(self.n_fit))

    @classmethod
    def load(cls, path: "str | os.PathLike[str]") -> "PCAModel":
        z = load_npz(path, "pca", "laionknn project pca")
        return cls(mean=z["mean"], components=z["components"], explained_variance=z["explained_variance"],
                   total_variance=float(z["total_variance"]), n_fit=int(z["n_fit"]))


def _row_selection(n: int, fit_rows: int | None, sample: str, seed: int) -> np.ndarray | None:
    """None = all rows; else sorted row indices (the first ``fit_rows`` or a seeded uniform sample)."""
    seed = check_seed(seed)
    if fit_rows is not None:
        fit_rows = check_count(fit_rows, "--fit-rows")
    if fit_rows is None or fit_rows >= n:
        return None
    if sample == "first":
        return np.arange(fit_rows)
    if sample == "random":
        return np.sort(np.random.default_rng(seed).choice(n, size=fit_rows, replace=False))
    raise UsageError(f"unknown fit-row selection {sample!r}; expected 'first' or 'random'")


def iter_fit_blocks(source, fit_rows: int | None = None, *, sample: str = "first", seed: int = 0,
                    block_rows: int = 65536):
    """Yield blocks (rows = vectors) of the fit set of ``source`` (ndarray or VectorFile)."""
    n = len(source)
    sel = _row_selection(n, fit_rows, sample, seed)
    stop = n if sel is None else int(sel[-1]) + 1
    for lo in range(0, stop, block_rows):
        hi = min(stop, lo + block_rows)
        block = source.read(lo, hi) if hasattr(source, "read") else np.asarray(source[lo:hi])
        if sel is not None:
            idx = sel[(sel >= lo) & (sel < hi)] - lo
            if len(idx) == 0:
                continue
            block = block[idx]
        yield block


def fit_pca(source, dims: int, *, fit_rows: int | None = None, sample: str = "first", seed: int = 0,
            block_rows: int = 65536) -> PCAModel:
    """Fit a ``dims``-component PCA on the L2-normalised rows of ``source`` (ndarray or VectorFile).

    ``fit_rows`` limits the fit set to the first N rows (``sample='first'``, the default, reads only
    a prefix) or to a uniform sample of N rows drawn with ``np.random.default_rng(seed)``
    (``sample='random'``). Raises UsageError when the fit set has fewer rows than dimensions.
    """
    n, dim = len(source), (source.dim if hasattr(source, "dim") else np.asarray(source).shape[1])
    n_fit = n if fit_rows is None else min(n, int(fit_rows))
    if dims < 1 or dims > dim:
        raise UsageError(f"--dims must be between 1 and the data dimension {dim}, got {dims}")
    if n_fit < dim:
        raise UsageError(f"the fit set has {n_fit} rows but the data has {dim} dimensions; a covariance "
                         f"needs at least as many rows as dimensions (use more rows or a larger --fit-rows)")
    scatter = np.zeros((dim, dim), dtype=np.float64)
    total = np.zeros(dim, dtype=np.float64)
    seen = 0
    with progress_bar("PCA fit", n_fit) as bar:
        for block in iter_fit_blocks(source, fit_rows, sample=sample, seed=seed, block_rows=block_rows):
            check_vectors(block, what="fit set", first_row=seen)
            x = normalize_rows(block)
            scatter += x.T @ x
            total += x.sum(axis=0)
            seen += x.shape[0]
            bar.advance(x.shape[0])
    mean = total / seen
    cov = scatter / seen - np.outer(mean, mean)
    cov = (cov + cov.T) / 2
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:dims]
    comps = evecs[:, order]
    # deterministic signs: the largest-magnitude entry of each axis is positive
    flip = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(dims)])
    comps = comps * np.where(flip == 0, 1.0, flip)
    if not np.isfinite(comps).all():
        raise DataError("PCA fit produced non-finite components; check the fit set for bad rows")
    log.info("PCA fit on %d rows: %d dims keep %.3f of the variance", seen, dims,
             float(np.clip(evals[order], 0, None).sum() / max(np.trace(cov), 1e-300)))
    return PCAModel(mean=mean, components=comps, explained_variance=np.clip(evals[order], 0, None),
                    total_variance=float(np.trace(cov)), n_fit=seen)
