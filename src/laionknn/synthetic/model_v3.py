"""Generator v3: a multi-scale tree of overlapping anisotropic components, anchored in the real LAION frame.

Why not v2. v2 bound every neighbourhood to one of 512 x 32 discrete clusters: easy for partition indexes
(IVF found the 100-NN probing 2 of 1024 lists at 1M, against about 16 on real LAION) and too easy for
projections at 100K, because whole sub-clusters were the neighbourhoods. v3 has no preferred scale.

Model (coordinates in the frame B of :mod:`laionknn.synthetic.model`; a row is
``x = a * mean + sum_l sd_l * o_l(node_l) + noise``, then L2-normalised):

* a tree with ``k1`` top nodes (Zipf popularity) and ``branching`` children per node, ``levels`` deep; a
  row walks down it, choosing child c of node u with probability ∝ exp(child_sigma * T[w(u) + c]), where
  T is a table of 2^24 standard normals drawn from the seed and w(u) a hash of (seed, level, u): subtree
  sizes are heavy-tailed and no node is stored;
* level variances fall geometrically, sd_l^2 ∝ rho^l (a share ``f_tree`` of 1 - |mean|^2 in all):
  siblings overlap, neighbourhoods at every scale look alike, and a row's nearest neighbours straddle
  the cells of any partition of the data;
* offsets of the first ``explicit_levels`` levels are full-rank Gaussians stored per node (2,336 nodes
  at the defaults; the table keeps the last explicit level, 2,048 rows) with frame-coordinate variance ∝ (i + i0)^-alpha_l; deeper offsets are
  ``o_l(u) = T[w(l, u) : w(l, u) + rank] @ L_{l, f}``, a window of the table (N(0, I) coefficients that
  depend only on (seed, level, node)) times a rank-``rank`` basis of the row's family f (top node mod
  ``n_families``) whose rows have frame variance ∝ (i + i0)^-alpha_l; alpha_l falls linearly from
  ``alpha_top`` (top level: the steep real PCA spectrum) to ``alpha_bottom`` (deepest level: flatter,
  so a low-dimensional PCA loses close neighbours as on real CLIP vectors, more so the larger n);
* noise: a share 1 - f_tree inside the family's rank-``noise_rank`` noise basis (spectrum exponent
  ``alpha_noise``), plus an optional isotropic part ``white_share``;
* loading a ~ N(1, mean_loading_sd^2) on the real mean direction (norm 0.62);
* ``dup_rate`` of database rows are near-duplicates of another row of the same chunk.

Cost per row: one gather and a (levels - explicit_levels) * rank + noise_rank wide product with the
family basis (528 x 768 at the defaults), grouped by family in one BLAS call per family and chunk.

Determinism and streaming are as in v2: the universe (table, explicit offsets, bases) comes from
``default_rng([seed, 0, 3])``; database chunk c from ``default_rng([seed, 1, c])``, query chunk c from
``default_rng([seed, 2, c])``; node offsets only from (seed, level, node). A database of n rows is the
prefix of every larger one; memory is the universe (about 120 MB) plus a few chunks, whatever n.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass

import numba as nb
import numpy as np

from laionknn.synthetic.model import CHUNK_ROWS, DIM, add_near_duplicates, frame_basis, load_frame

log = logging.getLogger(__name__)

VERSION = "v3"


@dataclass(frozen=True)
class ParamsV3:
    """Generator v3 parameters (tuned by scripts/calibrate_synthetic.py --version v3)."""

    k1: int = 32  # top-level nodes
    branching: int = 8  # children per node
    levels: int = 8  # depth of the tree (k1 * branching^(levels-1) leaves)
    explicit_levels: int = 3  # the first levels have full-rank offsets stored per node
    rank: int = 96  # rank of the bases of the deeper levels
    noise_rank: int = 48  # rank of the noise basis of a family
    n_families: int = 32  # basis families; a row uses family (top node % n_families) below the explicit levels
    alpha_top: float = 2.0  # frame spectrum exponent of level 1
    alpha_bottom: float = 0.4  # ... of the deepest level (linear in between)
    alpha_noise: float = 0.4  # ... of the noise
    i0: float = 8.0  # spectrum offset
    gamma: float = 0.0  # decay of the variance over the rank components of a basis (j^-gamma)
    rho: float = 0.8  # variance ratio between consecutive levels
    rank_bottom: int = 0  # rank used by the deepest level (linear from ``rank``; 0: ``rank`` at every level)
    f_tree: float = 0.5  # share of the total variance 1 - |mean|^2 carried by the tree (rest: noise)
    white_share: float = 0.0  # share of the noise that is isotropic (rest inside the family's noise basis)
    mean_loading_sd: float = 0.25
    mean_scale: float = 1.0
    top_zipf: float = 0.6  # popularity of the top nodes ∝ rank^-top_zipf
    child_sigma: float = 1.0  # log-normal spread of child weights
    dup_rate: float = 0.02
    dup_noise: float = 0.15


DEFAULT_PARAMS_V3 = ParamsV3()
#: Generator v4 (a candidate, not the default): the v3 model with a deeper tree (10 levels) whose deep levels
#: use fewer components the deeper they are (rank 96 down to ``rank_bottom``), a slower variance decay and
#: less, lower-rank per-row noise, so that near neighbours keep tightening past 1M rows instead of meeting
#: v3's noise floor. Calibration path and figures: docs/synthetic.md ("Towards generator v4").
DEFAULT_PARAMS_V4 = ParamsV3(levels=10, rho=0.87, f_tree=0.6, noise_rank=36, rank_bottom=16)
TABLE_BITS = 24  # 16M shared standard normals: node coefficients are windows of this table


# --- hashed randomness (counter-based: a value depends only on its key) ------------------------------
@nb.njit("uint64(uint64)", cache=True, nogil=True, inline="always")
def _splitmix(x):
    x = (x + np.uint64(0x9E3779B97F4A7C15))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@nb.njit("int64(uint64, uint64, int64, int64)", cache=True, nogil=True, inline="always")
def _window(seed, level, node, span):
    """Start of node's window in the normal table: a hash of (seed, level, node) modulo ``span``."""
    h = _splitmix(_splitmix(seed * np.uint64(1000003) + level) ^ np.uint64(node))
    return np.int64(h % np.uint64(span))


