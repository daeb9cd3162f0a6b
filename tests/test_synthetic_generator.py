"""Synthetic LAION-like data: determinism, prefix property, official layout, calibration on a sample,
for both generator versions (v3, the default, and v2, kept to reproduce earlier figures)."""

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


@pytest.fixture(scope="module", params=["v3", "v2", "v4"])
def gen(request):
    return request.param


@pytest.fixture(scope="module")
def database(gen):
    return generate_database(N, seed=0, generator=gen)


@pytest.fixture(scope="module")
def queries(gen):
    return generate_queries(500, seed=0, generator=gen)


def _name(gen, rest):
    return ("synthetic-" if gen == "v2" else f"synthetic-{gen}-") + rest


def test_shapes_dtypes(database, queries):
    assert database.shape == (N, 768) and database.dtype == np.float16
    assert queries.shape == (500, 768) and queries.dtype == np.float32
    assert np.isfinite(database.astype(np.float32)).all()


def test_deterministic_for_a_seed(database, gen):
    again = generate_database(3000, seed=0, generator=gen)
    np.testing.assert_array_equal(again, database[:3000])
    other = generate_database(3000, seed=1, generator=gen)
    assert not np.array_equal(other, again)
    np.testing.assert_array_equal(generate_queries(50, seed=1, generator=gen),
                                  generate_queries(50, seed=1, generator=gen))


def test_versions_differ(database, gen):
    other = generate_database(100, seed=0, generator="v2" if gen == "v3" else "v3")
    assert not np.array_equal(other, database[:100])


def test_smaller_size_is_a_prefix(database, gen):
    assert CHUNK_ROWS < N
    small = generate_database(CHUNK_ROWS + 5, seed=0, generator=gen)
    np.testing.assert_array_equal(small, database[:CHUNK_ROWS + 5])
    np.testing.assert_array_equal(generate_database(7, seed=0, generator=gen), database[:7])


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


def test_materialize_writes_official_layout(database, gen):
    db_rec = resolve(_name(gen, "clip768v2-n=20K"))
    q_rec = resolve(_name(gen, "queries-1k-clip768v2"))
    assert db_rec.generator == gen and q_rec.generator == gen
    p = materialize(db_rec)
    assert p == local_path(db_rec) and p.exists()
    with h5py.File(p) as f:
        assert list(f.keys()) == ["emb"]
        assert f["emb"].dtype == np.float16 and f["emb"].shape == (N, 768)
        np.testing.assert_array_equal(f["emb"][:100], database[:100])
        assert f.attrs["generator"] == gen
    q = materialize(q_rec)
    with h5py.File(q) as f:
        assert list(f.keys()) == ["emb"]
        assert f["emb"].dtype == np.float32 and f["emb"].shape == (1000, 768)
        np.testing.assert_array_equal(f["emb"][:500], generate_queries(500, seed=0, generator=gen))
    assert not list(p.parent.glob(".tmp-*"))  # atomic: no temp files left behind


def test_materialize_seeded_name(tmp_path):
    rec = resolve("synthetic-v3-clip768v2-n=1000-seed=1")
    with h5py.File(materialize(rec)) as f:
        np.testing.assert_array_equal(f["emb"][()], generate_database(1000, seed=1, generator="v3"))
    rec = resolve("synthetic-clip768v2-n=1000-seed=1")
    with h5py.File(materialize(rec)) as f:
        np.testing.assert_array_equal(f["emb"][()], generate_database(1000, seed=1, generator="v2"))


@pytest.mark.parametrize("name", ["synthetic-gold-standard-clip768v2-n=100K-q=10k", "synthetic-pca32v2-n=100K",
                                  "synthetic-queries-10k-pca96v2-n=100K", "synthetic-v3-pca32v2-n=100K",
                                  "synthetic-v3-gold-standard-clip768v2-n=100K-q=10k"])
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

    rec = resolve("synthetic-v3-clip768v2-n=2000")
    path = ensure(rec)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["emb"][()], generate_database(2000, seed=0, generator="v3"))
    assert ensure(rec) == path  # present: kept, layout re-checked


# --- versioned identity -------------------------------------------------------------------------
def test_names_carry_the_generator_version():
    from laionknn.catalog import dataset, synthetic_database_name, synthetic_gold_name, synthetic_queries_name

    assert synthetic_database_name("100K") == "synthetic-v3-clip768v2-n=100K"  # v3 is the default
    assert synthetic_database_name("100K", generator="v2") == "synthetic-clip768v2-n=100K"
    assert synthetic_queries_name(10_000, seed=2) == "synthetic-v3-queries-10k-clip768v2-seed=2"
    assert synthetic_gold_name("1M") == "synthetic-v3-gold-standard-clip768v2-n=1M-q=10k"
    assert resolve("synthetic-clip768v2-n=100K").generator == "v2"
    assert resolve("synthetic-v3-clip768v2-n=100K").generator == "v3"
    # an explicit v2 token names the same (original) v2 dataset
    assert resolve("synthetic-v2-clip768v2-n=100K").name == "synthetic-clip768v2-n=100K"
    spec = dataset("synthetic-v3-clip768v2-n=300K")  # companions of the same version
    assert spec.queries.name == "synthetic-v3-queries-10k-clip768v2"
    assert spec.gold.name == "synthetic-v3-gold-standard-clip768v2-n=300K-q=10k"
    assert dataset("synthetic-clip768v2-n=300K").gold.name == "synthetic-gold-standard-clip768v2-n=300K-q=10k"


