"""The Dask engine: shards of database rows searched by the exact engine's per-row-range function, their
candidate states combined by a tree of the exact engine's one associative merge (dask ``argtopk``
shape: chunk -> combine -> aggregate, fan-in at most ``split_every``).

* chunk (one task per shard): the task opens the HDF5 file itself, reads only its rows and runs
  :func:`laionknn.exact.knn_rows` (float32 filter with the rigorous bound + float64 rescoring of its
  own survivors). It returns ``(exact, certified, n_rescored)``: its float64 top-``kk`` (``kk`` =
  k+1), the float32 filter's survivors, and how many pairs it rescored.
* combine: :func:`laionknn.exact.merge.merge` on both states (associative, so any tree gives the same
  sets); the exact states merge to the global float64 top-``kk`` by ``(distance, id)``.
* aggregate: :func:`laionknn.exact.merge.exact_topk` + :func:`laionknn.exact.finish` (tie flags).

``n_rescored`` reported is the size of the merged certified set: exactly the pairs the float32 bound
cannot settle over the whole database, i.e. what the local engine rescores (so gold files are
byte-identical). The pairs the shards actually rescored are ``attrs["n_rescored_shards"]``.
Only paths, row ranges and small states travel through the scheduler; queries are scattered once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from functools import reduce
from pathlib import Path

import numpy as np

from laionknn.distributed.plan import plan_shards, plan_tree
from laionknn.errors import UsageError
from laionknn.exact import finish, knn_rows, validate
from laionknn.exact.plan import SCORE_TILE, plan_memory
from laionknn.exact.merge import Candidates, exact_topk, merge
from laionknn.io import VectorFile, parse_memory
from laionknn.progress import is_quiet, progress_bar, set_quiet
from laionknn.types import KnnResult, Metric

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "dask[distributed]"'


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise UsageError(f"the Dask engine needs the {module} package, which is not installed; "
                         f"install it with: {INSTALL_HINT}") from None


# Tasks running in threads of this process must not draw their own progress bars (the driver draws one).
_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved = False


@contextlib.contextmanager
def _quiet_inside():
    global _quiet_depth, _quiet_saved
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = is_quiet()
            set_quiet(True)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                set_quiet(_quiet_saved)


def _shard_task(database_path: str, key: str | None, queries: np.ndarray, kk: int, metric: str, start: int,
                stop: int, memory, threads, blas, query_batch) -> tuple[Candidates, Candidates, int]:
    """chunk: rows ``[start, stop)`` read by this task from the file (shared filesystem)."""
    with _quiet_inside(), VectorFile(database_path, key) as db:
        exact, certified = knn_rows(db, queries, kk, metric, start, stop, memory=memory, threads=threads, blas=blas,
                                    query_batch=query_batch)
    return exact, certified, int(certified.counts().sum())


def _combine(kk: int, *parts: tuple[Candidates, Candidates, int]) -> tuple[Candidates, Candidates, int]:
    """combine: the exact engine's merge, pairwise, on the exact and on the certified states."""
    exact = reduce(lambda a, b: merge(a, b, kk), [p[0] for p in parts])
    certified = reduce(lambda a, b: merge(a, b, kk), [p[1] for p in parts])
    # lo == hi in exact states: share one array so it is stored and sent once
    return Candidates(exact.lo, exact.lo, exact.ids), certified, sum(p[2] for p in parts)


def _aggregate(k: int, kk: int, n_shards: int, metric: str, extra: dict, root) -> KnnResult:
    exact, certified, n_shard_rescored = root
    dd, ii = exact_topk(exact.lo, exact.ids, kk)
    n_rescored = 0 if metric == Metric.HAMMING.value else int(certified.counts().sum())
    return finish(dd, ii, k, **extra, n_rescored=n_rescored, n_rescored_shards=int(n_shard_rescored),
                  shards=n_shards)


def _active_client():
    """The distributed Client that ``dask.compute`` would use now, if any."""
    import dask

    try:
        from distributed import Client
    except ModuleNotFoundError:
        return None
    sched = dask.base.get_scheduler()
    owner = getattr(sched, "__self__", None)
    return owner if isinstance(owner, Client) else None


def _tree(leaves: list, split_every: int, call):
    nodes = leaves
    for level in plan_tree(len(leaves), split_every):
        nodes = [nodes[g[0]] if len(g) == 1 else call(g, [nodes[i] for i in g]) for g in level]
    return nodes[0]


