"""The certified bf16 and int16 filters of the exact engine: its bound against float64 over 10^8 LAION-like pairs,
float64-identical answers on random and adversarial data (compiled kernel and numpy fallback), the
hand-over to float32, and the choice of GEMM (faked threadpoolctl reports)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_exact_knn import check, laion_like

from laionknn import native
from laionknn.exact import blas
from laionknn.exact.engine import R_TILE, _Bf16Filter, _metric_columns
from laionknn.exact.kernels import norms64
from laionknn.types import Metric

U = 2.0 ** -24


@pytest.fixture
def mode(native_mode):
    """Compiled module or numpy fallback: the shared ``native_mode`` fixture (conftest.py)."""
    return native_mode


def bf16_bound(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """docs/exact.md: |fl(q^.x^) - q.x| <= gamma'_d |q^||x^| + |q^||dx| + |dq||x| + 3 d 2^-126, from
    float64 copies of the bf16 images (rounded here with numpy, independently of the library)."""
    def parts(v):
        v = np.asarray(v, dtype=np.float64)
        u = v.astype(np.float32).view(np.uint32).astype(np.uint64)
        h = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32).astype(np.float64)
        return h, np.linalg.norm(h, axis=1), np.linalg.norm(v - h, axis=1), np.linalg.norm(v, axis=1)

    d = q.shape[1]
    qh, nqh, nqr, _ = parts(q)
    xh, nxh, nxr, nx = parts(x)
    g = d * U / (1 - d * U)
    return qh, xh, g * np.outer(nqh, nxh) + np.outer(nqh, nxr) + np.outer(nqr, nx) + 3 * d * 2.0 ** -126


def test_bound_holds_over_1e8_laion_like_pairs(monkeypatch):
    """10^4 queries x 10^4 rows (dim 768, float16 rows, float32 queries): every float32 sum of the bf16
    products lies within the bound of the exact float64 dot product."""
    monkeypatch.delenv(native.OFF_ENV, raising=False)
    native.reset()
    rng = np.random.default_rng(7)
    q = laion_like(rng, 10_000, 768, np.float32)
    x = laion_like(rng, 10_000, 768, np.float16)
    qa, p = native.prepare_queries(q), native.pack_rows(x)
    worst, widest = 0.0, 0.0
    for c0 in range(0, 10_000, 2048):
        c1 = min(10_000, c0 + 2048)
        s = native.gemm_bf16(qa.a, p, col0=c0, ncols=c1 - c0, kernel_name="numpy").astype(np.float64)
        _, _, bound = bf16_bound(q, x[c0:c1])
        err = np.abs(s - q.astype(np.float64) @ x[c0:c1].astype(np.float64).T)
        assert np.all(err <= bound)
        worst = max(worst, float((err / bound).max()))
        widest = max(widest, float(bound.max()))
    assert 0 < worst < 1
    assert widest < 8e-3  # unit vectors: cosine units; bf16's 2^-9 relative rounding, twice, plus float32 sums
    # the compiled kernel (whichever runs here) on a corner of the same pairs, and the engine's columns
    # dominate the bound (cosine: key = score / |x|, error g[q] w[j] + h[j] + c[q])
    s = native.gemm_bf16(qa.a[:1000], p, ncols=1024).astype(np.float64)
    _, _, bound = bf16_bound(q[:1000], x[:1024])
    assert np.all(np.abs(s - q[:1000].astype(np.float64) @ x[:1024].astype(np.float64).T) <= bound)
    xb = x[:R_TILE].astype(np.float32)
    nx = norms64(xb)
    a, _, _, h = _metric_columns(Metric.COSINE, nx)
    bf = _Bf16Filter(q[:1000], 768, 2)
    np.testing.assert_allclose(bf.pack(x[:R_TILE]), nx, rtol=1e-13)
    w, h2, c2 = bf.columns(a, nx, h, np.zeros(1000))
    engine = bf.g[:, None] * w[None, :] + h2[None, :] + c2[:, None]
    assert np.all(engine >= bound * a[None, :])
    native.reset()


def int16_parts(v: np.ndarray):
    """Independent int16 images: e the smallest integer with max|v_t| <= 32767 2^e and |v| <= 46000 2^e
    (searched upwards from far below), X = rint(v / 2^e); returns (2^e X, |2^e X|, |v - 2^e X|, |v|)."""
    v = np.asarray(v, dtype=np.float64)
    mx, nrm = np.abs(v).max(axis=1), np.linalg.norm(v, axis=1)
    e = np.full(v.shape[0], -80.0)
    while True:
        low = (mx > 32767 * 2 ** e) | (nrm > 46000 * 2 ** e)
        if not low.any():
            break
        e[low] += 1
    xh = np.rint(v / 2 ** e[:, None]) * 2 ** e[:, None]
    return xh, np.linalg.norm(xh, axis=1), np.linalg.norm(v - xh, axis=1), nrm


def test_int16_bound_holds_over_1e8_laion_like_pairs(monkeypatch):
    """docs/exact.md: |s - q.x| <= u |q~||x~| + |q~||dx| + |dq||x| for the int16 filter's score s, over
    10^4 x 10^4 LAION-like pairs (dim 768), with images computed here independently of the library."""
    monkeypatch.delenv(native.OFF_ENV, raising=False)
    native.reset()
    rng = np.random.default_rng(7)
    q = laion_like(rng, 10_000, 768, np.float32)
    x = laion_like(rng, 10_000, 768, np.float16)
    qi, p = native.quantize_queries(q), native.quantize_rows(x)
    qh, nqh, nqr, _ = int16_parts(q)
    worst, widest, total = 0.0, 0.0, 0.0
    for c0 in range(0, 10_000, 2048):
        c1 = min(10_000, c0 + 2048)
        s = native.gemm_i16(qi, p, col0=c0, ncols=c1 - c0, kernel_name="numpy").astype(np.float64)
        xh, nxh, nxr, nx = int16_parts(x[c0:c1])
        np.testing.assert_array_equal(p.nhat[c0:c1] > 0, nxh > 0)
        bound = U * np.outer(nqh, nxh) + np.outer(nqh, nxr) + np.outer(nqr, nx)
        err = np.abs(s - q.astype(np.float64) @ x[c0:c1].astype(np.float64).T)
        assert np.all(err <= bound)
        worst = max(worst, float((err / bound).max()))
        widest = max(widest, float(bound.max()))
        total += float(bound.sum())
    assert 0 < worst < 1
    assert widest < 1e-3  # unit vectors: about 4.6 times tighter than bf16's
    print(f"int16 bound: mean {total / 1e8:.3g}, max {widest:.3g}; worst error / bound {worst:.3g}")
    # the compiled kernel (whichever runs here) on a corner of the same pairs gives the same scores
    s = native.gemm_i16(qi, p, rows=slice(0, 1000), ncols=1024)
    np.testing.assert_array_equal(s, native.gemm_i16(qi, p, rows=slice(0, 1000), ncols=1024, kernel_name="numpy"))
    native.reset()


def _kernel_of(narrow: str, mode: str) -> str:
    if mode == "numpy":
        return "numpy"
    return native.kernel() if narrow == "bf16" else native.int16_kernel()


@pytest.mark.parametrize("narrow", ["bf16", "int16"])
@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
def test_bf16_filter_matches_float64_on_random_rows(metric, narrow, mode):
    rng = np.random.default_rng(10)
    X = laion_like(rng, 1200, 48)
    Q = laion_like(rng, 13, 48, np.float32)
    for block_rows, query_batch in ((1200, 13), (257, 7), (1100, 5)):
        res = check(X, Q, 10, metric, blas=narrow, block_rows=block_rows, query_batch=query_batch)
        assert res.attrs["filter"] == narrow
    assert res.attrs["gemm"].startswith(f"{narrow} {_kernel_of(narrow, mode)}")


@pytest.mark.parametrize("narrow", ["bf16", "int16"])
@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
def test_bf16_filter_adversarial_rows(metric, narrow, mode):
    rng = np.random.default_rng(11)
    n, dim = 2100, 32
    X = rng.standard_normal((n, dim)).astype(np.float16)
    Q = rng.standard_normal((6, dim)).astype(np.float32)
    X[[5, 1400, 2099, 123]] = X[77]  # exact duplicates, across tiles and blocks
    Q[0] = X[77]
    big = np.sign(rng.standard_normal((4, dim))).astype(np.float16) * np.float16(65504)  # largest float16
    X[[10, 1030, 2050, 2051]] = big
    Q[2] = big[0].astype(np.float32) / 65504
    base = Q[1] / np.linalg.norm(Q[1]) * 3  # near-ties below bf16's (and float32's) resolution
    j = int(np.argmax(np.abs(Q[1])))
    Xf = X.astype(np.float32)
    for t, row in enumerate(range(1000, 1040)):
        Xf[row] = base
        Xf[row, j] += np.float32((t % 7) * 1.2e-7)
    Xf[1040:1045] = Xf[1003]
    for k in (1, 5, 30):
        for block_rows in (2100, 1024, 700):
            res = check(Xf, Q, k, metric, blas=narrow, block_rows=block_rows, query_batch=4)
            assert res.attrs["filter"] == narrow


@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
def test_int16_filter_ties_duplicates_and_scales(metric, mode):
    """Rows whose int16 images tie exactly (multiples of one row by powers of two: same X, exponents one
    apart), rows differing below the int16 step, duplicates across tiles, and rows of very different
    norms (exponents far apart) in one block: the float64 answer."""
    rng = np.random.default_rng(21)
    n, dim = 2300, 40
    X = rng.standard_normal((n, dim)).astype(np.float32)
    X[[3, 1500, 2299]] = X[8]
    for t, row in enumerate(range(100, 116)):
        X[row] = X[9] * np.float32(2.0 ** (t % 5 - 2))  # same int16 image, scales 2^-2 .. 2^2
    step = np.abs(X[10]).max() / 32767
    for t, row in enumerate(range(1020, 1036)):
        X[row] = X[10]
        X[row, t % dim] += np.float32(step * (t % 3) * 0.25)  # below the int16 step
    X[200] *= np.float32(1e-12)
    X[201] *= np.float32(1e9)
    Q = rng.standard_normal((5, dim)).astype(np.float32)
    Q[0], Q[1], Q[2] = X[8], X[9], X[10]
    for k in (1, 7, 40):
        for block_rows in (2300, 1024, 600):
            res = check(X, Q, k, metric, blas="int16", block_rows=block_rows, query_batch=3)
            assert res.attrs["filter"] == "int16"


def test_int16_filter_leaves_out_of_range_blocks_to_float32(mode):
    rng = np.random.default_rng(22)
    X = rng.standard_normal((1500, 32)).astype(np.float64)
    X[1200] *= 1e-30  # exponent below the int16 range: that block goes to the float32 filter
    Q = rng.standard_normal((4, 32)).astype(np.float64)
    res = check(X, Q, 5, "dot", blas="int16", block_rows=1024)
    assert res.attrs["filter"] == "int16"
    Q[1] *= 1e30  # queries out of range: float32 throughout
    res = check(X, Q, 5, "dot", blas="int16", block_rows=1024)
    assert res.attrs["filter"] == "float32"


@pytest.mark.parametrize("narrow", ["bf16", "int16"])
def test_bf16_filter_hands_over_to_float32_when_intervals_overlap(narrow, mode):
    rng = np.random.default_rng(12)
    base = rng.standard_normal(64)
    spread = 1e-4 if narrow == "bf16" else 1e-6  # all within the filter's error
    X = (base + spread * rng.standard_normal((3000, 64))).astype(np.float32)
    Q = (base + 10 * spread * rng.standard_normal((3, 64))).astype(np.float32)
    res = check(X, Q, 5, "cosine", blas=narrow, block_rows=1024)
    assert res.attrs["filter"] == f"{narrow} to row 1024, then float32"
    assert "then numpy OpenBLAS" in res.attrs["gemm"] or "then numpy BLAS" in res.attrs["gemm"]


def test_auto_picks_a_narrow_filter_only_with_a_fast_kernel(monkeypatch):
    monkeypatch.delenv("LAIONKNN_BLAS", raising=False)
    for bf, i16, expect in (("avx512bf16", "portable", "bf16"), ("amx", "avx512vnni", "bf16"),
                            ("avx512bf16", "avx512vnni", "int16"), ("portable", "avx512vnni", "int16"),
                            ("portable", "avx2", "int16"), ("portable", "portable", None), ("numpy", "numpy", None)):
        monkeypatch.setattr(native, "kernel", lambda bf=bf: bf)
        monkeypatch.setattr(native, "int16_kernel", lambda i16=i16: i16)
        got = blas.resolve_backend("auto")
        assert (got if got in ("bf16", "int16") else None) == expect, (bf, i16)
    assert blas.resolve_backend("bf16") == "bf16"
    assert blas.resolve_backend("int16") == "int16"


def _fake_report(monkeypatch, faiss_core: str, numpy_core: str):
    faiss = pytest.importorskip("faiss")
    if blas._faiss_sgemm() is None:
        pytest.skip("faiss-cpu's OpenBLAS cannot be loaded here")
    libs = os.path.join(os.path.dirname(os.path.dirname(faiss.__file__)), "faiss_cpu.libs")
    report = [
        {"internal_api": "openblas", "user_api": "blas", "version": "0.3.15", "architecture": faiss_core,
         "filepath": os.path.join(libs, "libopenblas-fake.so")},
        {"internal_api": "openblas", "user_api": "blas", "version": "0.3.31", "architecture": numpy_core,
         "filepath": "/venv/site-packages/numpy.libs/libscipy_openblas64_-fake.so"},
        {"internal_api": "openmp", "user_api": "openmp", "version": None, "filepath": "/x/libgomp.so"},
    ]
    monkeypatch.setattr(blas, "_threadpool_info", lambda: report)
    from laionknn.indexes import machine

    info = dict(machine.cpu_info())
    info["cpu_flags"] = "sse2,avx,avx2,fma"
    monkeypatch.setattr(machine, "cpu_info", lambda: info)
    monkeypatch.setattr(native, "kernel", lambda: "portable")
    monkeypatch.setattr(native, "int16_kernel", lambda: "portable")
    monkeypatch.delenv("LAIONKNN_BLAS", raising=False)


def test_kernel_detection_avoids_faiss_fallback_kernel(monkeypatch, caplog):
    _fake_report(monkeypatch, "Prescott", "SkylakeX")
    cores = blas.openblas_cores()
    assert cores["faiss"]["fallback"] and not cores["numpy"]["fallback"]
    with caplog.at_level("INFO", logger="laionknn.exact.blas"):
        assert blas.resolve_backend("auto") == "numpy"
    assert "Prescott" in caplog.text
    assert blas.describe("faiss") == "faiss-cpu OpenBLAS 0.3.15 core=Prescott"
    assert blas.describe("numpy") == "numpy OpenBLAS 0.3.31 core=SkylakeX"
    assert blas.resolve_backend("faiss") == "faiss"  # an explicit choice is kept
    # the run record names the kernel that ran
    rng = np.random.default_rng(3)
    res = knn_small(rng)
    assert res.attrs["gemm"] == "numpy OpenBLAS 0.3.31 core=SkylakeX" and res.attrs["filter"] == "float32"


def test_kernel_detection_keeps_faiss_on_a_good_kernel(monkeypatch):
    _fake_report(monkeypatch, "Zen", "Haswell")
    assert blas.resolve_backend("auto") == "faiss"
    _fake_report(monkeypatch, "Prescott", "Prescott")  # both slow: nothing better to pick
    assert blas.resolve_backend("auto") == "faiss"


def knn_small(rng):
    from laionknn.exact import knn

    return knn(laion_like(rng, 300, 16), laion_like(rng, 4, 16, np.float32), 3, "cosine")


@pytest.mark.parametrize("blas_name", ["int16", "numpy"])
def test_rescoring_in_small_conversion_chunks(blas_name, mode, monkeypatch):
    """float16 blocks are rescored through a float32 copy of RESCORE_ROWS rows at a time: chunk edges
    that cut through blocks and tiles give the float64 answer."""
    from laionknn.exact import engine

    monkeypatch.setattr(engine, "RESCORE_ROWS", 97)
    rng = np.random.default_rng(23)
    X = laion_like(rng, 1500, 40)
    X[[10, 500, 1499]] = X[96]  # duplicates on both sides of chunk edges
    Q = laion_like(rng, 6, 40, np.float32)
    for metric in ("dot", "cosine", "l2"):
        check(X, Q, 25, metric, blas=blas_name, block_rows=700)
