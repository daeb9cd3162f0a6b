"""The compiled core (``laionknn._native``, C++ in ``native/``) behind a numpy fallback.

bf16 conversion (round to nearest even), packing of database rows into the GEMM's panel layout
(once per block, with the per-row radii the bf16 filter's bound needs), and ``gemm_bf16``
(bf16 x bf16 -> float32) with three kernels chosen at run time:

* ``amx`` -- Intel AMX tiles (``tdpbf16ps``); used only where CPUID reports AMX-BF16 and Linux granted
  the tile state (``arch_prctl(ARCH_REQ_XCOMP_PERM)``).
* ``avx512bf16`` -- AVX512-BF16 (``vdpbf16ps``), 12 x 32 register blocks; where CPUID and the OS
  report AVX-512 with BF16.
* ``portable`` -- plain C++ (compiler's baseline instruction set).

and, for the certified int16 filter, int16 quantisation with one power-of-two scale per row
(:func:`quantize_queries`, :func:`quantize_rows`) and ``gemm_i16`` (exact int32 sums rounded once to
float32, times the scales) with the kernel ``avx512vnni`` (``vpdpwssd``, 12 x 32 register blocks; where
CPUID and the OS report AVX512-VNNI), ``avx2`` (``vpmaddwd`` + ``vpaddd``, 6 x 16 register blocks; AVX2
CPUs without AVX512-VNNI, e.g. AMD Zen 2/3) or ``portable``; :func:`int16_kernel` says which runs.

Without the module (not built, or ``LAIONKNN_NATIVE=off``) every function runs in numpy with the same
results up to float32 summation order (kernel name ``numpy``). ``LAIONKNN_NATIVE_KERNEL`` picks a
kernel among those available (for tests and comparisons); a fast kernel is used only after a self-check
against float64 on a small product passed.

Layouts: queries are row-major ``(m, dp)`` bf16 (``dp`` = dim rounded up to 32, zero padded); packed
rows are panels of 16 rows ``[dp/2][16][2]`` (k-pairs), rows rounded up to 32.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

OFF_ENV = "LAIONKNN_NATIVE"
KERNEL_ENV = "LAIONKNN_NATIVE_KERNEL"
ABI = 4
KERNELS = ("amx", "avx512bf16", "portable")


@functools.lru_cache(maxsize=None)
def _module():
    """The compiled module, or None (missing, disabled, or built for another ABI)."""
    if os.environ.get(OFF_ENV, "").strip().lower() in ("off", "0", "no", "false"):
        return None
    try:
        from laionknn import _native
    except ImportError as exc:
        log.debug("laionknn._native not available (%s): numpy fallback", exc)
        return None
    if getattr(_native, "ABI", None) != ABI:
        log.warning("laionknn._native was built for another version (ABI %s, expected %s); rebuild it with "
                    "`make native`; using the numpy fallback", getattr(_native, "ABI", None), ABI)
        return None
    return _native


def reset() -> None:
    """Forget cached module and kernel choices (after changing ``LAIONKNN_NATIVE*`` in tests)."""
    _module.cache_clear()
    _supported.cache_clear()
    kernel.cache_clear()
    int16_kernel.cache_clear()


def features() -> dict:
    """What the CPU, the OS and the build offer: CPUID flags (``avx512bf16``, ``amx_bf16``, ...),
    ``os_avx512``/``os_amx`` (XCR0), ``amx_granted``, ``compiled`` (kernels in this build) and
    ``native`` (module loaded)."""
    mod = _module()
    if mod is None:
        return {"native": False, "compiled": []}
    out = dict(mod.cpu_features())
    out["amx_granted"] = "amx" in _supported()
    out["compiled"] = list(mod.compiled_kernels())
    out["native"] = True
    return out


@functools.lru_cache(maxsize=None)
def _supported() -> tuple[str, ...]:
    """Kernels this build has and this CPU/OS can run, fastest first."""
    mod = _module()
    if mod is None:
        return ()
    f = mod.cpu_features()
    built = set(mod.compiled_kernels())
    out = []
    if "amx" in built and f["amx_tile"] and f["amx_bf16"] and f["os_amx"] and mod.amx_request():
        out.append("amx")
    if "avx512bf16" in built and f["avx512f"] and f["avx512bw"] and f["avx512vl"] and f["avx512bf16"] \
            and f["os_avx512"]:
        out.append("avx512bf16")
    out.append("portable")
    return tuple(out)


def available_kernels() -> list[str]:
    """Kernels usable here, fastest first; ``['numpy']`` without the compiled module."""
    return list(_supported()) or ["numpy"]


@functools.lru_cache(maxsize=None)
def kernel() -> str:
    """The kernel :func:`gemm_bf16` runs by default: ``$LAIONKNN_NATIVE_KERNEL`` when available, else the
    fastest available one that passes :func:`self_check`; ``numpy`` without the module."""
    avail = available_kernels()
    want = os.environ.get(KERNEL_ENV, "").strip().lower()
    if want:
        if want not in avail:
            log.warning("%s=%s is not available here (available: %s); using %s", KERNEL_ENV, want,
                        ", ".join(avail), avail[0])
        else:
            return want
    for name in avail:
        if name in ("portable", "numpy") or self_check(name):
            return name
        log.warning("the %s bf16 kernel failed its self-check against float64; not using it", name)
    return avail[-1]


def _threads(threads: int | None) -> int:
    if threads:
        return max(1, int(threads))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def padded_depth(d: int) -> int:
    return -(-int(d) // 32) * 32


def padded_rows(n: int) -> int:
    return -(-int(n) // 32) * 32


# ---------------------------------------------------------------- conversions
def _np_to_bf16(x: np.ndarray, ftz: bool) -> np.ndarray:
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    out = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    if ftz:
        sub = (u & 0x7F800000) == 0
        out[sub] = ((u[sub] >> 16) & 0x8000).astype(np.uint16)
    return out


def bf16_to_f32(h: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) -> float32 (exact)."""
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _convert(x: np.ndarray, layout: int, ftz: bool, threads: int | None):
    """bf16 of the rows of ``x`` (layout 0 row-major (n, dp), 1 packed), with float64 norms of the rows,
    of the bf16 rows and of the residuals ``x - bf16(x)`` (one pass over ``x`` in the compiled core)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array of rows, got shape {x.shape}")
    n, d = x.shape
    dp = padded_depth(d)
    rows = n if layout == 0 else padded_rows(n)
    norm, nhat, nres = np.empty(n), np.empty(n), np.empty(n)
    mod = _module()
    if mod is not None:
        buf = np.empty(rows * dp, dtype=np.uint16)
        if x.dtype == np.float16:
            fn, src = mod.convert_f16, np.ascontiguousarray(x).view(np.uint16)
        elif x.dtype == np.float64:
            fn, src = mod.convert_f64, np.ascontiguousarray(x)
        else:
            fn, src = mod.convert_f32, np.ascontiguousarray(x, dtype=np.float32)
        fn(src, buf, norm, nhat, nres, layout, bool(ftz), _threads(threads))
        return buf, norm, nhat, nres
    h = np.zeros((rows, dp), dtype=np.uint16)
    h[:n, :d] = _np_to_bf16(x, ftz)
    xh = bf16_to_f32(h[:n, :d]).astype(np.float64)
    nhat[:] = np.sqrt(np.einsum("ij,ij->i", xh, xh))
    x64 = np.asarray(x, dtype=np.float64)
    norm[:] = np.sqrt(np.einsum("ij,ij->i", x64, x64))
    e = x64 - xh
    nres[:] = np.sqrt(np.einsum("ij,ij->i", e, e))
    if layout == 1:
        h = h.reshape(rows // 16, 16, dp // 2, 2).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(h).ravel(), norm, nhat, nres


def to_bf16(x: np.ndarray, ftz: bool = False) -> np.ndarray:
    """bf16 bit patterns (uint16, same shape) of ``x`` rounded to nearest even (float64 values are first
    rounded to float32); NaN stays NaN; ``ftz`` flushes subnormals to signed zero."""
    x = np.asarray(x)
    mod = _module()
    if mod is None or x.size == 0:
        return _np_to_bf16(x, ftz).reshape(x.shape)
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(1, -1)
    out = np.empty(padded_depth(flat.size), dtype=np.uint16)
    mod.convert_f32(flat, out, np.empty(1), np.empty(1), np.empty(1), 0, bool(ftz), 1)
    return out[:flat.size].reshape(x.shape)


@dataclass
class Queries:
    """Row-major bf16 operand ``a`` (m, dp) with the float64 norms of the source rows (``norm``), of the
    bf16 rows (``nhat``) and of the residuals ``q - bf16(q)`` (``nres``)."""

    a: np.ndarray
    norm: np.ndarray
    nhat: np.ndarray
    nres: np.ndarray


def _unpack_panels(data: np.ndarray, n: int, d: int, col0: int, ncols: int | None) -> np.ndarray:
    """Rows ``[col0, col0 + ncols)`` (all to ``n`` when None) of a 16-row-panel, pair-interleaved packing
    (the layout :func:`gemm_bf16` and :func:`gemm_i16` read), as a (ncols, d) view of 16-bit values."""
    ncols = n - col0 if ncols is None else ncols
    dp = padded_depth(d)
    panels = data.reshape(-1, dp // 2, 16, 2)[col0 // 16: col0 // 16 + -(-ncols // 16)]
    return panels.transpose(0, 2, 1, 3).reshape(-1, dp)[col0 % 16: col0 % 16 + ncols, :d]


@dataclass
class Packed:
    """Database rows packed for :func:`gemm_bf16` (``n`` rows of dim ``d``), with ``nhat``/``nres`` as in
    :class:`Queries`."""

    data: np.ndarray
    n: int
    d: int
    norm: np.ndarray
    nhat: np.ndarray
    nres: np.ndarray

    @property
    def dp(self) -> int:
        return padded_depth(self.d)

    def rows_f32(self, col0: int = 0, ncols: int | None = None) -> np.ndarray:
        """The bf16 rows ``[col0, col0 + ncols)`` unpacked to float32 (n, d)."""
        return bf16_to_f32(_unpack_panels(self.data, self.n, self.d, col0, ncols))


def prepare_queries(q: np.ndarray, ftz: bool = True, threads: int | None = None) -> Queries:
    """bf16 operand and radii of the query rows (float16/32/64); see :class:`Queries`."""
    buf, norm, nhat, nres = _convert(q, 0, ftz, threads)
    return Queries(buf.reshape(len(nhat), -1), norm, nhat, nres)


def pack_rows(x: np.ndarray, ftz: bool = True, threads: int | None = None) -> Packed:
    """Database rows (float16/32/64) -> bf16 packed panels plus norms and radii, in one pass over the rows
    (float16 is read directly: no float32 copy); see :class:`Packed`."""
    buf, norm, nhat, nres = _convert(x, 1, ftz, threads)
    return Packed(buf, int(np.asarray(x).shape[0]), int(np.asarray(x).shape[1]), norm, nhat, nres)


def gemm_bf16(a: np.ndarray, b: Packed, out: np.ndarray | None = None, *, col0: int = 0, ncols: int | None = None,
              threads: int | None = None, kernel_name: str | None = None) -> np.ndarray:
    """``out = bf16(a) @ bf16(b[col0:col0 + ncols]).T`` in float32 (products exact, float32 sums).

    a: row-major bf16 (m, dp) (:func:`prepare_queries` ``.a`` or a slice of rows); b: :class:`Packed`;
    col0: a multiple of 32; out: float32 C-contiguous (m, >= ncols) or None.
    """
    ncols = b.n - col0 if ncols is None else int(ncols)
    if col0 % 32 or not 0 <= col0 <= col0 + ncols <= b.n:
        raise ValueError(f"columns [{col0}, {col0 + ncols}) must lie in the {b.n} packed rows, col0 a multiple of 32")
    if a.ndim != 2 or a.shape[1] != b.dp:
        raise ValueError(f"A must be (m, {b.dp}) bf16, got {a.shape}")
    m = a.shape[0]
    if out is None:
        out = np.empty((m, ncols), dtype=np.float32)
    name = kernel_name or kernel()
    if name == "numpy" or _module() is None:
        np.matmul(bf16_to_f32(a[:, :b.d]), b.rows_f32(col0, ncols).T, out=out[:, :ncols])
        return out
    _module().gemm_bf16(name, np.ascontiguousarray(a), b.data, col0, ncols, out, _threads(threads))
    return out


def gemm_error_bound(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``gamma_d * sum_t |a_t| |b_t|`` for float64 arrays a (m, d), b (n, d): the worst float32 error of any
    summation order of the exact products (Higham, Thm 3.4); u = 2^-24."""
    d = a.shape[1]
    u = 2.0 ** -24
    return (d * u / (1 - d * u)) * (np.abs(a) @ np.abs(b).T)


