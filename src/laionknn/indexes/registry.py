"""The registry: one line per backend, libraries imported only when a backend is used.

``BACKENDS`` maps a backend name to ``(module:Class, library to import)``. A backend whose library
cannot be imported is *unavailable*: it is left out of sweeps and conformance tests, and asking for
it by name raises a :class:`UsageError` that says which package to install. A backend may also need
a kind of CPU (``CPU_REQUIREMENTS``: Intel SVS's LVQ/LeanVec end the process on other CPUs instead of
raising): on another CPU it is unavailable in the same way, and its library is never called.
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
    "faiss-ivfrabitqfs": ("laionknn.indexes.faiss_index:FaissIVFRaBitQFastScan", "faiss"),
    "faiss-nsg": ("laionknn.indexes.faiss_index:FaissNSG", "faiss"),
    "deglib": ("laionknn.indexes.deglib_index:DeglibF32", "deglib"),
    "deglib-u8": ("laionknn.indexes.deglib_index:DeglibU8", "deglib"),
    "rabitq-ivf": ("laionknn.indexes.rabitq_index:RabitqIVF", "rabitqlib"),
    "rabitq-symqg": ("laionknn.indexes.rabitq_index:RabitqSymQG", "rabitqlib"),
    "vsag-hgraph": ("laionknn.indexes.vsag_index:VsagHGraph", "pyvsag"),
    "ngt-anng": ("laionknn.indexes.ngt_index:NgtANNG", "ngtpy"),
    "ngt-onng": ("laionknn.indexes.ngt_index:NgtONNG", "ngtpy"),
    "voyager-e4m3": ("laionknn.indexes.voyager_index:VoyagerE4M3", "voyager"),
    "voyager-f32": ("laionknn.indexes.voyager_index:VoyagerF32", "voyager"),
    "svs-vamana": ("laionknn.indexes.svs_index:SvsVamana", "svs"),
    "svs-lvq": ("laionknn.indexes.svs_index:SvsLVQ", "svs"),
    "svs-leanvec": ("laionknn.indexes.svs_index:SvsLeanVec", "svs"),
    "faiss-binary-flat": ("laionknn.indexes.faiss_binary:FaissBinaryFlat", "faiss"),
    "faiss-binary-ivf": ("laionknn.indexes.faiss_binary:FaissBinaryIVF", "faiss"),
    "faiss-binary-hnsw": ("laionknn.indexes.faiss_binary:FaissBinaryHNSW", "faiss"),
    # our own (never counted as a peer: benchmarks/peers.py compares them with the best one)
    "laionknn-ivfgemm": ("laionknn.indexes.ivfgemm_index:IvfGemm", "laionknn.indexes.ivfgemm_kernels"),
    "laionknn-ivfgemm-q4": ("laionknn.indexes.ivfgemm_index:IvfGemmQ", "laionknn.indexes.ivfgemm_kernels"),
}

PIP_NAME = {"faiss": "faiss-cpu", "hnswlib": "hnswlib", "usearch.index": "usearch",
            "scann.scann_ops.py.scann_ops_pybind": "scann", "numpy": "numpy", "deglib": "deglib",
            "rabitqlib": "rabitqlib", "pyvsag": "pyvsag", "ngtpy": "ngt", "voyager": "voyager",
            "svs": "scalable-vs", "laionknn.indexes.ivfgemm_kernels": "laionknn"}

# the peer libraries of the [peers] extra (and faiss's RaBitQ/NSG): benchmarks/peers.py runs them; the
# main job (`laionknn run`, `make demo`) leaves them out unless asked (`--peers`, or `--index NAME`),
# so the demo stays within its time budget on 2 cores
PEERS = frozenset({"faiss-ivfrabitqfs", "faiss-nsg", "deglib", "deglib-u8", "rabitq-ivf", "rabitq-symqg",
                   "vsag-hgraph", "ngt-anng", "ngt-onng", "voyager-e4m3", "voyager-f32", "svs-vamana", "svs-lvq",
                   "svs-leanvec"})

# backends that run only on one CPU vendor (checked before the library is ever called)
CPU_REQUIREMENTS: dict[str, str] = {"svs-lvq": "GenuineIntel", "svs-leanvec": "GenuineIntel"}
VENDOR_NAMES = {"GenuineIntel": "an Intel CPU", "AuthenticAMD": "an AMD CPU"}


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


def cpu_error(name: str) -> str | None:
    """Why this CPU cannot run backend ``name`` (None when it can)."""
    from laionknn.indexes.machine import cpu_info

    needed = CPU_REQUIREMENTS.get(name)
    if needed is None:
        return None
    info = cpu_info()
    if info["cpu_vendor"] == needed:
        return None
    found = f"{info['cpu_model'] or 'unknown model'} ({info['cpu_vendor'] or 'unknown vendor'})"
    return (f"backend {name!r} needs {VENDOR_NAMES.get(needed, needed)} (its library runs only there) and this "
            f"machine has {found}; use svs-vamana or another backend on this machine")


def is_available(name: str) -> bool:
    """True when ``name`` is registered, its library imports and this CPU can run it."""
    return name in BACKENDS and cpu_error(name) is None and _library_error(BACKENDS[name][1]) is None


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
    cpu = cpu_error(name)
    if cpu is not None:
        raise UsageError(cpu)
    err = _library_error(library)
    if err is not None:
        raise UsageError(f"backend {name!r} is unavailable because its library {library!r} does not import "
                         f"({err}); install it with `pip install {PIP_NAME.get(library, library)}`")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def create(name: str, metric="cosine", *, threads: int | None = None, **build_params):
    """A new, unbuilt index of backend ``name``."""
    return get_backend(name)(metric, threads=threads, **build_params)
