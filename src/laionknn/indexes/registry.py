"""The registry: one line per backend, libraries imported only when a backend is used.

``BACKENDS`` maps a backend name to ``(module:Class, library to import)``. A backend whose library
cannot be imported is *unavailable*: it is left out of sweeps and conformance tests, and asking for
it by name raises a :class:`UsageError` that says which package to install. A backend may also need
a kind of CPU (``CPU_REQUIREMENTS``: Intel SVS's LVQ/LeanVec end the process on other CPUs instead of
raising): on another CPU it is unavailable in the same way, and its library is never called.

Plug-ins: a user's own :class:`~laionknn.indexes.base.Index` subclass joins the registry without touching
the package, either named on the command line as ``module:Class`` (``--index mypkg.idx:MyIndex``,
:func:`resolve_backend`) or declared by an installed distribution in the entry-point group
:data:`ENTRY_POINT_GROUP` (``[project.entry-points."laionknn.backends"] my-index = "mypkg.idx:MyIndex"``,
listed by :func:`known_backends` without importing it). The class gives its grid as ``grid_file`` (a
path to a TOML grid, relative paths from the class's module folder) or ``grid`` (the same content as a
dict); a class that is no ``Index`` subclass, or has neither, is refused in one line.
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

# second variants of an index already in the main job (another storage, list layout or implementation of
# the same index: faiss HNSW beside hnswlib): the main job leaves them out unless asked (`--all`, or
# `--index NAME`), so `make demo` stays near its 5-minute budget on 2 cores of either CPU kind (on an
# AVX2-only VM, usearch-f32 alone took 125 s at 100K); benchmarks/peers.py and `laionknn search` run
# them as any other backend
VARIANTS = frozenset({"faiss-ivfflat", "faiss-hnsw", "faiss-hnswsq8", "usearch-f32", "usearch-f16"})

# backends that run only on one CPU vendor (checked before the library is ever called)
CPU_REQUIREMENTS: dict[str, str] = {"svs-lvq": "GenuineIntel", "svs-leanvec": "GenuineIntel"}
VENDOR_NAMES = {"GenuineIntel": "an Intel CPU", "AuthenticAMD": "an AMD CPU"}


ENTRY_POINT_GROUP = "laionknn.backends"
#: plug-ins registered in this process: backend name -> its class (resolved, checked)
PLUGINS: dict[str, type] = {}
#: names that the entry points registered
ENTRY_NAMES: set[str] = set()


def _entry_points() -> dict[str, str]:
    """``name -> module:Class`` of the installed distributions' ``laionknn.backends`` entry points."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def register_entry_points() -> list[str]:
    """Add the entry-point plug-ins to :data:`BACKENDS` (their modules are not imported; a name that a
    built-in backend has keeps the built-in). Returns their names."""
    names = []
    for name, target in _entry_points().items():
        if name in BACKENDS and BACKENDS[name][0] != target:
            log.warning("entry point %s = %s ignored: a built-in backend has that name", name, target)
            continue
        BACKENDS[name] = (target, target.split(":", 1)[0])
        ENTRY_NAMES.add(name)
        names.append(name)
    return names


def known_backends() -> list[str]:
    register_entry_points()
    return list(BACKENDS)


def is_plugin_spec(text: str) -> bool:
    return ":" in str(text) and str(text) not in BACKENDS


def resolve_backend(spec: str) -> str:
    """The registry name of ``spec``: a registered name as it is (entry points included), or a plug-in
    ``module:Class`` imported, checked (:func:`check_plugin`) and registered under the class's ``name``
    (its ``module:Class`` spelling when ``name`` is the base class's or a built-in's)."""
    spec = str(spec)
    if spec in BACKENDS or not is_plugin_spec(spec):
        if spec not in BACKENDS:
            register_entry_points()
        return spec
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise UsageError(f"--index {spec}: a plug-in is written module:Class (e.g. mypkg.index:MyIndex)")
    try:
        obj = importlib.import_module(module)
    except Exception as exc:
        raise UsageError(f"--index {spec}: module {module!r} does not import ({type(exc).__name__}: {exc}); put it "
                         f"on PYTHONPATH or install it") from None
    cls = getattr(obj, attr, None)
    if cls is None:
        raise UsageError(f"--index {spec}: module {module!r} has no attribute {attr!r}")
    return register_class(cls, spec)


