"""BinWalk: the vectorised encoder against a plain per-vector loop written from the documented rule."""

import math

import numpy as np
import pytest

from laionknn.errors import UsageError
from laionknn.io import read_vectors, write_vectors
from laionknn.projections import apply as pa
from laionknn.projections import binwalk


def _julia_normalize_f16(row):
    """Julia normalize! on a Float16 vector: Float16 squares summed in Float64, norm rounded to
    Float16, Float16 reciprocal, Float16 products."""
    x = [np.float16(a) for a in row]
    s = math.fsum(float(np.float16(a * a)) for a in x)
    nrm = np.float16(math.sqrt(s))
    inv = np.float16(np.float16(1) / nrm)
    return np.array([np.float16(a * inv) for a in x], dtype=np.float16)


def _loop_encode(row, model):
    """Per-vector loop: v[j] = 1 - <refs[pool[i, j]], x> in float32; bit j set when v[j] < v[(j+1) % 64]."""
    if row.dtype == np.float16:
        x = _julia_normalize_f16(row).astype(np.float32)
    else:
        nrm = np.float32(math.sqrt(math.fsum(float(a) * float(a) for a in row)))
        x = row.astype(np.float32) * (np.float32(1) / nrm)
    words, margins = [], []
    for i in range(16):
        v = [np.float32(1) - np.float32(np.dot(model.refs[model.pool[i, j]].astype(np.float64), x.astype(np.float64)))
             for j in range(64)]
        w = 0
        for j in range(64):
            nxt = v[(j + 1) % 64]
            if v[j] < nxt:
                w |= 1 << j
            margins.append(abs(float(v[j]) - float(nxt)))
        words.append(w)
    return np.array(words, dtype=np.uint64), np.array(margins).reshape(16, 64)


def _bits(words):
    return np.array([[(int(w) >> j) & 1 for j in range(64)] for w in words])


@pytest.fixture(scope="module")
def model():
    return binwalk.load_model()


def test_model_shape(model):
    assert model.refs.shape == (1024, 768) and model.refs.dtype == np.float32
    assert model.pool.shape == (16, 64) and model.pool.min() >= 0 and model.pool.max() < 1024
    assert np.allclose(np.linalg.norm(model.refs, axis=1), 1, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_vectorised_encoder_matches_loop(model, dtype):
    rng = np.random.default_rng(7)
    # LAION-like rows: real vectors plus noise, at arbitrary norms (the encoder normalises)
    x = model.refs[rng.integers(0, 1024, 12)] + rng.standard_normal((12, 768)).astype(np.float32) * 0.03
    x = (x * rng.uniform(0.5, 2.0, (12, 1))).astype(dtype)
    got = binwalk.encode(x, model)
    assert got.shape == (12, 16) and got.dtype == np.uint64
    for r in range(len(x)):
        want, margins = _loop_encode(x[r], model)
        diff = _bits(got[r]) != _bits(want)
        # bits may only differ where the two float32 walk values are within an ulp or two (summation order)
        assert (margins[diff] < 5e-7).all()
        assert diff.sum() <= 2


def test_float16_normalisation_is_julias(model):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5, 768)) * 0.05).astype(np.float16)
    got = binwalk.normalize_float16_julia(x)
    for r in range(5):
        assert np.array_equal(got[r], _julia_normalize_f16(x[r]))


def test_bit_order_with_handmade_model():
    # refs e_0..e_63 in 64-d; walk i visits them in order, so v[j] = 1 - x[j]
    refs = np.eye(64, dtype=np.float32)
    pool = np.tile(np.arange(64), (16, 1))
    model = binwalk.BinWalkModel(refs=refs, pool=pool)
    x = np.zeros((1, 64), np.float32)
    x[0, 1] = 1.0           # v[1] = 0, every other v = 1: v[0] > v[1] (bit 0 clear), v[1] < v[2] (bit 1 set)
    w = binwalk.encode(x, model)
    assert (w == np.uint64(1 << 1)).all()
    x = np.zeros((1, 64), np.float32)
    x[0, 63] = 1.0          # v[63] = 0 < v[0] = 1: the circular bit 63 is set
    assert (binwalk.encode(x, model) == np.uint64(1 << 63)).all()


def test_file_roundtrip_and_errors(model, tmp_path):
    rng = np.random.default_rng(3)
    x = (model.refs[:40] + rng.standard_normal((40, 768)).astype(np.float32) * 0.02).astype(np.float16)
    path = write_vectors(tmp_path / "t-clip768v2-n=40.h5", x, "emb")
    out = pa.binwalk_file(path, tmp_path, block_rows=7)
    assert out.name == "t-hammingv2-n=40.h5"
    assert np.array_equal(read_vectors(out), binwalk.encode(x, model))
    with pytest.raises(UsageError, match="768-dimensional"):
        binwalk.encode(np.ones((2, 32), np.float32), model)
