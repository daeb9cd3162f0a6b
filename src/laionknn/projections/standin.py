"""A LAION-like stand-in generator for projections work while ``laionknn.synthetic`` is absent.

Rows are drawn around the 1024 real LAION vectors of the BinWalk model: a Gaussian in the span of
the real vectors' principal axes (their mean plus clusters), plus a little isotropic noise, then
L2-normalised. Database rows are float16, query rows float32 (the official dtypes). Deterministic for
a seed. :func:`laionknn.synthetic.generate_database` is preferred when installed.
"""

from __future__ import annotations

import numpy as np


def _basis():
    from laionknn.projections.binwalk import default_model

    refs = default_model().refs.astype(np.float64)
    mu = refs.mean(axis=0)
    u, s, vt = np.linalg.svd(refs - mu, full_matrices=False)
    scale = s / np.sqrt(refs.shape[0])
    return mu, vt, scale


PARAMS = {"clusters": 2000, "centre": 0.85, "within": 0.55, "flat": 1.0, "iso": 0.006}


def _draw(n: int, rng: np.random.Generator, seed_centres: int = 7) -> np.ndarray:
    p = PARAMS
    mu, vt, scale = _basis()
    crng = np.random.default_rng(seed_centres)
    centres = mu + (crng.standard_normal((p["clusters"], len(scale))) * scale * p["centre"]) @ vt
    k = rng.integers(0, p["clusters"], size=n)
    within = scale ** p["flat"] * (np.linalg.norm(scale) / np.linalg.norm(scale ** p["flat"]))
    x = centres[k] + (rng.standard_normal((n, len(scale))) * within * p["within"]) @ vt
    x += rng.standard_normal(x.shape) * p["iso"]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def standin_database(n: int, seed: int = 0) -> np.ndarray:
    """float16 (n, 768) LAION-like unit rows."""
    out = np.empty((n, 768), np.float16)
    rng = np.random.default_rng(seed)
    for lo in range(0, n, 50_000):
        hi = min(n, lo + 50_000)
        out[lo:hi] = _draw(hi - lo, rng)
    return out


def standin_queries(nq: int, seed: int = 0) -> np.ndarray:
    """float32 (nq, 768) LAION-like unit rows, independent of the database rows."""
    return _draw(nq, np.random.default_rng(10_000 + seed)).astype(np.float32)
