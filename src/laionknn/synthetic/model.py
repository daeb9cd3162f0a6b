"""Generator v2 (and the shared frame): a hierarchical cluster model anchored in the real LAION frame.

v3, the default, and the v4 candidate (v3's model with other parameters) live in
:mod:`laionknn.synthetic.model_v3` and share this module's frame and chunking.

Frame. ``data/laion1024-frame.npz`` holds parameters derived from the 1024 real LAION vectors of the
organisers' BinWalk model: the mean vector (norm 0.62) and the leading real principal directions.
The frame B is an orthonormal 768 x 768 basis (rows = directions) whose first rows are those real
directions and whose remaining rows are a fixed random orthonormal completion.

Model (coordinates z in the frame; a vector is ``x = a * mean + z @ B``, then L2-normalised, with a
per-point loading a ~ N(1, mean_loading_sd^2) because real vectors vary along their mean direction):

* ``n_groups`` top-level clusters with centres ~ N(0, diag(lambda)), lambda_i ∝ (i + i0)^-alpha (the
  global spectrum that makes the PCA curve of a 1024-sample match the real one), popularity Zipf-like;
* ``n_bases`` random local bases L_b of rank r (group g uses L_{g mod n_bases}); their rows are
  Gaussian in the frame with per-coordinate variance w_i ∝ (i + j0)^-beta, scaled by j^-gamma over
  the r components: the local manifold spreads into many global dimensions, so a low-dimensional PCA
  loses neighbours the way it does on real CLIP vectors, while the local dimension stays moderate;
* ``n_sub`` sub-clusters per group, offset from the group centre inside its local basis;
* a point = sub-cluster centre + noise inside the same basis, with a per-point log-normal scale;
* a fraction of database rows are near-duplicates of another row of the same chunk.

Variance shares ``f_group``, ``f_sub``, ``f_point`` of the total 1 - |mean|^2 keep norms close to 1
before normalisation. Everything derives from the seed: the "universe" (centres, local bases) from
``default_rng([seed, 0])``; database chunk c from ``default_rng([seed, 1, c])``; query chunk c from
``default_rng([seed, 2, c])``. Chunks have a fixed size, so a database of n rows is the prefix of
every larger one of the same seed.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np

from laionknn.errors import UsageError

log = logging.getLogger(__name__)

DIM = 768
CHUNK_ROWS = 16384  # fixed: changing it changes every generated dataset
FRAME_FILE = "data/laion1024-frame.npz"
_DATABASE_STREAM, _QUERY_STREAM = 1, 2


@dataclass(frozen=True)
class Params:
    """Generator parameters (tuned by scripts/calibrate_synthetic.py; defaults are the shipped ones)."""

    n_groups: int = 512  # top-level clusters
    n_bases: int = 16  # local bases; group g uses basis g % n_bases
    n_sub: int = 32  # sub-clusters per group
    rank: int = 192  # rank of each local basis
    alpha: float = 1.75  # global spectrum exponent
    i0: float = 8.0  # global spectrum offset
    beta: float = 0.0  # local-basis spectrum exponent over frame coordinates
    j0: float = 4.0  # local-basis spectrum offset
    gamma: float = 0.5  # decay of the variance over the rank components of a local basis
    f_group: float = 0.4  # share of the total variance between group centres
    f_sub: float = 0.2  # share between sub-clusters of a group
    f_point: float = 0.4  # share within a sub-cluster
    mean_loading_sd: float = 0.25  # per-point spread of the loading on the mean direction
    mean_scale: float = 1.015  # length of the mean relative to the real one (normalisation shortens it)
    point_scale_sigma: float = 0.1  # log-normal spread of per-point noise scale
    group_zipf: float = 0.6  # group popularity ∝ rank^-group_zipf
    dup_rate: float = 0.02  # share of database rows that are near-duplicates of another row
    dup_noise: float = 0.15  # largest norm of the perturbation added to a duplicate


DEFAULT_PARAMS = Params()


@functools.lru_cache(maxsize=1)
def load_frame() -> dict:
    """The shipped real-data parameters: ``mean`` (768,) float32, ``directions`` (k, 768) float32
    (rows, orthonormal), ``spectrum`` (768,) sample variance shares, ``real_stats`` (dict)."""
    with resources.files("laionknn.synthetic").joinpath(FRAME_FILE).open("rb") as fh:
        z = np.load(fh, allow_pickle=False)
        frame = {k: z[k] for k in ("mean", "directions", "spectrum")}
        stats = json.loads(str(z["real_stats"]))
    stats["pca"] = {int(k): v for k, v in stats["pca"].items()}
    frame["real_stats"] = stats
    return frame


@functools.lru_cache(maxsize=1)
def frame_basis() -> np.ndarray:
    """Orthonormal basis (768, 768) float64, rows = directions: the real principal directions first,
    then a fixed random orthonormal completion (independent of the dataset seed)."""
    top = load_frame()["directions"].astype(np.float64)
    k = top.shape[0]
    rng = np.random.default_rng(20230801)
    g = rng.standard_normal((DIM, DIM - k))
    g -= top.T @ (top @ g)  # project out the real directions
    q, r = np.linalg.qr(g)
    q *= np.sign(np.diag(r))  # fix the QR sign ambiguity
    basis = np.vstack([top, q.T])
    return basis


class Universe:
    """Everything shared by all rows of one seed: centres and local bases, in 768-d (float32)."""

    def __init__(self, seed: int, params: Params = DEFAULT_PARAMS) -> None:
        p = params
        self.seed = seed
        self.params = p
        frame = load_frame()
        self.mean = (frame["mean"] * p.mean_scale).astype(np.float32)
        mean_sq = float(self.mean.astype(np.float64) @ self.mean)
        total = 1.0 - mean_sq * (1.0 + p.mean_loading_sd**2)
        basis = frame_basis()
        rng = np.random.default_rng([seed, 0])
        i = np.arange(DIM, dtype=np.float64)
        lam = (i + p.i0) ** -p.alpha
        lam *= p.f_group * total / lam.sum()
        w = (i + p.j0) ** -p.beta
        w /= w.sum()
        # group centres in frame coordinates -> 768-d
        z = rng.standard_normal((p.n_groups, DIM)) * np.sqrt(lam)
        group_centres = z @ basis
        # local bases: rows Gaussian with frame-coordinate variance w; E|eps @ L|^2 = rank * sum(w) = 1
        comp = np.arange(1, p.rank + 1, dtype=np.float64) ** -p.gamma
        comp /= comp.sum()
        local = rng.standard_normal((p.n_bases, p.rank, DIM)) * np.sqrt(w)[None, None, :]
        local *= np.sqrt(comp)[None, :, None]
        self.local = (local.reshape(-1, DIM) @ basis).reshape(p.n_bases, p.rank, DIM).astype(np.float32)
        # sub-cluster centres: group centre + offset inside the group's local basis
        eta = (rng.standard_normal((p.n_groups, p.n_sub, p.rank)) * np.sqrt(p.f_sub * total)).astype(np.float32)
        sub = np.repeat(group_centres.astype(np.float32), p.n_sub, axis=0).reshape(p.n_groups, p.n_sub, DIM)
        for b in range(p.n_bases):
            sub[b::p.n_bases] += (eta[b::p.n_bases] @ self.local[b]).astype(np.float32)
        self.centres = sub.reshape(-1, DIM)  # (n_groups*n_sub, 768) float32, mean excluded
        popularity = np.arange(1, p.n_groups + 1, dtype=np.float64) ** -p.group_zipf
        self.group_p = rng.permutation(popularity / popularity.sum())
        self.point_sd = float(np.sqrt(p.f_point * total))

    def chunk(self, stream: int, index: int, *, duplicates: bool) -> np.ndarray:
        """Rows of chunk ``index`` of ``stream``: float32 (CHUNK_ROWS, 768), L2-normalised."""
        p = self.params
        rng = np.random.default_rng([self.seed, stream, index])
        m = CHUNK_ROWS
        group = rng.choice(p.n_groups, size=m, p=self.group_p)
        sub = rng.integers(0, p.n_sub, size=m)
        scale = np.exp(p.point_scale_sigma * rng.standard_normal(m) - p.point_scale_sigma**2)
        eps = rng.standard_normal((m, p.rank), dtype=np.float32)
        eps *= (scale * self.point_sd).astype(np.float32)[:, None]
        loading = (1.0 + p.mean_loading_sd * rng.standard_normal(m)).astype(np.float32)
        x = self.centres[group * p.n_sub + sub]
        x += loading[:, None] * self.mean
        basis_of = group % p.n_bases
        order = np.argsort(basis_of, kind="stable")
        bounds = np.searchsorted(basis_of[order], np.arange(p.n_bases + 1))
        for g in range(p.n_bases):
            rows = order[bounds[g]:bounds[g + 1]]
            if rows.size:
                x[rows] += eps[rows] @ self.local[g]
        if duplicates:
            add_near_duplicates(x, rng, p.dup_rate, p.dup_noise)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def add_near_duplicates(x: np.ndarray, rng: np.random.Generator, rate: float, noise_norm: float) -> None:
    """Turn a share ``rate`` of the rows of ``x`` (float32 (m, 768), not yet normalised; modified in
    place, the generator's own buffer) into near-duplicates of another row of the same chunk: the
    original's unit vector plus a perturbation of norm uniform in [0, noise_norm), from exact copies to
    cosine ≈ 1 - noise_norm²/2. Shared by every generator version (same draws, same order)."""
    if rate <= 0:
        return
    m = x.shape[0]
    dup = rng.random(m) < rate
    dup[0] = False
    originals = np.flatnonzero(~dup)
    targets = np.flatnonzero(dup)
    src = originals[rng.integers(0, originals.size, size=targets.size)]
    size = (noise_norm / np.sqrt(DIM)) * rng.random(targets.size, dtype=np.float32)
    noise = rng.standard_normal((targets.size, DIM), dtype=np.float32) * size[:, None]
    x[targets] = x[src] / np.linalg.norm(x[src], axis=1, keepdims=True) + noise


@functools.lru_cache(maxsize=2)
def universe(seed: int, params: Params = DEFAULT_PARAMS) -> Universe:
    """The cached :class:`Universe` of ``seed`` (building it takes about a second)."""
    check_seed(seed)
    log.info("building synthetic universe for seed %d (%s)", seed, asdict(params))
    return Universe(seed, params)


def check_seed(seed) -> int:
    """Seeds are non-negative integers (they appear in catalog names as ``-seed=S``)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _universe_for(seed: int, params, generator: str):
    from laionknn.catalog.manifest import check_generator

    generator = check_generator(generator)
    if generator == "v2":
        if params is not None and not isinstance(params, Params):
            raise UsageError(f"generator v2 takes laionknn.synthetic.Params, got {type(params).__name__}")
        return universe(check_seed(seed), params or DEFAULT_PARAMS)
    from laionknn.synthetic.model_v3 import DEFAULT_PARAMS_V3, DEFAULT_PARAMS_V4, ParamsV3, universe_v3

    if params is not None and not isinstance(params, ParamsV3):
        raise UsageError(f"generator {generator} takes laionknn.synthetic.ParamsV3, got {type(params).__name__}")
    return universe_v3(check_seed(seed), params or (DEFAULT_PARAMS_V4 if generator == "v4" else DEFAULT_PARAMS_V3))


def iter_chunks(n: int, seed: int = 0, *, queries: bool = False, params=None, generator: str | None = None):
    """Yield ``(first_row, block)`` float32 normalised blocks covering rows [0, n) of the database
    (or query) stream of ``seed`` of generator ``generator`` (default: the current default version).
    Block c is chunk c truncated to n, hence the prefix property."""
    from laionknn.types import DEFAULT_GENERATOR

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise UsageError(f"number of rows must be a positive integer, got {n!r}")
    uni = _universe_for(seed, params, generator or DEFAULT_GENERATOR)
    stream = _QUERY_STREAM if queries else _DATABASE_STREAM
    for c in range(-(-int(n) // CHUNK_ROWS)):
        lo = c * CHUNK_ROWS
        block = uni.chunk(stream, c, duplicates=not queries)
        yield lo, block[: min(CHUNK_ROWS, n - lo)]
