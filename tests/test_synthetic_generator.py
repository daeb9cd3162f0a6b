"""Synthetic LAION-like data: determinism, prefix property, official layout, calibration on a sample."""

import h5py
import numpy as np
import pytest

from laionknn.catalog import local_path, resolve
from laionknn.errors import UsageError
from laionknn.synthetic import CHUNK_ROWS, generate_database, generate_queries, materialize

N = 20_000  # crosses a chunk boundary (CHUNK_ROWS = 16384)

# the real figures of the 1024 LAION vectors (shared/data/README.md), written out independently
REAL_MEAN_COS, REAL_NORM_OF_MEAN = 0.384, 0.62
REAL_PCA = {32: 0.38, 96: 0.60}


@pytest.fixture(scope="module")
def database():
    return generate_database(N, seed=0)


@pytest.fixture(scope="module")
def queries():
    return generate_queries(500, seed=0)


def test_shapes_dtypes(database, queries):
    assert database.shape == (N, 768) and database.dtype == np.float16
    assert queries.shape == (500, 768) and queries.dtype == np.float32
    assert np.isfinite(database.astype(np.float32)).all()


def test_deterministic_for_a_seed(database):
    again = generate_database(3000, seed=0)
    np.testing.assert_array_equal(again, database[:3000])
    other = generate_database(3000, seed=1)
    assert not np.array_equal(other, again)
    np.testing.assert_array_equal(generate_queries(50, seed=1), generate_queries(50, seed=1))


def test_smaller_size_is_a_prefix(database):
    assert CHUNK_ROWS < N
    small = generate_database(CHUNK_ROWS + 5, seed=0)
    np.testing.assert_array_equal(small, database[:CHUNK_ROWS + 5])
    np.testing.assert_array_equal(generate_database(7, seed=0), database[:7])


def test_norms_are_one_up_to_float16_rounding(database, queries):
    norms = np.linalg.norm(database.astype(np.float64), axis=1)
    assert np.abs(norms - 1).max() < 2e-3
    np.testing.assert_allclose(np.linalg.norm(queries.astype(np.float64), axis=1), 1, atol=1e-5)


def test_queries_are_not_database_members(database, queries):
    db = database.astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    best = (queries @ db.T).max(axis=1)
    assert best.max() < 0.999  # no query is (a float16 copy of) a database row
    assert best.mean() > 0.6  # ... but they come from the same clusters


def test_near_duplicates_present(database):
    x = database[:6000].astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    g = x @ x.T
    np.fill_diagonal(g, -1)
    rate = (g.max(axis=1) >= 0.98).mean()
    assert 0.002 < rate < 0.2


def test_sample_statistics_match_real_ones(database):
    rng = np.random.default_rng(7)
    x = database[np.sort(rng.choice(N, 1024, replace=False))].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    iu = np.triu_indices(1024, 1)
    mean_cos = (x @ x.T)[iu].mean()
    mean = x.mean(axis=0)
    ev = np.linalg.eigvalsh(np.cov((x - mean).T, bias=True))[::-1]
    share = np.cumsum(ev) / ev.sum()
    assert abs(mean_cos - REAL_MEAN_COS) < 0.05
    assert abs(np.linalg.norm(mean) - REAL_NORM_OF_MEAN) < 0.05
    for d, real in REAL_PCA.items():
        assert abs(share[d - 1] - real) < 0.05, (d, share[d - 1])


def test_materialize_writes_official_layout(database):
    db_rec = resolve("synthetic-clip768v2-n=20K")
    q_rec = resolve("synthetic-queries-1k-clip768v2")
    p = materialize(db_rec)
    assert p == local_path(db_rec) and p.exists()
    with h5py.File(p) as f:
        assert list(f.keys()) == ["emb"]
        assert f["emb"].dtype == np.float16 and f["emb"].shape == (N, 768)
        np.testing.assert_array_equal(f["emb"][:100], database[:100])
    q = materialize(q_rec)
    with h5py.File(q) as f:
        assert list(f.keys()) == ["emb"]
        assert f["emb"].dtype == np.float32 and f["emb"].shape == (1000, 768)
        np.testing.assert_array_equal(f["emb"][:500], generate_queries(500, seed=0))
    assert not list(p.parent.glob(".tmp-*"))  # atomic: no temp files left behind


def test_materialize_seeded_name(tmp_path):
    rec = resolve("synthetic-clip768v2-n=1000-seed=1")
    with h5py.File(materialize(rec)) as f:
        np.testing.assert_array_equal(f["emb"][()], generate_database(1000, seed=1))


@pytest.mark.parametrize("name", ["synthetic-gold-standard-clip768v2-n=100K-q=10k", "synthetic-pca32v2-n=100K",
                                  "synthetic-queries-10k-pca96v2-n=100K"])
def test_materialize_refuses_derived_records(name):
    with pytest.raises(UsageError, match="only synthetic clip768v2 database and query files"):
        materialize(resolve(name))


def test_bad_arguments():
    with pytest.raises(UsageError, match="seed must be a non-negative integer"):
        generate_database(10, seed=-1)
    with pytest.raises(UsageError, match="cannot read size"):
        generate_database("12X")


def test_catalog_ensure_synthesises_and_checks_layout():
    from laionknn.catalog.ensure import ensure

    rec = resolve("synthetic-clip768v2-n=2000")
    path = ensure(rec)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["emb"][()], generate_database(2000, seed=0))
    assert ensure(rec) == path  # present: kept, layout re-checked
