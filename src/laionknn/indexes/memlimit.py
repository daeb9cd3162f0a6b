"""Memory-capped sweeps (`laionknn search/run --memory-limit SIZE`, `--task 2024-2|2024-3`).

Each build configuration of a sweep is built and searched in a child process (``spawn``: a fresh
interpreter, no inherited threads) under a hard limit:

* **cgroup v2** where this process may create a sub-group (``memory.max`` = the child's memory at the
  start + SIZE; the kernel kills the child when it is exceeded, ``memory.events`` says so);
* else **RLIMIT_AS**: the address space the child has once the backend's library is imported + SIZE;
  an allocation beyond it fails (``MemoryError`` in numpy, ``std::bad_alloc`` in C++ libraries). The
  address space is an upper bound of resident memory, so the cap is conservative. glibc's per-thread
  malloc arenas (64 MiB of address space each) are limited to 2 so that threads do not eat the budget.

Either way SIZE is what the backend may allocate beyond the interpreter and its libraries. The child
reports each phase (``build``, ``search``) and its peak resident set; a limit exceeded (or a child
killed) becomes a run record with ``outcome`` ``exceeded`` (``"exceeded 3.2 GB at build"``) or
``crashed`` and no result file, and the sweep goes on with the next build configuration.

The 2024 challenge's memory-capped tasks, scaled to the database size (budget per 100M rows):
task 2 — 32 GiB, originals readable from disk; task 3 — 64 GiB, no originals at search time (backends
whose ``keeps_originals`` is true are refused).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import resource
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laionknn.errors import LaionKnnError, UsageError

log = logging.getLogger(__name__)

ROWS_PER_BUDGET = 100_000_000


@dataclass(frozen=True)
class TaskPreset:
    name: str
    budget_per_100m: int  # bytes
    originals_at_search: bool
    recall_threshold: float
    k: int = 30


TASKS = {"2024-2": TaskPreset("2024-2", 32 * 1024**3, True, 0.8),
         "2024-3": TaskPreset("2024-3", 64 * 1024**3, False, 0.4)}


def fmt_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (binary units, as --memory-limit reads them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def task_preset(task: str) -> TaskPreset:
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}; the memory-capped 2024 tasks are {', '.join(TASKS)}")
    return TASKS[task]


def task_limit(task: str, n_rows: int) -> int:
    """The task's memory budget scaled to ``n_rows`` (32 or 64 GiB per 100M rows)."""
    return int(task_preset(task).budget_per_100m * n_rows / ROWS_PER_BUDGET)


def resolve_memory_limit(memory_limit: "str | int | None", task: str | None, n_rows: int) -> int | None:
    """The hard limit in bytes: --memory-limit when given (checked by
    :func:`laionknn.validation.check_memory_size`), else the --task budget scaled to the rows."""
    from laionknn.validation import check_memory_size

    if memory_limit is not None:
        return check_memory_size(memory_limit, "--memory-limit")
    if task:
        return task_limit(task, n_rows)
    return None


def check_task_backend(task: str, backend: str) -> None:
    """Task 3 has no originals at search time: refuse a backend that needs them."""
    from laionknn.indexes.registry import get_backend

    preset = task_preset(task)
    if not preset.originals_at_search and get_backend(backend).keeps_originals:
        raise UsageError(f"--task {task} allows no original vectors at search time, and backend {backend!r} keeps "
                         f"or reads them; choose one that searches compressed codes only (e.g. faiss-ivfsq8, "
                         f"usearch-i8)")


def task_backends(task: str, backends: list[str]) -> list[str]:
    """The backends of ``backends`` that ``task`` allows."""
    from laionknn.indexes.registry import get_backend

    preset = task_preset(task)
    return [b for b in backends if preset.originals_at_search or not get_backend(b).keeps_originals]