def test_unknown_generator_version_is_refused():
    from laionknn.errors import CatalogError

    with pytest.raises(CatalogError, match="unknown synthetic generator version 'v7'; known versions: v2, v3, v4"):
        resolve("synthetic-v7-clip768v2-n=100K")
    with pytest.raises(CatalogError, match="unknown synthetic generator version"):
        generate_database(10, generator="v1")


def test_a_v2_file_under_a_v3_name_is_refused():
    from laionknn.catalog.ensure import ensure
    from laionknn.errors import FormatError
    from laionknn.synthetic import write_synthetic

    rec = resolve("synthetic-v3-clip768v2-n=1000")
    write_synthetic(local_path(rec), 1000, 0, generator="v2")  # a stale v2 file under the v3 name
    with pytest.raises(FormatError, match="holds data of synthetic generator v2, but synthetic-v3-clip768v2-n=1000 "
                                          "names generator v3 data"):
        ensure(rec)
    with pytest.raises(FormatError, match="--generator v3 --force"):
        materialize(rec)
    materialize(rec, force=True)  # the advice works
    assert ensure(rec) == local_path(rec)
    with h5py.File(local_path(rec)) as f:
        np.testing.assert_array_equal(f["emb"][()], generate_database(1000, generator="v3"))


def test_an_unstamped_laionknn_file_counts_as_v2(tmp_path):
    from laionknn.io import write_vectors
    from laionknn.synthetic.writer import file_generator

    x = generate_database(50, generator="v2")
    p = write_vectors(tmp_path / "old.h5", x, "emb")
    assert file_generator(p) is None  # not a laionknn synthetic file at all
    with h5py.File(p, "a") as f:
        f.attrs["synthetic"] = "laionknn"  # what files written before the stamp carry
    assert file_generator(p) == "v2"


def test_streamed_writing_uses_bounded_memory(tmp_path):
    """Peak traced memory of a streamed write does not grow with the number of rows."""
    import tracemalloc

    from laionknn.synthetic import write_synthetic
    from laionknn.synthetic.model import _universe_for

    _universe_for(0, None, "v3")  # the universe is built (and cached) once, outside the measurement
    peaks = []
    for chunks in (2, 6):
        tracemalloc.start()
        write_synthetic(tmp_path / f"s{chunks}.h5", chunks * CHUNK_ROWS, 0, generator="v3")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    one_chunk = CHUNK_ROWS * 768 * 2  # a float16 chunk; the 6-chunk database would need 6 of them
    assert peaks[1] < peaks[0] + one_chunk / 2, peaks  # three times the rows, (almost) the same peak


def test_v4_is_named_apart_from_v3():
    from laionknn.catalog import synthetic_database_name

    assert synthetic_database_name("100K", generator="v4") == "synthetic-v4-clip768v2-n=100K"
    assert resolve("synthetic-v4-clip768v2-n=100K").generator == "v4"
    assert resolve("synthetic-v4-clip768v2-n=100K").name != resolve("synthetic-v3-clip768v2-n=100K").name


def test_rank_bottom_narrows_the_deep_levels():
    """rank_bottom: level l below the explicit ones spans rank + (rank_bottom - rank) * t dimensions
    (t from 0 at the first deep level to 1 at the deepest); the noise keeps noise_rank."""
    from laionknn.synthetic.model_v3 import ParamsV3, UniverseV3

    p = ParamsV3(levels=6, explicit_levels=2, rank=20, rank_bottom=4, noise_rank=8, n_families=2)
    fam = UniverseV3(3, p).families[1].astype(np.float64)  # (4 deep levels * 20 + 8, 768)
    ranks = [np.linalg.matrix_rank(fam[j * 20:(j + 1) * 20], tol=1e-6) for j in range(4)]
    assert ranks == [20, 15, 9, 4]
    assert np.linalg.matrix_rank(fam[80:], tol=1e-6) == 8
    # each level keeps its variance: the rows of a level have the same total energy with or without it
    full = UniverseV3(3, ParamsV3(levels=6, explicit_levels=2, rank=20, noise_rank=8, n_families=2))
    e_full = [(full.families[1][j * 20:(j + 1) * 20].astype(np.float64) ** 2).sum() for j in range(4)]
    e_cut = [(fam[j * 20:(j + 1) * 20] ** 2).sum() for j in range(4)]
    np.testing.assert_allclose(e_cut, e_full, rtol=0.2)
