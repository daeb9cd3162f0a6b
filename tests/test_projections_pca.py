"""PCA: streamed fit against numpy's SVD, db/query agreement, files, bad input."""

import numpy as np
import pytest

from laionknn.errors import FormatError, UsageError
from laionknn.io import VectorFile, read_vectors, write_vectors
from laionknn.projections import apply as pa
from laionknn.projections.pca import PCAModel, fit_pca


def _data(rng, n=600, d=24):
    basis = rng.standard_normal((d, d))
    x = rng.standard_normal((n, d)) * np.linspace(3, 0.2, d) @ basis + 2.0
    return x


def _svd_reference(x, dims):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    mu = xn.mean(0)
    _, s, vt = np.linalg.svd(xn - mu, full_matrices=False)
    return mu, vt[:dims].T, s[:dims] ** 2 / len(x)


def test_fit_matches_svd_up_to_sign(rng):
    x = _data(rng)
    model = fit_pca(x, 8, block_rows=97)          # several blocks
    mu, comps, var = _svd_reference(x, 8)
    assert np.allclose(model.mean, mu, atol=1e-12)
    assert np.allclose(model.explained_variance, var, rtol=1e-8)
    cos = np.abs((model.components * comps).sum(0))
    assert np.allclose(cos, 1.0, atol=1e-8)
    proj = ((x / np.linalg.norm(x, axis=1, keepdims=True)) - mu) @ comps
    got = model.transform(x)
    assert got.dtype == np.float32 and got.shape == (len(x), 8)
    assert np.allclose(np.abs(got), np.abs(proj), atol=1e-5)


def test_fit_rows_first_and_random(rng):
    x = _data(rng)
    first = fit_pca(x, 4, fit_rows=100)
    mu, comps, _ = _svd_reference(x[:100], 4)
    assert first.n_fit == 100 and np.allclose(first.mean, mu)
    rnd = fit_pca(x, 4, fit_rows=100, sample="random", seed=3)
    idx = np.sort(np.random.default_rng(3).choice(len(x), size=100, replace=False))
    assert np.allclose(rnd.mean, _svd_reference(x[idx], 4)[0])


def test_database_and_query_files_agree(rng, tmp_path):
    x = rng.standard_normal((800, 768)) * np.linspace(1, 0.05, 768) + 0.3
    db = write_vectors(tmp_path / "a-clip768v2-n=500.h5", x.astype(np.float16), "emb")
    q = write_vectors(tmp_path / "q-clip768v2.h5", x[:20].astype(np.float32), "emb")
    with VectorFile(db) as vf:
        model = fit_pca(vf, 32)
    out = tmp_path / "out"
    out.mkdir()
    pdb = read_vectors(pa.pca_file(model, db, out), expect_dim=32)
    pq = read_vectors(pa.pca_file(model, q, out), expect_dim=32)
    assert (out / "a-pca32v2-n=500.h5").exists()
    # the same vector as float16 db row and float32 query projects to (nearly) the same point
    assert np.allclose(pdb[:20], pq, atol=2e-3)
    assert np.allclose(pdb, model.transform(x.astype(np.float16)), atol=1e-6)


def test_model_roundtrip_and_no_pickle(rng, tmp_path):
    model = fit_pca(_data(rng), 5)
    path = model.save(tmp_path / "m.npz")
    back = PCAModel.load(path)
    assert np.array_equal(back.components, model.components) and back.n_fit == model.n_fit
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) >= {"mean", "components"}
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(FormatError):
        PCAModel.load(tmp_path / "bad.npz")


def test_bad_inputs(rng):
    x = _data(rng, n=10, d=24)
    with pytest.raises(UsageError, match="at least as many rows as dimensions"):
        fit_pca(x, 4)
    model = fit_pca(_data(rng), 4)
    with pytest.raises(UsageError, match="24-dimensional"):
        model.transform(np.ones((3, 30)))
    with pytest.raises(UsageError, match="--dims"):
        fit_pca(_data(rng), 25)
