"""The registry: one line per backend, libraries imported only when a backend is used.

``BACKENDS`` maps a backend name to ``(module:Class, library to import)``. A backend whose library
cannot be imported is *unavailable*: it is left out of sweeps and conformance tests, and asking for
it by name raises a :class:`UsageError` that says which package to install.
"""

from __future__ import annotations

import functools
import importlib
import logging

from laionknn.errors import UsageError

log = logging.getLogger(__name__)

BACKENDS: dict[str, tuple[str, str]] = {
    "exact": ("laionknn.indexes.exact_index:ExactIndex", "numpy"),
    "faiss-flat": ("laionknn.indexes.faiss_index:FaissFlat", "faiss"),
    "faiss-ivfflat": ("laionknn.indexes.faiss_index:FaissIVFFlat", "faiss"),
    "faiss-ivfsq8": ("laionknn.indexes.faiss_index:FaissIVFSQ8", "faiss"),
    "faiss-ivfpqfs": ("laionknn.indexes.faiss_index:FaissIVFPQFastScan", "faiss"),
    "faiss-hnsw": ("laionknn.indexes.faiss_index:FaissHNSW", "faiss"),
    "faiss-hnswsq8": ("laionknn.indexes.faiss_index:FaissHNSWSQ8", "faiss"),
    "hnswlib": ("laionknn.indexes.hnswlib_index:HnswlibIndex", "hnswlib"),
    "usearch-f32": ("laionknn.indexes.usearch_index:USearchF32", "usearch.index"),
    "usearch-f16": ("laionknn.indexes.usearch_index:USearchF16", "usearch.index"),
    "usearch-i8": ("laionknn.indexes.usearch_index:USearchI8", "usearch.index"),
    "scann": ("laionknn.indexes.scann_index:ScannIndex", "scann.scann_ops.py.scann_ops_pybind"),
    "faiss-binary-flat": ("laionknn.indexes.faiss_binary:FaissBinaryFlat", "faiss"),
    "faiss-binary-ivf": ("laionknn.indexes.faiss_binary:FaissBinaryIVF", "faiss"),
    "faiss-binary-hnsw": ("laionknn.indexes.faiss_binary:FaissBinaryHNSW", "faiss"),
}

PIP_NAME = {"faiss": "faiss-cpu", "hnswlib": "hnswlib", "usearch.index": "usearch",
            "scann.scann_ops.py.scann_ops_pybind": "scann", "numpy": "numpy"}


def known_backends() -> list[str]:
    return list(BACKENDS)


@functools.lru_cache(maxsize=None)
def _library_error(library: str) -> str | None:
    try:
        importlib.import_module(library)
    except Exception as exc:  # ImportError, or a broken native library (OSError...)
        log.info("library %s unavailable: %s", library, exc)
        return f"{type(exc).__name__}: {exc}"
    return None


def is_available(name: str) -> bool:
    """True when ``name`` is registered and its library imports."""
    return name in BACKENDS and _library_error(BACKENDS[name][1]) is None


def available_backends(metric=None) -> list[str]:
    """Registered backends whose library imports (and that support ``metric`` when given)."""
    from laionknn.types import Metric

    names = [n for n in BACKENDS if is_available(n)]
    if metric is not None:
        m = Metric.parse(metric)
        names = [n for n in names if m in get_backend(n).metrics]
    return names


def get_backend(name: str) -> type:
    """The backend class registered as ``name`` (its library is imported now)."""
    if name not in BACKENDS:
        raise UsageError(f"unknown index backend {name!r}; known backends: {', '.join(BACKENDS)}")
    target, library = BACKENDS[name]
    err = _library_error(library)
    if err is not None:
        raise UsageError(f"backend {name!r} is unavailable because its library {library!r} does not import "
                         f"({err}); install it with `pip install {PIP_NAME.get(library, library)}`")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def create(name: str, metric="cosine", *, threads: int | None = None, **build_params):
    """A new, unbuilt index of backend ``name``."""
    return get_backend(name)(metric, threads=threads, **build_params)