def knn_dask(database_path: "str | os.PathLike[str]", queries: np.ndarray, k: int,
             metric: "str | Metric" = Metric.COSINE, *, client=None, shards: int | None = None, split_every: int = 8,
             memory: "int | str | None" = None, threads: int | None = None, blas: str | None = None,
             key: str | None = None, tie_ranks=(), dists64: bool = False, align: int = SCORE_TILE[1]) -> KnnResult:
    """Exact k-NN over an HDF5 database with Dask; same answer as :func:`laionknn.exact.knn`.

    database_path: HDF5 vector file readable by every worker at this path (shared filesystem);
    key: its dataset (default: detected). queries: (n_queries, dim) ndarray. metric: dot, cosine, l2,
    hamming. client: a ``distributed.Client``; None uses dask's current scheduler (a default Client
    if one exists, else dask's local scheduler, e.g. ``dask.config.set(scheduler="sync")``).
    shards: row ranges (tasks), default twice the worker threads (or CPU count); split_every: fan-in of
    the merge tree (>= 2); memory: budget per task (blocks are planned from it); threads: BLAS/numba
    threads per task; tie_ranks, dists64: as :func:`laionknn.exact.knn`. align: shard boundaries are
    multiples of it (default 1024 rows, the local engine's score-tile grid, so that every float32 score
    comes from the same sgemm tile shape as in the local engine and ``n_rescored`` matches it too).

    Returns :class:`KnnResult`: ids int64 (n_queries, k) 0-based, dists float32 ascending, attrs
    ``tie_at_k``, ``n_rescored`` (as the local engine), ``n_rescored_shards``, ``shards``.
    """
    dask = _require("dask")
    metric = Metric.parse(metric)
    database_path = str(Path(database_path))
    q = np.asarray(queries)
    with VectorFile(database_path, key) as db:
        kk = validate(db, q, k, metric)
        n = int(db.n)
        key = getattr(db, "key", key)
        # the local engine's query batches (so its score tiles), planned for the whole database
        query_batch = plan_memory(parse_memory(memory), n, max(1, q.shape[0]), db.dim, np.dtype(db.dtype).itemsize,
                                  kk, gemm=metric is not Metric.HAMMING).query_batch
    tie_ranks = sorted({int(r) for r in tie_ranks})
    if tie_ranks and not 1 <= tie_ranks[0] <= tie_ranks[-1] <= k:
        raise UsageError(f"tie_ranks {tie_ranks}: each rank must be between 1 and k={k}")
    extra = {"tie_ranks": tie_ranks, "dists64": dists64}
    if q.shape[0] == 0:
        return finish(np.zeros((0, k)), np.zeros((0, k), np.int64), k, **extra, n_rescored=0)
    client = client if client is not None else _active_client()
    if shards is None:
        slots = sum(client.nthreads().values()) if client is not None else (os.cpu_count() or 1)
        shards = 2 * max(1, slots)
    # shard boundaries on the local engine's score-tile grid (1024 rows): every float32 score then
    # comes from the same sgemm tile shape as in the local engine, so the certified set is the same
    plan = plan_shards(n, int(shards), align=align)
    plan_tree(len(plan), split_every)  # validate split_every before any work
    log.info("dask %s k=%d: %d queries x %d rows in %d shards, merge fan-in %d", metric.value, k, q.shape[0], n,
             len(plan), split_every)
    args = (kk, metric.value)
    opts = (memory, threads, blas, query_batch)
    if client is not None:
        return _run_client(client, database_path, key, q, plan, split_every, k, args, opts, extra)
    tag = uuid.uuid4().hex[:8]
    qd = dask.delayed(q, name=f"laionknn-queries-{tag}")
    leaves = [dask.delayed(_shard_task, name=f"laionknn-shard-{tag}-{t.shard}")(
        database_path, key, qd, *args, t.start, t.stop, *opts) for t in plan]
    rows = {leaf.key: t.rows for leaf, t in zip(leaves, plan)}
    counter = iter(range(1 << 62))

    def combine(group, nodes):
        return dask.delayed(_combine, name=f"laionknn-merge-{tag}-{next(counter)}")(kk, *nodes)

    root = _tree(leaves, split_every, combine)
    final = dask.delayed(_aggregate, name=f"laionknn-aggregate-{tag}")(k, kk, len(plan), metric.value, extra, root)
    from dask.callbacks import Callback

    with progress_bar(f"dask {metric.value} ({len(plan)} shards)", n) as bar:
        def posttask(key, result, dsk, state, worker_id):
            if key in rows:
                bar.advance(rows[key])

        with Callback(posttask=posttask):
            (res,) = dask.compute(final)
    return res