def check_limit(backend: str, limit: int, n: int, dim: int, build_configs: list[dict], dataset: str) -> None:
    """Refuse a limit below the smallest index ``backend`` can build here (its ``min_index_bytes``)."""
    from laionknn.indexes.registry import get_backend

    if limit <= 0:
        raise UsageError(f"--memory-limit must be a positive size such as 512M or 4G, got {limit} bytes")
    cls = get_backend(backend)
    sizes = [(cls.min_index_bytes(n, dim, {**cls.build_defaults, **bp}), bp) for bp in build_configs]
    smallest, bp = min(sizes, key=lambda s: s[0])
    if limit < smallest:
        knobs = ",".join(f"{k}={v}" for k, v in sorted(bp.items())) or "defaults"
        raise UsageError(f"memory limit {fmt_bytes(limit)} is below the smallest index {backend} can build on {dataset} "
                         f"({n} rows x {dim}): at least {fmt_bytes(smallest)} ({knobs}); raise the limit or choose a "
                         f"more compact backend")


def cgroup_dir() -> Path | None:
    """This process's cgroup v2 folder when a memory-limited sub-group can be made in it, else None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    rel = next((ln[3:] for ln in lines if ln.startswith("0::")), None)
    root = Path("/sys/fs/cgroup")
    if rel is None or not (root / "cgroup.controllers").is_file():
        return None
    here = root / rel.lstrip("/")
    try:
        if "memory" not in (here / "cgroup.subtree_control").read_text().split():
            return None
    except OSError:
        return None
    return here if os.access(here, os.W_OK) else None


def enforcement() -> str:
    return "cgroup" if cgroup_dir() is not None else "rlimit"


# --- the child ---------------------------------------------------------------------------------------------
def _vm_bytes(field_name: str = "VmSize") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _is_memory_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, MemoryError) or any(w in text for w in ("bad_alloc", "out of memory", "not enough memory",
                                                                     "cannot allocate memory"))


def _warm_up(cls, metric, threads: int) -> None:
    """Load what the sweep will load anyway (numba's LLVM; the BLAS buffers of numpy and faiss, which
    OpenBLAS allocates per thread at the first product; the exact engine's compiled kernels for the
    exact backend) so that the libraries are part of the baseline, not of the budget."""
    import llvmlite.binding
    import numpy as np
    from threadpoolctl import threadpool_limits

    llvmlite.binding.ffi.lib  # noqa: B018 -- the shared library is mapped on first use
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=threads):
        # products large enough for OpenBLAS to use every thread (small ones run on one)
        a = rng.standard_normal((4096, 64)).astype(np.float32)
        a[:1024] @ a.T  # noqa: B018
        if cls.library == "faiss":
            import faiss

            faiss.omp_set_num_threads(threads)
            km = faiss.Kmeans(64, 64, niter=2, seed=0)
            km.train(a)
            km.index.search(a, 2)
    from laionknn.indexes.exact_index import ExactIndex

    if issubclass(cls, ExactIndex):
        from laionknn import exact

        rng = np.random.default_rng(0)
        dim = 16 if metric.value != "hamming" else 2
        x = rng.standard_normal((64, dim)) if metric.value != "hamming" else rng.integers(0, 2**62, (64, dim), np.uint64)
        exact.knn(x, x[:4], 3, metric)


def _child(conn, job: dict) -> None:
    """Child process: register the backend, import its library, set the limit, run the sweep point."""
    import ctypes

    phase = "start"
    try:
        from laionknn.indexes import registry
        from laionknn.progress import set_quiet

        set_quiet(True)
        registry.BACKENDS.setdefault(job["backend"], job["registry_entry"])
        cls = registry.get_backend(job["backend"])  # import the library before the baseline is taken
        from laionknn.indexes import runner
        from laionknn.io import VectorFile

        _warm_up(cls, job["metric"], int(job["threads"] or os.cpu_count() or 1))

        try:
            ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX = 2
        except OSError:
            pass
        baseline = _vm_bytes("VmRSS")
        if job["mode"] == "rlimit":
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            cap = _vm_bytes("VmSize") + job["limit"]
            resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
        conn.send(("ready", baseline))
        if job["mode"] == "cgroup":
            conn.recv()  # the parent has moved us into the limited group

        def on_phase(name: str) -> None:
            nonlocal phase
            phase = name
            conn.send(("phase", name, _peak_rss()))

        with VectorFile(job["path"], job["key"]) as db:
            target = runner.SweepTarget(database=db, queries=job["queries"], metric=job["metric"], data=job["data"],
                                        size=job["size"], dataset=job["dataset"])
            records = runner.sweep(job["backend"], target, job["k"], job["out_dir"], grid=job["grid"],
                                   threads=job["threads"], repeats=job["repeats"], use_cache=job["use_cache"],
                                   gold_ids=job["gold_ids"], append=False, on_phase=on_phase,
                                   on_record=lambda rec: conn.send(("record", rec, _peak_rss())))
        conn.send(("done", len(records), _peak_rss()))
    except BaseException as exc:  # everything goes back to the parent, which decides
        try:
            kind = "exceeded" if _is_memory_error(exc) else "error"
            payload = exc if isinstance(exc, LaionKnnError) else f"{type(exc).__name__}: {exc}"
            conn.send((kind, phase, payload, _peak_rss(), traceback.format_exc(limit=5)))
        except BaseException:
            os._exit(3)
    finally:
        conn.close()


# --- the parent --------------------------------------------------------------------------------------------
def _run_child(job: dict) -> dict:
    """Start the child, apply the cgroup if any, collect its messages; returns the outcome dict."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, job), daemon=True)
    proc.start()
    child.close()
    group = None
    out: dict[str, Any] = {"phase": "start", "peak": 0, "baseline": 0, "records": []}
    try:
        while True:
            try:
                msg = parent.recv()
            except EOFError:
                break
            kind = msg[0]
            if kind == "ready":
                out["baseline"] = msg[1]
                if job["mode"] == "cgroup":
                    group = _enter_cgroup(proc.pid, job["limit"])
                    parent.send("go")
            elif kind == "phase":
                out["phase"], out["peak"] = msg[1], max(out["peak"], msg[2])
            elif kind == "record":
                out["records"].append(msg[1])
                out["peak"] = max(out["peak"], msg[2])
            elif kind == "done":
                out.update(kind="ok", peak=max(out["peak"], msg[2]))
            else:
                out.update(kind=kind, phase=msg[1], error=msg[2], peak=max(out["peak"], msg[3]), trace=msg[4])
        proc.join()
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        if group is not None:
            out["peak"] = max(out["peak"], _read_int(group / "memory.peak"))
            if _oom_killed(group):
                out.setdefault("kind", "exceeded")
            _remove_cgroup(group)
    if "kind" not in out:
        out["kind"] = "crashed"
        out["error"] = f"the child process ended with exit code {proc.exitcode}"
    return out


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _enter_cgroup(pid: int, limit: int) -> Path:
    here = cgroup_dir()
    group = here / f"laionknn-{os.getpid()}-{pid}"
    group.mkdir()
    (group / "cgroup.procs").write_text(str(pid))
    (group / "memory.max").write_text(str(_read_int(group / "memory.current") + limit))
    if (group / "memory.swap.max").exists():  # a swapped-out child would not be held to the limit
        (group / "memory.swap.max").write_text("0")
    return group


