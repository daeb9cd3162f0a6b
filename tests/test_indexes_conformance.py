"""One conformance test run by every available backend of the registry.

Data: 2,000 clustered float16 vectors of dimension 64 (cosine), or 1024-bit sketches of such vectors
(Hamming) for the binary backends. The reference is computed here with plain numpy (float64), and
recall is tie-aware: a returned id counts when its true distance is within the k-th gold distance.
"""

from __future__ import annotations

import numpy as np
import pytest

from laionknn.indexes import available_backends, create, get_backend, known_backends, load_grid
from laionknn.indexes.grids import default_grid_path
from laionknn.types import Metric

N, DIM, NQ, K = 2000, 64, 100, 10

# minimum tie-aware recall@10 on this data with each backend's small-data grid (highest query point)
FLOORS = {
    "exact": 1.0, "faiss-flat": 0.99, "faiss-ivfflat": 0.85, "faiss-ivfsq8": 0.8, "faiss-ivfpqfs": 0.8,
    "faiss-hnsw": 0.9, "faiss-hnswsq8": 0.9, "hnswlib": 0.9, "usearch-f32": 0.9, "usearch-f16": 0.9,
    "usearch-i8": 0.8, "scann": 0.85, "faiss-binary-flat": 1.0, "faiss-binary-ivf": 0.6,
    "faiss-binary-hnsw": 0.6, "faiss-ivfrabitqfs": 0.8, "faiss-nsg": 0.9, "deglib": 0.9, "deglib-u8": 0.85,
    "rabitq-ivf": 0.85, "rabitq-symqg": 0.9, "vsag-hgraph": 0.9, "ngt-anng": 0.9, "ngt-onng": 0.9,
    "voyager-e4m3": 0.7, "voyager-f32": 0.9, "svs-vamana": 0.9, "svs-lvq": 0.85, "svs-leanvec": 0.8,
    "laionknn-ivfgemm": 0.9, "laionknn-ivfgemm-q4": 0.6,
}


def _clustered(rng, n, centers):
    labels = rng.integers(0, len(centers), n)
    return centers[labels] + 0.6 * rng.standard_normal((n, centers.shape[1]))


@pytest.fixture(scope="module")
def float_data():
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((25, DIM))
    db = _clustered(rng, N, centers).astype(np.float16)
    q = _clustered(rng, NQ, centers).astype(np.float32)
    return db, q


@pytest.fixture(scope="module")
def binary_data(float_data):
    db, q = float_data
    planes = np.random.default_rng(8).standard_normal((DIM, 1024))

    def sketch(x):
        bits = (x.astype(np.float64) @ planes) > 0
        return np.packbits(bits, axis=1, bitorder="little").view(np.uint64)

    return sketch(db), sketch(q)


def _true_dists(metric, db, q):
    """(NQ, N) float64 distances by plain numpy: 1 - cos, or Hamming bit counts."""
    if metric is Metric.HAMMING:
        xor = q[:, None, :] ^ db[None, :, :]
        return np.unpackbits(xor.view(np.uint8), axis=2).sum(axis=2).astype(np.float64)
    a = db.astype(np.float64)
    b = q.astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return 1.0 - b @ a.T


def test_registry_lists_every_backend_with_a_grid_and_floor():
    assert set(known_backends()) == set(FLOORS)
    for name in known_backends():
        assert default_grid_path(name) is not None, f"{name}: no grid file"
    for name in available_backends():  # validating keys needs the backend class (its library)
        assert load_grid(name, n_rows=N, dim=DIM).build  # default grid file parses, its rules evaluate, it validates


@pytest.mark.parametrize("name", known_backends())
def test_backend_conformance(name, float_data, binary_data, tmp_path):
    if name not in available_backends():
        pytest.skip(f"{name}: unavailable here (library not installed, or a CPU it does not run on)")
    cls = get_backend(name)
    metric = Metric.HAMMING if Metric.HAMMING in cls.metrics and Metric.COSINE not in cls.metrics else Metric.COSINE
    db, q = binary_data if metric is Metric.HAMMING else float_data
    db_before, q_before = db.copy(), q.copy()

    grid = load_grid(name, n_rows=N, dim=db.shape[1])
    index = create(name, metric, threads=2, **grid.build[0])
    index.build(db)
    index.set_query_params(**grid.query[-1])
    res = index.search(q, K)

    assert res.ids.shape == (NQ, K) and res.dists.shape == (NQ, K)
    assert res.ids.dtype == np.int64 and res.dists.dtype == np.float32
    assert res.ids.min() >= 0 and res.ids.max() < N
    assert all(len(set(row)) == K for row in res.ids), "duplicate ids in a row"
    assert np.all(np.diff(res.dists, axis=1) >= 0), "distances not ascending"
    np.testing.assert_array_equal(db, db_before)
    np.testing.assert_array_equal(q, q_before)

    true = _true_dists(metric, db, q)
    kth = np.sort(true, axis=1)[:, K - 1]
    got = np.take_along_axis(true, res.ids, 1)
    recall = float((got <= kth[:, None] + 1e-6).mean())
    assert recall >= FLOORS[name], f"{name}: recall@10 {recall:.3f} below floor {FLOORS[name]}"
    # reported distances are the true ones, up to the backend's storage precision
    tol = 0.5 if metric is Metric.HAMMING else 0.05
    assert np.abs(res.dists.astype(np.float64) - got).max() <= tol

    if cls.supports_save:
        index.save(tmp_path / "ix")
        again = create(name, metric, threads=1, **grid.build[0])
        again.load(tmp_path / "ix", N, db.shape[1])
        again.set_query_params(**grid.query[-1])
        res2 = again.search(q, K)
        assert (res2.ids == res.ids).mean() >= 0.99


@pytest.mark.parametrize("name", known_backends())
def test_min_index_bytes_is_a_lower_bound_of_the_saved_index(name, float_data, binary_data, tmp_path):
    """`--memory-limit` refuses limits below ``min_index_bytes``: it must never exceed what the index
    really stores (measured as the size of its saved files, which hold the codes, ids and links)."""
    if name not in available_backends():
        pytest.skip(f"{name} is not available here")
    from laionknn.indexes.base import dir_size

    cls = get_backend(name)
    binary = Metric.HAMMING in cls.metrics
    db, _ = binary_data if binary else float_data
    build = load_grid(name, n_rows=N, dim=db.shape[1]).build[0]
    index = create(name, "hamming" if binary else "cosine", threads=1, **build)
    index.build(db)
    bound = cls.min_index_bytes(N, db.shape[1], index.build_params)
    if not cls.supports_save:
        assert bound == 0  # keeps nothing of its own
        return
    assert 0 < bound <= dir_size(index.save(tmp_path / "index")), name