def self_check(name: str) -> bool:
    """Whether kernel ``name`` computes a small ragged product (45 x 77 x 100, values of both signs and
    mixed magnitudes) within the float32 error bound of the float64 result."""
    rng = np.random.default_rng(12345)
    qa = rng.standard_normal((45, 100)).astype(np.float32) * rng.uniform(0.1, 10, (45, 1)).astype(np.float32)
    xb = rng.standard_normal((77, 100)).astype(np.float32)
    q, p = prepare_queries(qa), pack_rows(xb)
    try:
        got = gemm_bf16(q.a, p, kernel_name=name, threads=2).astype(np.float64)
    except Exception as exc:  # a broken build must not stop the engine; the portable kernel remains
        log.warning("bf16 kernel %s raised %s", name, exc)
        return False
    ah = bf16_to_f32(q.a[:, :100]).astype(np.float64)
    bh = p.rows_f32().astype(np.float64)
    return bool(np.all(np.abs(got - ah @ bh.T) <= gemm_error_bound(ah, bh)))


# ---------------------------------------------------------------- int16 quantisation and GEMM
# X = rint(x / 2^e) per row, e the smallest integer with max|x_t| <= 32767 2^e and |x| <= 46000 2^e:
# |X| < 46341, so |Q.X| <= |Q||X| < 2^31 for every pair (and every partial sum): int32 sums are exact.
I16_MAX, I16_NORM = 32767.0, 46000.0
# exponents of 2 whose products keep every score a normal float32 (|Q.X| < 2^31): the filter checks them
I16_EXP_RANGE = (-60, 60)


