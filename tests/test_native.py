"""The compiled core (laionknn._native) and its numpy fallback against float64 oracles."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from laionknn import native

HAVE_NATIVE = importlib.util.find_spec("laionknn._native") is not None


@pytest.fixture
def mode(native_mode):
    """Compiled module or numpy fallback: the shared ``native_mode`` fixture (conftest.py)."""
    return native_mode


def oracle_bf16(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even bf16 chosen by float64 distances between the two neighbouring bf16 values
    (truncation and the next value away from zero): an independent formulation of the rounding."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32)
    lo = (u >> 16).astype(np.uint32)
    hi = lo + 1
    v = np.asarray(x, dtype=np.float64)
    vlo = np.abs((lo << 16).view(np.float32).astype(np.float64))
    vhi = np.abs((hi << 16).astype(np.uint32).view(np.float32).astype(np.float64))
    a = np.abs(v)
    pick_hi = (a - vlo > vhi - a) | ((a - vlo == vhi - a) & (lo % 2 == 1))
    return np.where(pick_hi, hi, lo).astype(np.uint16)


def test_to_bf16_rounds_to_nearest_even(mode):
    one = np.float32(1.0)
    vals = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 3 * 2 ** -8), 0.0, -0.0,
                     np.inf, -np.inf], dtype=np.float32)
    got = native.to_bf16(vals)
    # 1 + 2^-8 is half-way between 1 (even) and 1 + 2^-7 (odd): stays 1; 1 + 3 * 2^-8 goes up to the even 1 + 2^-6
    assert got.tolist() == [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xBF82, 0x0000, 0x8000, 0x7F80, 0xFF80]
    assert native.to_bf16(np.float32(np.finfo(np.float32).max)).item() == 0x7F80  # rounds past the bf16 maximum
    assert np.isnan(native.bf16_to_f32(native.to_bf16(np.array([np.nan], np.float32))))[0]
    assert one == native.bf16_to_f32(np.uint16(0x3F80))
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(4096) * np.exp(rng.uniform(-30, 30, 4096))).astype(np.float32)
    np.testing.assert_array_equal(native.to_bf16(x), oracle_bf16(x))
    tiny = np.array([1e-40, -1e-40], dtype=np.float32)  # float32 subnormals
    assert native.to_bf16(tiny, ftz=True).tolist() == [0x0000, 0x8000]
    np.testing.assert_array_equal(native.to_bf16(tiny), oracle_bf16(tiny))


def test_prepared_rows_and_radii_match_float64(mode):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((37, 50)).astype(np.float32)
    x[5] = 0
    x[6, :3] = [65504.0, -65504.0, 3e-5]  # float16 extremes (rows are float16 in the data files)
    x16 = x.astype(np.float16)
    ref = oracle_bf16(x16.astype(np.float32)).astype(np.uint16)
    xh = native.bf16_to_f32(ref).astype(np.float64)
    for src in (x16, x16.astype(np.float32), x16.astype(np.float64)):
        p = native.pack_rows(src)
        np.testing.assert_array_equal(native.to_bf16(p.rows_f32()), ref)
        np.testing.assert_allclose(p.nhat, np.linalg.norm(xh, axis=1), rtol=1e-14)
        np.testing.assert_allclose(p.nres, np.linalg.norm(x16.astype(np.float64) - xh, axis=1), rtol=1e-14)
        np.testing.assert_allclose(p.norm, np.linalg.norm(x16.astype(np.float64), axis=1), rtol=1e-14)
        q = native.prepare_queries(src)
        assert q.a.shape == (37, 64) and not q.a[:, 50:].any()
        np.testing.assert_array_equal(q.a[:, :50], ref)
        np.testing.assert_array_equal(q.nres, p.nres)
    assert p.nres[5] == 0 and p.nhat[5] == 0
    # residuals of float64 queries are taken from the float64 values, not from a float32 copy
    q64 = np.full((1, 32), 1 / 3)
    r = native.prepare_queries(q64)
    np.testing.assert_allclose(r.nres[0], np.sqrt(32) * abs(1 / 3 - float(native.bf16_to_f32(r.a[0, 0]))), rtol=1e-12)


def _kernels():
    names = ["numpy"]
    if HAVE_NATIVE:
        native.reset()
        names = native.available_kernels() + ["numpy"]
    return names


@pytest.mark.parametrize("name", _kernels())
def test_gemm_bf16_matches_float64_within_bound(name, monkeypatch):
    monkeypatch.delenv(native.OFF_ENV, raising=False)
    native.reset()
    rng = np.random.default_rng(3)
    m, n, d = 45, 77, 100
    a = rng.standard_normal((m, d)).astype(np.float32) * rng.uniform(0.1, 10, (m, 1)).astype(np.float32)
    b = rng.standard_normal((n, d)).astype(np.float32)
    q, p = native.prepare_queries(a), native.pack_rows(b)
    ah = native.bf16_to_f32(native.to_bf16(a)).astype(np.float64)
    bh = native.bf16_to_f32(native.to_bf16(b)).astype(np.float64)
    exact = ah @ bh.T
    got = native.gemm_bf16(q.a, p, kernel_name=name, threads=2).astype(np.float64)
    assert np.all(np.abs(got - exact) <= native.gemm_error_bound(ah, bh))
    # a column range starting at a multiple of 32, into a wider output, one thread: the same sums (the
    # compiled kernels sum each entry in one fixed order whatever the threads and the range)
    out = np.full((m, 50), -7.0, dtype=np.float32)
    native.gemm_bf16(q.a, p, out, col0=32, ncols=40, threads=1, kernel_name=name)
    if name == "numpy":
        assert np.all(np.abs(out[:, :40] - exact[:, 32:72]) <= native.gemm_error_bound(ah, bh)[:, 32:72])
    else:
        np.testing.assert_array_equal(out[:, :40], got[:, 32:72].astype(np.float32))
    assert (out[:, 40:] == -7).all()
    # small integers: every partial sum is exact in float32, so the product must equal float64 exactly
    ia = rng.integers(-8, 9, (33, 70)).astype(np.float32)
    ib = rng.integers(-8, 9, (65, 70)).astype(np.float32)
    ref = ia.astype(np.float64) @ ib.astype(np.float64).T
    res = native.gemm_bf16(native.prepare_queries(ia).a, native.pack_rows(ib), kernel_name=name)
    np.testing.assert_array_equal(res, ref)
    native.reset()


def test_gemm_bf16_rejects_bad_ranges(mode):
    p = native.pack_rows(np.ones((40, 32), np.float32))
    a = native.prepare_queries(np.ones((2, 32), np.float32)).a
    with pytest.raises(ValueError, match="multiple of 32"):
        native.gemm_bf16(a, p, col0=16, ncols=8)
    with pytest.raises(ValueError, match="must be"):
        native.gemm_bf16(np.zeros((2, 64), np.uint16), p)


def test_kernel_choice_and_fallback(mode, monkeypatch, caplog):
    if mode == "numpy":
        assert native.kernel() == "numpy" and native.available_kernels() == ["numpy"]
        assert native.features() == {"native": False, "compiled": []}
        return
    f = native.features()
    assert f["native"] and "portable" in f["compiled"]
    assert native.available_kernels()[-1] == "portable"
    if "amx" in native.available_kernels():
        assert f["amx_bf16"] and f["amx_granted"]
    if "avx512bf16" in native.available_kernels():
        assert f["avx512bf16"] and f["os_avx512"]
    monkeypatch.setenv(native.KERNEL_ENV, "portable")
    native.reset()
    assert native.kernel() == "portable"
    if "amx" not in native.available_kernels():
        monkeypatch.setenv(native.KERNEL_ENV, "amx")
        native.reset()
        with caplog.at_level("WARNING"):
            assert native.kernel() == native.available_kernels()[0]
        assert "not available" in caplog.text
    assert native.self_check("portable")


# ---------------------------------------------------------------- int16 quantisation and GEMM
def test_quantize_rows_int16_definition(mode):
    """X = rint(x / 2^e), e the smallest exponent with max|x_t| <= 32767 2^e and |x| <= 46000 2^e; norms
    of x, of 2^e X and of the residual in float64; zero rows stay zero; packed and row-major agree."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((37, 50)) * rng.uniform(1e-3, 1e3, (37, 1))).astype(np.float16)
    x[5] = 0
    x[6, 3] = np.float16(65504)
    for src in (x, x.astype(np.float32), x.astype(np.float64) * (1 + 1e-9)):
        v = np.asarray(src, dtype=np.float64)
        p, q = native.quantize_rows(src), native.quantize_queries(src)
        X = p.rows_i16().astype(np.float64)
        np.testing.assert_array_equal(q.a[:, :50], p.rows_i16())
        assert q.a.shape == (37, 64) and not q.a[:, 50:].any()
        np.testing.assert_array_equal(q.e, p.e)
        e = p.e.astype(np.float64)
        mx, nrm = np.abs(v).max(axis=1), np.linalg.norm(v, axis=1)
        live = mx > 0
        assert np.all(mx[live] <= 32767 * 2 ** e[live]) and np.all(nrm[live] <= 46000 * 2 ** e[live])
        assert np.all((mx[live] > 32767 * 2 ** (e[live] - 1)) | (nrm[live] > 46000 * 2 ** (e[live] - 1)))
        np.testing.assert_array_equal(X[live], np.rint(v[live] / 2 ** e[live, None]))
        assert not X[~live].any() and np.all(np.linalg.norm(X, axis=1) < 46341)
        np.testing.assert_array_equal(p.scale, (2.0 ** e).astype(np.float32))
        xh = X * 2 ** e[:, None]
        np.testing.assert_allclose(p.norm, nrm, rtol=1e-14)
        np.testing.assert_allclose(p.nhat, np.linalg.norm(xh, axis=1), rtol=1e-14)
        np.testing.assert_allclose(p.nres, np.linalg.norm(v - xh, axis=1), rtol=1e-12, atol=0)
    bad = np.ones((3, 32), np.float32)
    bad[1, 4] = np.nan
    p = native.quantize_rows(bad)
    assert not np.isfinite(p.norm[1]) and np.isfinite(p.norm[[0, 2]]).all()