@nb.njit("int64[:, :](uint64, int64[:], float64[:], int64, int64, float64, float32[:])", cache=True, nogil=True)
def walk_tree(seed, top, u, levels, branching, sigma, table):
    """Node ids (m, levels) of each row's path: level 0 is ``top``; at level l the child c of node p is
    drawn by inverse CDF at u[row, l] over weights exp(sigma * T[w(p) + c]) (w a hashed window)."""
    m = top.shape[0]
    out = np.empty((m, levels), np.int64)
    span = table.shape[0] - branching
    w = np.empty(branching)
    for i in range(m):
        node = top[i]
        out[i, 0] = node
        for lev in range(1, levels):
            start = _window(seed, np.uint64(10_000 + lev), node, span)
            total = 0.0
            for c in range(branching):
                w[c] = np.exp(sigma * table[start + c])
                total += w[c]
            target = u[i * levels + lev] * total
            acc = 0.0
            pick = branching - 1
            for c in range(branching):
                acc += w[c]
                if target < acc:
                    pick = c
                    break
            node = node * branching + pick
            out[i, lev] = node
    return out


@nb.njit("void(uint64, int64[:, :], int64[:], int64, int64, float32[:], float32[:], float32[:, :])",
         cache=True, nogil=True)
def fill_coefficients(seed, paths, rows, first_level, rank, level_sd, table, out):
    """out[t, (l - first_level) * rank + j] = level_sd[l] * T[w(l, node_l(rows[t])) + j]: the hashed
    N(0, 1) coefficients g_l(u) of each row's nodes at the low-rank levels, scaled by their sd."""
    span = table.shape[0] - rank
    levels = paths.shape[1]
    for t in range(rows.shape[0]):
        i = rows[t]
        for lev in range(first_level, levels):
            start = _window(seed, np.uint64(lev), paths[i, lev], span)
            sd = level_sd[lev]
            base = (lev - first_level) * rank
            for j in range(rank):
                out[t, base + j] = sd * table[start + j]


def _frame_gaussian(rng, shape, alpha: float, i0: float, basis: np.ndarray) -> np.ndarray:
    """Gaussian rows in 768-d with frame-coordinate variance ∝ (i + i0)^-alpha, E|row|^2 = shape[-1] == 768
    scaled to 1: returns float64 (..., 768) with unit expected squared norm."""
    i = np.arange(DIM, dtype=np.float64)
    w = (i + i0) ** -alpha
    w /= w.sum()
    z = rng.standard_normal(shape + (DIM,)) * np.sqrt(w)
    return z @ basis


