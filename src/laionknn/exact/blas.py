"""float32 matrix products ``S = xq @ xb.T`` for the filter stage.

Two backends compute the same sgemm (any summation order is covered by the error bound in
:mod:`laionknn.exact.bounds`):

* ``numpy``: ``np.matmul`` with an output buffer (numpy's OpenBLAS).
* ``faiss``: ``cblas_sgemm`` of the OpenBLAS that ships inside the faiss-cpu wheel, called through
  ctypes. On machines where numpy's OpenBLAS is pinned to an older kernel (``OPENBLAS_CORETYPE``),
  faiss's copy has measured faster, and it is what faiss ``IndexFlatIP`` itself runs on.

A third backend replaces the float32 product by a bf16 one (the certified bf16 filter of
:mod:`laionknn.exact.engine`, with its own wider bound):

* ``bf16``: ``gemm_bf16`` of the compiled core (:mod:`laionknn.native`: AMX or AVX512-BF16 kernels).

and a fourth by an int16 one (the certified int16 filter: exact int32 sums of int16 images with one
power-of-two scale per row, a tighter bound than bf16's):

* ``int16``: ``gemm_i16`` of the compiled core (AVX512-VNNI ``vpdpwssd``).

``auto`` picks ``bf16`` where the compiled core runs AMX; else ``int16`` where it runs the AVX512-VNNI
kernel (on Intel family 6 model 207 without AMX, ``vpdpwssd`` delivers 2.8-4.3x the multiply-adds of
``vdpbf16ps`` per cycle: the int16 GEMM ran 1.7-2.0x numpy's sgemm, the bf16 one 0.6-0.7x,
docs/BENCHMARKS.md); else ``bf16`` where an ``avx512bf16`` kernel runs (self-checked); otherwise faiss's library when it can be loaded **and** threadpoolctl does not report
it running a fallback kernel (e.g. ``Prescott`` on CPUs its OpenBLAS 0.3.15 does not know, while
numpy's newer OpenBLAS uses a SkylakeX/Haswell kernel); numpy otherwise. ``$LAIONKNN_BLAS``
overrides. ``OPENBLAS_CORETYPE`` is never changed: the kernel is chosen per call among the loaded
libraries, and any choice is covered by the same error bound, so results do not depend on it.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os

import numpy as np

from laionknn.errors import UsageError

log = logging.getLogger(__name__)

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@functools.lru_cache(maxsize=1)
def _faiss_sgemm():
    """``cblas_sgemm`` from faiss-cpu's bundled OpenBLAS, or None when unavailable."""
    try:
        import faiss  # noqa: F401  (loads the library into the process first)
    except Exception:  # faiss is an optional dependency
        return None
    base = os.path.dirname(os.path.dirname(faiss.__file__))
    libs = sorted(glob.glob(os.path.join(base, "faiss_cpu.libs", "libopenblas*.so*")))
    if not libs:
        return None
    try:
        lib = ctypes.CDLL(libs[0])
        fn = lib.cblas_sgemm
    except (OSError, AttributeError):
        return None
    c_int, c_float, ptr = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    fn.restype = None
    fn.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, c_float, ptr, c_int, ptr, c_int, c_float, ptr, c_int]
    log.debug("using cblas_sgemm from %s", libs[0])
    return fn


BACKENDS = ("auto", "numpy", "faiss", "bf16", "int16")
FAST_BF16 = ("amx", "avx512bf16")
# int16 kernels faster than float32 sgemm on the engine's tile (benchmarks/bf16_gemm.py): vpdpwssd
# (AVX512-VNNI) and vpmaddwd + vpaddd (AVX2; 16 multiply-adds per instruction against the FMA's 8)
FAST_INT16 = ("avx512vnni", "avx2")


def _threadpool_info() -> list[dict]:
    """threadpoolctl's report of the loaded native libraries (a seam for tests)."""
    from threadpoolctl import threadpool_info

    return threadpool_info()