def int16_kernels() -> list[str]:
    """int16 kernels this build has and this CPU/OS can run, fastest first: ``avx512vnni``, ``avx2``,
    ``portable``; ``['numpy']`` without the compiled module."""
    mod = _module()
    if mod is None:
        return ["numpy"]
    f = mod.cpu_features()
    built = set(mod.compiled_kernels())
    avail = []
    if "avx512vnni" in built and f.get("avx512vnni") and f["avx512f"] and f["avx512bw"] \
            and f["avx512vl"] and f["os_avx512"]:
        avail.append("avx512vnni")
    if "avx2" in built and f.get("avx2"):  # cpu_features' avx2 includes the OS's ymm state
        avail.append("avx2")
    return avail + ["portable"]


@functools.lru_cache(maxsize=None)
def int16_kernel() -> str:
    """The kernel :func:`gemm_i16` runs by default: the fastest of :func:`int16_kernels` that passes
    :func:`self_check_i16` (``portable`` with the module otherwise, ``numpy`` without it);
    ``$LAIONKNN_NATIVE_KERNEL`` may name any of them."""
    avail = int16_kernels()
    if avail == ["numpy"]:
        return "numpy"
    want = os.environ.get(KERNEL_ENV, "").strip().lower()
    if want in avail:
        return want
    for name in avail:
        if name == "portable" or self_check_i16(name):
            return name
        log.warning("the %s int16 kernel failed its self-check; not using it", name)
    return "portable"


