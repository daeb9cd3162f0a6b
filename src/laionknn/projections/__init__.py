"""Projections and sketches of clip768 data: PCA (pca32/pca96), the official BinWalk sketches, learned
binary sketches, numba brute-force kernels, and the brute-force baselines table.

Heavy modules load on first use; the public names are re-exported here.
"""

from __future__ import annotations

__all__ = ["BinWalkModel", "PCAModel", "SketchModel", "fit_pca", "fit_sketch", "binwalk_encode", "hamming_knn",
           "l2_knn", "run_baselines"]


def __getattr__(name: str):
    if name in ("PCAModel", "fit_pca"):
        from laionknn.projections import pca

        return getattr(pca, name)
    if name in ("SketchModel", "fit_sketch"):
        from laionknn.projections import sketches

        return getattr(sketches, name)
    if name == "BinWalkModel":
        from laionknn.projections.binwalk import BinWalkModel

        return BinWalkModel
    if name == "binwalk_encode":
        from laionknn.projections.binwalk import encode

        return encode
    if name in ("hamming_knn", "l2_knn"):
        from laionknn.projections import kernels

        return getattr(kernels, name)
    if name == "run_baselines":
        from laionknn.projections.baselines import run_baselines

        return run_baselines
    raise AttributeError(name)