def _oom_killed(group: Path) -> bool:
    try:
        events = dict(line.split() for line in (group / "memory.events").read_text().splitlines())
    except (OSError, ValueError):
        return False
    return int(events.get("oom_kill", 0)) > 0


def _remove_cgroup(group: Path) -> None:
    try:
        group.rmdir()
    except OSError as exc:
        log.warning("could not remove cgroup %s: %s", group, exc)


def capped_sweep(backend: str, target, k: int, out_dir, *, grid, memory_limit: int, task: str | None = None,
                 threads: int | None = None, repeats: int | None = None, use_cache: bool = True,
                 gold_ids: np.ndarray | None = None, append: bool = True,
                 replace_records: bool = False) -> list[dict]:
    """:func:`laionknn.indexes.runner.sweep`, each build configuration in a child under ``memory_limit``
    bytes; ``append``/``replace_records`` as there (the child only reports, this process writes
    ``runs.jsonl``). Records gain ``outcome`` (ok | exceeded | crashed), ``outcome_detail``, ``memory_limit_bytes``,
    ``memory_peak_bytes`` (the child's peak resident set), ``memory_baseline_bytes`` (its resident set
    when the limit was set), ``memory_enforcement`` and ``task``."""
    from laionknn.indexes.base import source_shape
    from laionknn.indexes.grids import Grid
    from laionknn.indexes.registry import BACKENDS, get_backend
    from laionknn.results import append_run_records, replace_run_records

    get_backend(backend)
    path = getattr(target.database, "path", None)
    if path is None:
        raise UsageError("a memory-capped sweep reads the database from its HDF5 file in a child process; "
                         "pass an open VectorFile")
    n, dim, _ = source_shape(target.database)
    if task:
        check_task_backend(task, backend)
    check_limit(backend, memory_limit, n, dim, grid.build, target.dataset)
    mode = enforcement()
    log.info("%s: each build configuration in a child process limited to %s (%s)", backend,
             fmt_bytes(memory_limit), mode)
    from laionknn.indexes.base import _kv
    from laionknn.types import Metric

    records: list[dict] = []
    for b, build_params in enumerate(grid.build):
        # one build configuration per child, with the rules that chose its values (for the records)
        one = Grid(backend, [build_params], grid.query, grid.source, grid.notes, grid.repeats,
                   build_rules=[grid.build_rule(b)], query_rules=list(grid.query_rules))
        job = {"backend": backend, "registry_entry": BACKENDS[backend], "path": str(path),
               "key": getattr(target.database, "key", None), "queries": target.queries, "metric": Metric.parse(target.metric),
               "data": target.data, "size": target.size, "dataset": target.dataset, "k": k, "out_dir": str(out_dir),
               "grid": one,
               "threads": threads, "repeats": repeats, "use_cache": use_cache, "gold_ids": gold_ids,
               "limit": int(memory_limit), "mode": mode}
        out = _run_child(job)
        memory = {"memory_limit_bytes": int(memory_limit), "memory_peak_bytes": int(out["peak"]),
                  "memory_baseline_bytes": int(out["baseline"]), "memory_enforcement": mode, "task": task or ""}
        # the points finished before a failure keep their records and result files
        records += [{**rec, **memory, "outcome": "ok", "outcome_detail": ""} for rec in out["records"]]
        if out["kind"] == "ok":
            continue
        if out["kind"] == "error":
            err = out["error"]
            if isinstance(err, LaionKnnError):
                raise err
            raise LaionKnnError(f"backend {backend} failed in its memory-capped child at {out['phase']}: {err}")
        detail = (f"exceeded {fmt_bytes(memory_limit)} at {out['phase']}" if out["kind"] == "exceeded"
                  else f"crashed at {out['phase']} under a {fmt_bytes(memory_limit)} limit ({out['error']})")
        log.warning("%s %s: %s", backend, _kv(build_params), detail)
        cls = get_backend(backend)
        records.append({"dataset": target.dataset, "data": target.data, "size": target.size, "algo": backend,
                        "params": _kv({**cls.build_defaults, **build_params}),
                        "build_params": dict(sorted({**cls.build_defaults, **build_params}.items())),
                        "query_params": {}, "k": k, "threads": threads or os.cpu_count() or 1,
                        "n_queries": int(len(target.queries)), "buildtime": None, "querytime": None, "qps": None,
                        "file": "", "queries_short": 0, "grid": grid.source,
                        "grid_rules": "; ".join(filter(None, [*grid.notes, grid.build_rule(b)])), "knob_changes": "",
                        **memory, "outcome": out["kind"], "outcome_detail": detail})
    if append:
        write = replace_run_records if replace_records else append_run_records
        write(Path(out_dir) / "runs.jsonl", records)
    return records


__all__ = ["TASKS", "capped_sweep", "check_limit", "check_task_backend", "enforcement", "fmt_bytes", "task_backends",
           "resolve_memory_limit", "task_limit", "task_preset"]