def _np_quantize(x: np.ndarray):
    """numpy twin of the compiled quantisation (same exponents, same rounding: ties to even)."""
    x64 = np.asarray(x, dtype=np.float64)
    n = x64.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        mx = np.abs(x64).max(axis=1, initial=0.0)
        sx = np.einsum("ij,ij->i", x64, x64)
    bad = ~(np.isfinite(mx) & np.isfinite(sx))
    sx = np.where(bad & np.isfinite(sx), np.inf, sx)
    mx = np.where(bad, 0.0, mx)
    nrm = np.sqrt(sx)
    e = np.zeros(n, dtype=np.int32)
    ok = mx > 0
    if ok.any():
        e1 = np.frexp(mx[ok] / I16_MAX)[1]
        e2 = np.frexp(nrm[ok] / I16_NORM)[1]
        ee = np.maximum(e1, e2).astype(np.int64)
        m, r = mx[ok], nrm[ok]
        while True:
            down = (np.ldexp(I16_MAX, ee - 1) >= m) & (np.ldexp(I16_NORM, ee - 1) >= r)
            if not down.any():
                break
            ee = ee - down
        while True:
            up = (np.ldexp(I16_MAX, ee) < m) | (np.ldexp(I16_NORM, ee) < r)
            if not up.any():
                break
            ee = ee + up
        e[ok] = ee
    xi = np.zeros(x64.shape, dtype=np.int16)
    xi[ok] = np.rint(np.ldexp(x64[ok], -e[ok, None].astype(np.int64))).astype(np.int16)
    xh = np.ldexp(xi.astype(np.float64), e[:, None].astype(np.int64))
    res = np.where(ok[:, None], x64 - xh, 0.0)
    nhat = np.sqrt(np.einsum("ij,ij->i", xh, xh))
    nres = np.sqrt(np.einsum("ij,ij->i", res, res))
    scale = np.ldexp(np.float32(1), np.clip(e, -149, 127)).astype(np.float32)
    return xi, nrm, nhat, nres, e, scale