def _run_client(client, database_path, key, q, plan, split_every, k, args, opts, extra) -> KnnResult:
    from distributed import as_completed

    kk = args[0]
    qf = client.scatter(q, broadcast=True, hash=False)
    leaves = [client.submit(_shard_task, database_path, key, qf, *args, t.start, t.stop, *opts, pure=False)
              for t in plan]
    root = _tree(leaves, split_every, lambda g, ns: client.submit(_combine, kk, *ns, pure=False))
    final = client.submit(_aggregate, k, kk, len(plan), args[1], extra, root, pure=False)
    rows = {f.key: t.rows for f, t in zip(leaves, plan)}
    with progress_bar(f"dask {args[1]} ({len(plan)} shards)", sum(rows.values())) as bar:
        for fut in as_completed(leaves):
            if fut.status == "error":
                break
            bar.advance(rows[fut.key])
    try:
        return final.result()
    finally:
        client.cancel([qf, final, *leaves])


@contextlib.contextmanager
def local_client(workers: int = 2, threads: int | None = None, *, processes: bool = True):
    """A ``distributed.Client`` on a fresh ``LocalCluster`` of ``workers`` processes, each running one
    task at a time with ``threads`` BLAS/numba threads (default: CPU count / workers)."""
    _require("distributed")
    import dask
    from distributed import Client, LocalCluster

    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    env = {f"distributed.nanny.pre-spawn-environ.{v}": threads
           for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    with dask.config.set(env), LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                                            dashboard_address=":0", scheduler_kwargs={"dashboard": False},
                                            silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int = 2, threads: int | None = None):
    """A ``distributed.Client``: on the cluster at ``scheduler`` (e.g. ``tcp://host:8786``), else on a fresh
    local cluster of ``workers`` processes with ``threads`` threads each. Raises :class:`UsageError` (one
    line: what to install, or how to start a scheduler) when dask is missing or the scheduler is
    unreachable."""
    from laionknn.validation import check_count, check_optional, check_threads

    workers, threads = check_count(workers, "--workers"), check_optional(check_threads, threads)
    try:
        import dask
        import distributed
    except ModuleNotFoundError:
        raise UsageError(f"--dask needs dask and distributed, which are not installed; install them with: "
                         f"{INSTALL_HINT}") from None
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:  # dask logs at INFO unless -v was asked
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if scheduler:
        try:
            # "laionknn.connect-timeout" in the dask config shortens the wait (tests)
            client = distributed.Client(scheduler, timeout=dask.config.get("laionknn.connect-timeout", "20s"))
        except (OSError, ValueError, TypeError) as e:
            raise UsageError(f"cannot reach a Dask scheduler at {scheduler} ({e}); start one with `dask scheduler` "
                             f"and workers with `dask worker {scheduler}`, or check the address") from None
        with client:
            yield client
        return
    with local_client(workers, threads) as client:
        yield client


def gold_standard_dask(database_path: "str | os.PathLike[str]", queries_path: "str | os.PathLike[str]", k: int, *,
                       normalize: bool = False, out: "str | os.PathLike[str] | None" = None,
                       memory: "int | str | None" = None, metric: "str | Metric | None" = None, client=None,
                       shards: int | None = None, split_every: int = 8, threads: int | None = None,
                       blas: str | None = None) -> Path:
    """:func:`laionknn.exact.gold_standard` computed with :func:`knn_dask`: the same official file, byte
    for byte (same answer, same engine-independent attributes). No checkpoints: Dask re-runs lost tasks."""
    from laionknn.exact.gold import resolve_metric, resolve_out, write_gold_standard

    database_path, queries_path = Path(database_path), Path(queries_path)
    m = resolve_metric(metric, normalize)
    out = resolve_out(out, Path(database_path), Path(queries_path), k, m)
    with VectorFile(queries_path) as vq:
        queries = vq.read()
    res = knn_dask(database_path, queries, k, m, client=client, shards=shards, split_every=split_every,
                   memory=memory, threads=threads, blas=blas)
    return write_gold_standard(out, res, database_path, queries_path, k, m)
