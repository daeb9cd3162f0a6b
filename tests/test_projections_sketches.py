"""Learned sketches: packing, encoding rule, fitting, task B file, bad input."""

import h5py
import numpy as np
import pytest

from laionknn.errors import UsageError
from laionknn.projections import apply as pa
from laionknn.projections import sketches
from laionknn.projections.sketches import SketchModel, fit_sketch, pack_bits, unpack_bits


def _clustered(rng, n=1200, d=64, clusters=12):
    centres = rng.standard_normal((clusters, d)) * 2 + 1.0
    labels = rng.integers(0, clusters, n)
    return centres[labels] + rng.standard_normal((n, d)) * 0.7, labels


def test_pack_bits_layout(rng):
    bits = rng.random((5, 192)) < 0.5
    words = pack_bits(bits)
    assert words.shape == (5, 3) and words.dtype == np.uint64
    for r in range(5):
        for b in range(192):
            assert ((int(words[r, b // 64]) >> (b % 64)) & 1) == int(bits[r, b])
    assert np.array_equal(unpack_bits(words), bits)


def test_encode_rule(rng):
    d, b = 16, 128
    model = SketchModel("srp", mean=rng.standard_normal(d) * 0.1, W=rng.standard_normal((b, d)).astype(np.float32),
                        offset=rng.standard_normal(b).astype(np.float32) * 0.01)
    x = rng.standard_normal((9, d)) * 3
    x_before = x.copy()
    got = model.encode(x)
    assert np.array_equal(x, x_before)                      # caller's array untouched
    xn = x / np.linalg.norm(x, axis=1, keepdims=True) - model.mean
    proj = xn @ model.W.T.astype(np.float64)
    for r in range(9):
        for j in range(b):
            if abs(proj[r, j] - model.offset[j]) < 1e-5:
                continue                                    # float32 rounding may decide
            bit = (int(got[r, j // 64]) >> (j % 64)) & 1
            assert bit == int(proj[r, j] > model.offset[j])


@pytest.mark.parametrize("method", ["srp", "itq", "hiob", "cfsrp"])
@pytest.mark.parametrize("bits", [64, 128])
def test_fit_finds_neighbours(rng, method, bits):
    x, labels = _clustered(rng)
    model = fit_sketch(x, bits, method, fit_rows=None, iterations=10)
    codes = model.encode(x)
    assert codes.shape == (len(x), bits // 64)
    from laionknn.projections.kernels import hamming_knn

    res = hamming_knn(codes, codes[:100], 2)
    same = labels[res.ids[:, 1]] == labels[:100]
    assert same.mean() > 0.9


def test_itq_rows_orthonormal_and_more_bits_than_dims(rng):
    x, _ = _clustered(rng, d=48)
    m = fit_sketch(x, 64, "itq", fit_rows=None, iterations=5)    # 64 bits > 48 dims: frame
    assert m.W.shape == (64, 48)
    assert np.allclose(m.W.T @ m.W, np.eye(48), atol=1e-4)      # orthonormal frame columns
    y, _ = _clustered(rng, d=128)
    m2 = fit_sketch(y, 64, "itq", fit_rows=None, iterations=5)
    assert np.allclose(m2.W @ m2.W.T, np.eye(64), atol=1e-4)     # rotation of the top 64 axes


@pytest.mark.parametrize("method", ["srp", "hiob", "cfsrp"])
def test_uncentred_methods_pass_through_origin(rng, method):
    x, _ = _clustered(rng)
    m = fit_sketch(x, 128, method, fit_rows=None, iterations=4)
    assert not m.mean.any() and not m.offset.any()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert np.array_equal(m.encode(x), pack_bits(xn.astype(np.float32) @ m.W.T > 0))
    assert np.array_equal(m.encode(-x), pack_bits(xn.astype(np.float32) @ m.W.T < 0))   # antipodal: all bits flip


def test_cfsrp_is_a_coloured_tight_frame(rng):
    x, _ = _clustered(rng, n=900, d=96)
    gamma = -0.4
    m = fit_sketch(x, 64, "cfsrp", fit_rows=None, gamma=gamma)
    assert np.allclose(np.linalg.norm(m.W, axis=1), 1.0, atol=1e-5)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    evals, evecs = np.linalg.eigh(xn.T @ xn / len(xn))
    uncolour = (evecs * evals ** (-gamma / 2)) @ evecs.T       # M^(-γ/2) undoes the colouring
    f = m.W.astype(np.float64) @ uncolour
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    assert np.allclose(f @ f.T, np.eye(64), atol=1e-3)         # 64 <= 96: orthonormal frame rows
    m2 = fit_sketch(x, 128, "cfsrp", fit_rows=None, gamma=0.0)  # 128 > 96: a tight frame, not a basis
    g = m2.W.astype(np.float64)
    frame = g.T @ g
    assert np.allclose(frame, frame.trace() / 96 * np.eye(96), atol=0.15 * frame.trace() / 96)


@pytest.mark.parametrize("method", ["cfsrp", "hiob"])
def test_deterministic_for_a_seed(rng, method):
    x, _ = _clustered(rng, n=400)
    a = fit_sketch(x, 128, method, seed=3, iterations=3)
    b = fit_sketch(x, 128, method, seed=3, iterations=3)
    c = fit_sketch(x, 128, method, seed=4, iterations=3)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.encode(x), b.encode(x))
    assert not np.array_equal(a.W, c.W)


def test_cfsrp_beats_srp_on_synthetic_clip():
    from laionknn.projections.kernels import hamming_knn
    from laionknn.synthetic import generate_database, generate_queries

    db = generate_database(6000, seed=0).astype(np.float64)
    q = generate_queries(300, seed=0).astype(np.float64)
    dbn = db / np.linalg.norm(db, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gold = np.argsort(-(qn @ dbn.T), axis=1, kind="stable")[:, :10]

    def recall(method, seed):
        m = fit_sketch(db, 512, method, fit_rows=None, seed=seed)
        ids = hamming_knn(m.encode(db), m.encode(q), 10).ids
        return np.mean([len(set(a) & set(b)) for a, b in zip(ids, gold)]) / 10

    srp = np.mean([recall("srp", s) for s in range(3)])
    cf = np.mean([recall("cfsrp", s) for s in range(3)])
    assert cf > srp + 0.01, (cf, srp)


def test_bad_inputs(rng):
    x, _ = _clustered(rng, n=200)
    for bad in (0, 100, 1000):
        with pytest.raises(UsageError, match="multiple of 64"):
            fit_sketch(x, bad, "srp")
    with pytest.raises(UsageError, match="unknown sketch method"):
        fit_sketch(x, 64, "nope")
    with pytest.raises(UsageError, match="at least 64 rows"):
        fit_sketch(x[:30], 64, "itq")
    m = fit_sketch(x, 64, "srp")
    with pytest.raises(UsageError, match="64-dimensional"):
        m.encode(np.ones((2, 10)))


def test_model_roundtrip(rng, tmp_path):
    x, _ = _clustered(rng, n=300)
    m = fit_sketch(x, 64, "itq", iterations=3)
    back = SketchModel.load(m.save(tmp_path / "s.npz"))
    assert back.method == "itq" and np.array_equal(back.encode(x), m.encode(x))


def test_task_b_file(rng, tmp_path):
    db = rng.integers(0, 2**63, size=(50, 16), dtype=np.uint64)
    q = db[:4].copy()
    out = pa.write_task_b(tmp_path / "b.h5", db, q, 5, algo="sketch-hiob", size="50", params="bits=1024")
    with h5py.File(out) as f:
        assert np.array_equal(f["db"][()], db) and np.array_equal(f["queries"][()], q)
        assert f["knns"].dtype == np.int32 and f["knns"].shape == (4, 5)
        assert f["knns"][:, 0].tolist() == [1, 2, 3, 4]            # 1-based: each query finds itself
        assert (f["dists"][:, 0] == 0).all()
        assert f.attrs["data"] == "hammingv2"