def _quantize(x: np.ndarray, layout: int, threads: int | None, buf: np.ndarray | None = None):
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array of rows, got shape {x.shape}")
    n, d = x.shape
    dp = padded_depth(d)
    rows = n if layout == 0 else padded_rows(n)
    mod = _module()
    if mod is not None:
        if buf is None or buf.dtype != np.int16 or buf.size < rows * dp or not buf.flags.c_contiguous:
            buf = np.empty(rows * dp, dtype=np.int16)
        buf = buf.reshape(-1)[:rows * dp]
        norm, nhat, nres = np.empty(n), np.empty(n), np.empty(n)
        e, scale = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.float32)
        if x.dtype == np.float16:
            fn, src = mod.quantize_f16, np.ascontiguousarray(x).view(np.uint16)
        elif x.dtype == np.float64:
            fn, src = mod.quantize_f64, np.ascontiguousarray(x)
        else:
            fn, src = mod.quantize_f32, np.ascontiguousarray(x, dtype=np.float32)
        fn(src, buf, norm, nhat, nres, e, scale, layout, _threads(threads))
        return buf, norm, nhat, nres, e, scale
    xi, norm, nhat, nres, e, scale = _np_quantize(x)
    h = np.zeros((rows, dp), dtype=np.int16)
    h[:n, :d] = xi
    if layout == 1:
        h = h.reshape(rows // 16, 16, dp // 2, 2).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(h).ravel(), norm, nhat, nres, e, scale


@dataclass
class QueriesI16:
    """Row-major int16 operand ``a`` (m, dp), exponents ``e`` and scales ``scale`` = 2^e (float32) per row,
    and the float64 norms of the rows (``norm``), of their images ``2^e a`` (``nhat``) and of the residuals
    (``nres``)."""

    a: np.ndarray
    e: np.ndarray
    scale: np.ndarray
    norm: np.ndarray
    nhat: np.ndarray
    nres: np.ndarray


@dataclass
class PackedI16:
    """Database rows quantised to int16 and packed for :func:`gemm_i16` (``n`` rows of dim ``d``), with
    ``e``/``scale``/``norm``/``nhat``/``nres`` as in :class:`QueriesI16`."""

    data: np.ndarray
    n: int
    d: int
    e: np.ndarray
    scale: np.ndarray
    norm: np.ndarray
    nhat: np.ndarray
    nres: np.ndarray

    @property
    def dp(self) -> int:
        return padded_depth(self.d)

    def rows_i16(self, col0: int = 0, ncols: int | None = None) -> np.ndarray:
        """The int16 rows ``[col0, col0 + ncols)`` unpacked (ncols, d)."""
        return _unpack_panels(self.data, self.n, self.d, col0, ncols)


def quantize_queries(q: np.ndarray, threads: int | None = None) -> QueriesI16:
    """int16 operand, exponents and radii of the query rows (float16/32/64); see :class:`QueriesI16`."""
    buf, norm, nhat, nres, e, scale = _quantize(q, 0, threads)
    return QueriesI16(buf.reshape(len(nhat), -1), e, scale, norm, nhat, nres)


def quantize_rows(x: np.ndarray, threads: int | None = None, buf: np.ndarray | None = None) -> PackedI16:
    """Database rows (float16/32/64) -> int16 packed panels plus exponents, norms and radii, in one pass
    over the rows (float16 read directly); see :class:`PackedI16`. ``buf``: an int16 buffer to reuse for
    the panels when large enough (the result's ``data`` is then a view of it)."""
    buf, norm, nhat, nres, e, scale = _quantize(x, 1, threads, buf)
    x = np.asarray(x)
    return PackedI16(buf, int(x.shape[0]), int(x.shape[1]), e, scale, norm, nhat, nres)


def gemm_i16(q: QueriesI16, b: PackedI16, out: np.ndarray | None = None, *, rows: slice = slice(None), col0: int = 0,
             ncols: int | None = None, threads: int | None = None, kernel_name: str | None = None,
             cmax: np.ndarray | None = None) -> np.ndarray:
    """``out = float32(Q[rows] . X[col0:col0 + ncols]^T) * 2^e_q * 2^e_x`` (exact int32 sums rounded once to
    float32; the power-of-two scalings are exact while the exponents stay in :data:`I16_EXP_RANGE`).

    q: :class:`QueriesI16` (``rows`` selects a contiguous range); b: :class:`PackedI16`; col0: a multiple
    of 32; out: float32 C-contiguous (m, >= ncols) or None. cmax: optional float32 C-contiguous
    (m, >= ceil(ncols / 32)) receiving each row's maximum over each 32 columns of ``out`` (computed in the
    kernel from the registers: the selection skips chunks without reading the tile).
    """
    ncols = b.n - col0 if ncols is None else int(ncols)
    if col0 % 32 or not 0 <= col0 <= col0 + ncols <= b.n:
        raise ValueError(f"columns [{col0}, {col0 + ncols}) must lie in the {b.n} packed rows, col0 a multiple of 32")
    a, rs = q.a[rows], q.scale[rows]
    if a.ndim != 2 or a.shape[1] != b.dp:
        raise ValueError(f"A must be (m, {b.dp}) int16, got {a.shape}")
    m = a.shape[0]
    if out is None:
        out = np.empty((m, ncols), dtype=np.float32)
    name = kernel_name or int16_kernel()
    if name == "numpy" or _module() is None:
        # float64 products and sums of the integers are exact (|Q.X| < 2^31 < 2^53): the same float32
        # values as the compiled kernels
        exact = a[:, :b.d].astype(np.float64) @ b.rows_i16(col0, ncols).astype(np.float64).T
        out[:, :ncols] = (exact.astype(np.float32) * b.scale[col0:col0 + ncols][None, :]) * rs[:, None]
        if cmax is not None:
            nc = -(-ncols // 32)
            pad = np.full((m, nc * 32), -np.inf, dtype=np.float32)
            pad[:, :ncols] = out[:, :ncols]
            cmax[:, :nc] = pad.reshape(m, nc, 32).max(axis=2)
        return out
    _module().gemm_i16(name, np.ascontiguousarray(a), np.ascontiguousarray(rs), b.data, b.scale, col0, ncols, out,
                       _threads(threads), cmax if cmax is not None else np.empty((0, 0), dtype=np.float32))
    return out


def self_check_i16(name: str) -> bool:
    """Whether int16 kernel ``name`` reproduces the exact (float64) product of a small ragged case
    (45 x 77 x 100, both signs, mixed magnitudes) rounded to float32 and scaled, bit for bit."""
    rng = np.random.default_rng(12345)
    qa = rng.standard_normal((45, 100)).astype(np.float32) * rng.uniform(0.1, 10, (45, 1)).astype(np.float32)
    xb = rng.standard_normal((77, 100)).astype(np.float32)
    q, p = quantize_queries(qa), quantize_rows(xb)
    try:
        got = gemm_i16(q, p, kernel_name=name, threads=2)
    except Exception as exc:  # a broken build must not stop the engine
        log.warning("int16 kernel %s raised %s", name, exc)
        return False
    return bool(np.array_equal(got, gemm_i16(q, p, kernel_name="numpy")))