class UniverseV3:
    """Everything shared by all rows of one seed: explicit offsets of the top levels, the low-rank
    family bases of the deeper levels and the noise, the normal table, the level variances."""

    def __init__(self, seed: int, params: ParamsV3 = DEFAULT_PARAMS_V3) -> None:
        p = params
        if not 1 <= p.explicit_levels <= p.levels:
            raise ValueError("explicit_levels must be in 1..levels")
        self.seed, self.params = seed, p
        frame = load_frame()
        self.mean = (frame["mean"] * p.mean_scale).astype(np.float32)
        mean_sq = float(self.mean.astype(np.float64) @ self.mean)
        total = 1.0 - mean_sq * (1.0 + p.mean_loading_sd ** 2)
        basis = frame_basis()
        rng = np.random.default_rng([seed, 0, 3])
        self.table = rng.standard_normal(1 << TABLE_BITS, dtype=np.float32)
        lv = p.rho ** np.arange(p.levels, dtype=np.float64)
        self.level_sd = np.sqrt(p.f_tree * total * lv / lv.sum()).astype(np.float32)
        self.noise_sd = float(np.sqrt((1.0 - p.f_tree) * total))
        alphas = p.alpha_top + (p.alpha_bottom - p.alpha_top) * np.arange(p.levels) / max(p.levels - 1, 1)
        self.alphas = alphas = np.append(alphas, p.alpha_noise)  # index `levels`: the noise
        # explicit levels: cumulative offset of every node of the last explicit level (its ancestors' too)
        cum = np.zeros((p.k1, DIM))
        for lev in range(p.explicit_levels):
            n_nodes = p.k1 * p.branching ** lev
            if lev:
                cum = np.repeat(cum, p.branching, axis=0)
            cum += self.level_sd[lev] * _frame_gaussian(rng, (n_nodes,), alphas[lev], p.i0, basis)
        self.explicit = cum.astype(np.float32)  # (k1 * branching^(explicit_levels-1), 768)
        # low-rank levels and the noise: per family, a stacked basis ((levels - explicit + 1) * rank, 768)
        deep = list(range(p.explicit_levels, p.levels)) + [p.levels]  # the last one is the noise
        ncomp = np.arange(1, p.noise_rank + 1, dtype=np.float64) ** -p.gamma
        ncomp = np.sqrt(ncomp / ncomp.sum())[:, None]
        comp = np.arange(1, p.rank + 1, dtype=np.float64) ** -p.gamma
        level_comp = {}
        for lev in deep[:-1]:  # levels below the first deep one may use fewer components (rank_bottom)
            r = p.rank
            if p.rank_bottom and len(deep) > 2:
                t = (lev - p.explicit_levels) / (p.levels - 1 - p.explicit_levels)
                r = max(1, int(round(p.rank + (p.rank_bottom - p.rank) * t)))
            cl = np.where(np.arange(p.rank) < r, comp, 0.0)
            level_comp[lev] = np.sqrt(cl / cl.sum())[:, None]
        fam = []
        for _ in range(p.n_families):
            fam.append(np.vstack([_frame_gaussian(rng, (p.rank,), alphas[lev], p.i0, basis) * level_comp[lev]
                                  for lev in deep[:-1]]
                                 + [_frame_gaussian(rng, (p.noise_rank,), alphas[-1], p.i0, basis) * ncomp]))
        self.families = np.stack(fam).astype(np.float32)
        self.noise_in = np.float32(self.noise_sd * np.sqrt(1.0 - p.white_share))
        pop = np.arange(1, p.k1 + 1, dtype=np.float64) ** -p.top_zipf
        self.top_p = rng.permutation(pop / pop.sum())

    def chunk(self, stream: int, index: int, *, duplicates: bool) -> np.ndarray:
        """Rows of chunk ``index`` of ``stream``: float32 (CHUNK_ROWS, 768), L2-normalised."""
        p = self.params
        rng = np.random.default_rng([self.seed, stream, index])
        m = CHUNK_ROWS
        top = rng.choice(p.k1, size=m, p=self.top_p).astype(np.int64)
        u = rng.random(m * p.levels)
        paths = walk_tree(np.uint64(self.seed), top, u, p.levels, p.branching, p.child_sigma, self.table)
        x = self.explicit[paths[:, p.explicit_levels - 1]]
        n_deep = p.levels - p.explicit_levels
        family = top % p.n_families
        order = np.argsort(family, kind="stable")
        bounds = np.searchsorted(family[order], np.arange(p.n_families + 1))
        noise = rng.standard_normal((m, p.noise_rank), dtype=np.float32) * self.noise_in
        for f in range(p.n_families):
            rows = order[bounds[f]:bounds[f + 1]]
            if not rows.size:
                continue
            coef = np.empty((rows.size, n_deep * p.rank + p.noise_rank), np.float32)
            if n_deep:
                fill_coefficients(np.uint64(self.seed), paths, rows, p.explicit_levels, p.rank, self.level_sd,
                                  self.table, coef)
            coef[:, n_deep * p.rank:] = noise[rows]
            x[rows] += coef @ self.families[f]
        if p.white_share > 0:
            x += rng.standard_normal((m, DIM), dtype=np.float32) * np.float32(
                self.noise_sd * np.sqrt(p.white_share / DIM))
        loading = (1.0 + p.mean_loading_sd * rng.standard_normal(m)).astype(np.float32)
        x += loading[:, None] * self.mean
        if duplicates:
            add_near_duplicates(x, rng, p.dup_rate, p.dup_noise)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


@functools.lru_cache(maxsize=2)
def universe_v3(seed: int, params: ParamsV3 = DEFAULT_PARAMS_V3) -> UniverseV3:
    log.info("building synthetic v3 universe for seed %d (%s)", seed, asdict(params))
    return UniverseV3(seed, params)