def register_class(cls, spec: str | None = None) -> str:
    """Check and register the plug-in class ``cls`` (``spec``: its ``module:Class``, by default from
    the class itself); returns its registry name (its ``name``, else ``spec``)."""
    spec = spec or f"{cls.__module__}:{cls.__qualname__}"
    check_plugin(spec, cls)
    name = getattr(cls, "name", "index")
    if name in ("", "index") or (name in BACKENDS and BACKENDS[name][0] != spec):
        name = spec
    BACKENDS[name] = (spec, spec.split(":", 1)[0])
    PLUGINS[name] = cls
    return name


def check_plugin(spec: str, cls) -> None:
    """A plug-in must subclass ``Index`` and give its grid (``grid_file`` or ``grid``)."""
    from laionknn.indexes.base import Index

    if not (isinstance(cls, type) and issubclass(cls, Index)):
        raise UsageError(f"plug-in {spec}: {getattr(cls, '__name__', cls)!r} is not a subclass of "
                         f"laionknn.indexes.base.Index; subclass it (see docs/plugins.md)")
    if getattr(cls, "grid_file", None) is None and getattr(cls, "grid", None) is None:
        raise UsageError(f"plug-in {spec}: {cls.__name__} has no grid; give the class a grid_file (path to a TOML "
                         f"grid) or a grid dict (see docs/plugins.md)")
    grid = getattr(cls, "grid", None)
    if grid is not None and not isinstance(grid, dict):
        raise UsageError(f"plug-in {spec}: {cls.__name__}.grid must be a dict like a TOML grid's tables, "
                         f"found {type(grid).__name__}")


def plugin_grid(backend: str):
    """``(path, raw dict)`` of a plug-in's grid: its ``grid_file`` (relative to its module's folder) or
    its ``grid`` dict; ``(None, None)`` for a built-in backend."""
    target = BACKENDS.get(backend, ("", ""))[0]
    if target.startswith("laionknn.indexes."):
        return None, None
    cls = get_backend(backend)
    path = getattr(cls, "grid_file", None)
    if path is not None:
        from pathlib import Path

        path = Path(path)
        if not path.is_absolute():
            import sys

            module = sys.modules.get(cls.__module__)
            base = Path(getattr(module, "__file__", "") or ".").parent
            path = base / path
        return path, None
    return None, getattr(cls, "grid", None)


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


def why_unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run here (not registered, a CPU it does not support, its library does
    not import), in one line; None when it can."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}"
    return cpu_error(name) or _library_error(BACKENDS[name][1])


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
    """The backend class registered as ``name`` (its library is imported now); ``module:Class`` and
    entry-point plug-ins are resolved and checked first."""
    if name not in BACKENDS:
        name = resolve_backend(name)
    if name not in BACKENDS:
        raise UsageError(f"unknown index backend {name!r}; known backends: {', '.join(BACKENDS)} (or a plug-in "
                         f"module:Class, see `laionknn search --list`)")
    if name in PLUGINS:
        return PLUGINS[name]
    target, library = BACKENDS[name]
    cpu = cpu_error(name)
    if cpu is not None:
        raise UsageError(cpu)
    err = _library_error(library)
    if err is not None:
        raise UsageError(f"backend {name!r} is unavailable because its library {library!r} does not import "
                         f"({err}); install it with `pip install {PIP_NAME.get(library, library)}`")
    module, attr = target.split(":")
    cls = getattr(importlib.import_module(module), attr)
    if name in ENTRY_NAMES:  # an installed distribution's plug-in: checked once, on first use
        check_plugin(target, cls)
        PLUGINS[name] = cls
    return cls


def create(name: str, metric="cosine", *, threads: int | None = None, **build_params):
    """A new, unbuilt index of backend ``name``."""
    return get_backend(name)(metric, threads=threads, **build_params)