def _i16_kernels():
    names = ["numpy"]
    if HAVE_NATIVE:
        native.reset()
        names = native.int16_kernels() + ["numpy"]
    return names


@pytest.mark.parametrize("name", _i16_kernels())
def test_gemm_i16_is_the_rounded_exact_product(name, monkeypatch):
    """Every kernel returns float32(Q.X) * 2^e_q * 2^e_x bit for bit (the exact integer product from
    int64 arithmetic here), for ragged shapes, column ranges, 1 and 2 threads."""
    monkeypatch.delenv(native.OFF_ENV, raising=False)
    native.reset()
    rng = np.random.default_rng(8)
    m, n, d = 45, 77, 100
    a = rng.standard_normal((m, d)).astype(np.float32) * rng.uniform(0.1, 10, (m, 1)).astype(np.float32)
    b = rng.standard_normal((n, d)).astype(np.float32) * rng.uniform(1e-3, 1e3, (n, 1)).astype(np.float32)
    q, p = native.quantize_queries(a), native.quantize_rows(b)
    exact = q.a[:, :d].astype(np.int64) @ p.rows_i16().astype(np.int64).T
    assert np.abs(exact).max() < 2 ** 31
    ref = (exact.astype(np.float32) * p.scale[None, :]) * q.scale[:, None]
    got = native.gemm_i16(q, p, kernel_name=name, threads=2)
    np.testing.assert_array_equal(got, ref)
    out = np.full((20, 50), -7.0, dtype=np.float32)
    native.gemm_i16(q, p, out, rows=slice(5, 25), col0=32, ncols=40, threads=1, kernel_name=name)
    np.testing.assert_array_equal(out[:, :40], ref[5:25, 32:72])
    assert (out[:, 40:] == -7).all()
    # the fused row maxima: each row's maximum over every 32 columns of the tile (last group ragged)
    cm = np.full((20, 3), 5.0, dtype=np.float32)
    native.gemm_i16(q, p, out, rows=slice(5, 25), col0=32, ncols=40, threads=2, kernel_name=name, cmax=cm)
    np.testing.assert_array_equal(cm[:, 0], ref[5:25, 32:64].max(axis=1))
    np.testing.assert_array_equal(cm[:, 1], ref[5:25, 64:72].max(axis=1))
    assert (cm[:, 2] == 5).all()
    # the certified bound: |s - q.x| <= u |q~||x~| + |q~||dx| + |dq||x| (float64 oracle)
    err = np.abs(got.astype(np.float64) - a.astype(np.float64) @ b.astype(np.float64).T)
    bound = 2.0 ** -24 * np.outer(q.nhat, p.nhat) + np.outer(q.nhat, p.nres) + np.outer(q.nres, p.norm)
    assert np.all(err <= bound)
    native.reset()


def test_gemm_i16_rejects_bad_ranges(mode):
    p = native.quantize_rows(np.ones((40, 32), np.float32))
    q = native.quantize_queries(np.ones((2, 32), np.float32))
    with pytest.raises(ValueError, match="multiple of 32"):
        native.gemm_i16(q, p, col0=16, ncols=8)
    with pytest.raises(ValueError, match="must be"):
        native.gemm_i16(native.quantize_queries(np.ones((2, 64), np.float32)), p)