def openblas_cores() -> dict[str, dict]:
    """The OpenBLAS libraries the two float32 backends call, as threadpoolctl reports them:
    ``{"faiss": {"version", "core", "path", "fallback"}, "numpy": {...}}`` (a backend whose library is
    not loaded or not visible is absent). ``fallback`` is True for a generic/pre-AVX2 kernel on a CPU
    with AVX2 (:data:`laionknn.indexes.machine.SLOW_OPENBLAS_CORES`)."""
    from laionknn.indexes.machine import SLOW_OPENBLAS_CORES, cpu_info

    _faiss_sgemm()  # faiss's library is loaded before the report when it exists
    faiss_dir = None
    try:
        import faiss

        faiss_dir = os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(faiss.__file__)), "faiss_cpu.libs"))
    except Exception:  # optional dependency
        pass
    has_avx2 = "avx2" in cpu_info()["cpu_flags"].split(",")
    out: dict[str, dict] = {}
    for info in _threadpool_info():
        if info.get("internal_api") != "openblas":
            continue
        path = os.path.realpath(info.get("filepath", ""))
        who = "faiss" if faiss_dir and path.startswith(faiss_dir + os.sep) else \
            "numpy" if "numpy" in path or "scipy_openblas" in path else None
        if who is None or who in out:
            continue
        core = str(info.get("architecture") or "")
        out[who] = {"version": str(info.get("version") or ""), "core": core, "path": path,
                    "fallback": has_avx2 and core.lower() in SLOW_OPENBLAS_CORES}
    return out


def resolve_backend(name: str | None = None) -> str:
    """'numpy', 'faiss', 'bf16' or 'int16' for a requested backend name ('auto', one of those, or None =
    env/auto)."""
    name = (name or os.environ.get("LAIONKNN_BLAS") or "auto").lower()
    if name not in BACKENDS:
        raise UsageError(f"unknown BLAS backend {name!r}: expected one of {', '.join(BACKENDS)}")
    if name == "numpy":
        return "numpy"
    if name in ("bf16", "int16"):
        return name
    if name == "auto":
        from laionknn import native

        if native.kernel() == "amx":
            return "bf16"
        if native.int16_kernel() in FAST_INT16:
            return "int16"
        if native.kernel() in FAST_BF16:
            return "bf16"
    if _faiss_sgemm() is None:
        if name == "faiss":
            raise UsageError("BLAS backend 'faiss' asked for, but faiss-cpu's OpenBLAS cannot be loaded; "
                             "install faiss-cpu or use --blas numpy")
        return "numpy"
    if name == "auto":
        cores = openblas_cores()
        f, n = cores.get("faiss"), cores.get("numpy")
        if f and f["fallback"] and not (n and n["fallback"]):
            log.info("faiss-cpu's OpenBLAS %s runs its %s kernel on this CPU; using numpy's (%s kernel) for the "
                     "float32 products", f["version"], f["core"], n["core"] if n else "unknown")
            return "numpy"
    return "faiss"


def describe(backend: str) -> str:
    """The kernel a backend runs, for run records: ``"faiss-cpu OpenBLAS 0.3.15 core=Zen"``,
    ``"numpy OpenBLAS 0.3.31 core=Haswell"``, ``"bf16 avx512bf16 (laionknn._native)"``."""
    if backend == "int16":
        from laionknn import native

        name = native.int16_kernel()
        return f"int16 {name} (laionknn._native)" if name != "numpy" else "int16 numpy fallback"
    if backend == "bf16":
        from laionknn import native

        return f"bf16 {native.kernel()} (laionknn._native)" if native.kernel() != "numpy" else "bf16 numpy fallback"
    info = openblas_cores().get(backend)
    lib = "faiss-cpu" if backend == "faiss" else "numpy"
    if info is None:
        return f"{lib} BLAS (kernel not visible to threadpoolctl)"
    return f"{lib} OpenBLAS {info['version']} core={info['core']}"


def sgemm_nt(xq: np.ndarray, xb: np.ndarray, out: np.ndarray, backend: str = "numpy") -> np.ndarray:
    """``out[:] = xq @ xb.T`` in float32. xq: (m, d), xb: (n, d), out: (m, n); all C-contiguous float32."""
    m, d = xq.shape
    n = xb.shape[0]
    if backend == "faiss" and m and n and d:
        for a in (xq, xb, out):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("sgemm_nt needs C-contiguous float32 arrays")
        _faiss_sgemm()(_ROW_MAJOR, _NO_TRANS, _TRANS, m, n, d, 1.0, xq.ctypes.data, d, xb.ctypes.data, d, 0.0,
                       out.ctypes.data, n)
        return out
    np.matmul(xq, xb.T, out=out)
    return out
