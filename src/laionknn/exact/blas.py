"""float32 matrix products ``S = xq @ xb.T`` for the filter stage.

Two backends compute the same sgemm (any summation order is covered by the error bound in
:mod:`laionknn.exact.bounds`):

* ``numpy``: ``np.matmul`` with an output buffer (numpy's OpenBLAS).
* ``faiss``: ``cblas_sgemm`` of the OpenBLAS that ships inside the faiss-cpu wheel, called through
  ctypes. On machines where numpy's OpenBLAS is pinned to an older kernel (``OPENBLAS_CORETYPE``),
  faiss's copy has measured faster, and it is what faiss ``IndexFlatIP`` itself runs on.

``auto`` picks faiss's library when it can be loaded, numpy otherwise. ``$LAIONKNN_BLAS`` overrides.
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


def resolve_backend(name: str | None = None) -> str:
    """'numpy' or 'faiss' for a requested backend name ('auto', 'numpy', 'faiss' or None = env/auto)."""
    name = (name or os.environ.get("LAIONKNN_BLAS") or "auto").lower()
    if name not in ("auto", "numpy", "faiss"):
        raise UsageError(f"unknown BLAS backend {name!r}: expected auto, numpy or faiss")
    if name == "numpy":
        return "numpy"
    if _faiss_sgemm() is None:
        if name == "faiss":
            raise UsageError("BLAS backend 'faiss' asked for, but faiss-cpu's OpenBLAS cannot be loaded; "
                             "install faiss-cpu or use --blas numpy")
        return "numpy"
    return "faiss"


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
