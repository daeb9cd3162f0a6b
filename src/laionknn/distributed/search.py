"""Sharded index search on Dask: one index per shard of database rows, one answer by the exact
engine's associative merge.

* **Shards** are contiguous row ranges (:func:`laionknn.distributed.plan.plan_shards`). A worker builds
  the backend's index over its shard, reading only those rows from the shared HDF5 file
  (:class:`ShardSource`), or loads it from the index cache (key: the data fingerprint plus the row range).
  The built index stays in the worker's memory as the result of its build task; Dask keeps the task, so a
  shard whose worker dies is rebuilt on another one when it is next needed.
* **Search**: the queries are scattered once; each shard answers its top-k with global ids and float
  distances (float64 for the ``exact`` backend: its shards run :func:`laionknn.exact.knn` with
  ``dists64``, so the merged answer is the local engine's, id for id and bit for bit). The driver merges
  the shard answers with :func:`laionknn.exact.merge.merge` (exact states: the plain top-k by
  ``(distance, id)``) and :func:`laionknn.exact.merge.exact_topk`.
* **IVF layouts** (faiss-ivfflat, faiss-ivfsq8): one coarse quantizer (and codebook) is trained for the
  whole database (:meth:`laionknn.indexes.faiss_index.FaissIndex.train_empty`), every row is assigned to
  its list once (row-range tasks), and copies of the trained empty index are filled per shard with these
  assignments. ``broadcast``: row-range shards, every query goes to every shard, each shard probes its
  part of the query's ``nprobe`` lists. ``routed``: each shard owns whole lists (largest first, to the
  least-loaded shard); the driver finds the query's ``nprobe`` lists with the quantizer and sends the
  query only to the shards owning one of them, with the lists to scan. Both scan exactly the lists the
  unsharded index with this quantizer scans, so they return the same ids; routing saves the
  (query, shard) pairs of shards that own none of the probed lists.

Distances: float32 ascending as every backend answers (``1 - dot``, squared L2, Hamming), ids 0-based
int64 global row numbers.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import time
import uuid
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from laionknn.distributed.plan import plan_shards
from laionknn.errors import UsageError
from laionknn.exact.merge import Candidates, exact_topk, merge
from laionknn.types import KnnResult, Metric

log = logging.getLogger(__name__)

LAYOUTS = ("rows", "broadcast", "routed")
IVF_BACKENDS = ("faiss-ivfflat", "faiss-ivfsq8")  # plain IndexIVF: preassigned add and search exist


# --- the shard's view of the shared file ---------------------------------------------------------------
class ShardSource:
    """Rows ``[start, stop)`` of an HDF5 vector file as a block source (``n``, ``dim``, ``dtype``,
    ``read``, ``blocks``) with *local* row numbers 0..n-1. Picklable: it sends the path and the range,
    and opens the file on first use, in the process that uses it (the worker)."""

    def __init__(self, path: str, key: str | None, start: int, stop: int, dim: int, dtype) -> None:
        self.path, self.key = str(path), key
        self.start, self.stop = int(start), int(stop)
        self.n, self.dim, self.dtype = self.stop - self.start, int(dim), np.dtype(dtype)
        self._file = None

    def _vf(self):
        if self._file is None:
            from laionknn.io import VectorFile

            self._file = VectorFile(self.path, self.key)
        return self._file

    def read(self, lo: int = 0, hi: int | None = None, dtype=None) -> np.ndarray:
        hi = self.n if hi is None else min(hi, self.n)
        return self._vf().read(self.start + lo, self.start + hi, dtype=dtype)

    def blocks(self, rows: int | None = None, *, start: int = 0, stop: int | None = None, **kw):
        stop = self.n if stop is None else min(stop, self.n)
        for lo, block in self._vf().blocks(rows, start=self.start + start, stop=self.start + stop, **kw):
            yield lo - self.start, block

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}

    def __repr__(self) -> str:
        return f"ShardSource({self.path!r}, rows {self.start}..{self.stop})"


# --- what a worker holds ---------------------------------------------------------------------------------
def _scratch():
    """Scratch folder for an index travelling between workers: in the index cache of this host, named
    ``.tmp-<pid>-*`` so that the next writer there removes it if the worker is killed meanwhile."""
    from laionknn import workspace
    from laionknn.fsutil import temp_dir

    return temp_dir(workspace.index_cache_dir(), "shard-transfer")


class ShardIndex:
    """A built shard index living in a worker's memory. ``build_id`` is new at every (re)build, so the
    driver can tell a rebuilt shard; ``pid`` and ``host`` say where it was built. Picklable (when Dask
    moves it between workers): backends that can be saved travel as their saved files."""

    def __init__(self, shard: int, backend: str, index, source: ShardSource, *, buildtime: float,
                 cached: bool, index_bytes: int, rows: int | None = None, global_ids: bool = False) -> None:
        self.shard, self.backend, self.index, self.source = shard, backend, index, source
        self.buildtime, self.cached, self.index_bytes = buildtime, cached, index_bytes
        self.rows = source.n if rows is None else int(rows)
        self.global_ids = global_ids  # the index answers global ids (IVF layouts), else local row numbers
        self.build_id = uuid.uuid4().hex
        self.pid, self.host = os.getpid(), socket.gethostname()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if type(self.index).supports_save:
            with _scratch() as d:
                self.index.save(d / "index")
                state["index"] = (type(self.index).name, self.index.metric.value, self.index.build_params,
                                  self.index.threads, self.index.n, self.index.dim,
                                  {p.name: p.read_bytes() for p in (d / "index").iterdir()})
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if isinstance(self.index, tuple):
            from laionknn.indexes.registry import create

            name, metric, build_params, threads, n, dim, files = self.index
            self.index = create(name, metric, threads=threads, **build_params)
            with _scratch() as d:
                for fname, data in files.items():
                    (d / fname).write_bytes(data)
                self.index.load(d, n, dim)


@dataclass
class ShardAnswer:
    """One shard's answer for the query rows it was sent: ids global int64 (m, k), dists float64."""

    shard: int
    rows: np.ndarray | None  # query rows answered (None: all)
    ids: np.ndarray
    dists: np.ndarray
    seconds: float
    build_id: str
    pid: int


def _quiet():
    from laionknn.distributed.engine import _quiet_inside

    return _quiet_inside()


def _build_shard(shard: int, backend: str, metric: str, build_params: dict, threads: int, source: ShardSource,
                 fingerprint: str | None, use_cache: bool) -> ShardIndex:
    """Task: build (or load from the cache, keyed by fingerprint + row range) the index of one shard."""
    from threadpoolctl import threadpool_limits

    from laionknn.indexes.runner import SweepTarget, build_or_load

    target = SweepTarget(database=source, queries=np.zeros((0, source.dim), np.float32), metric=Metric.parse(metric),
                         data="", size="", dataset=f"shard {shard}")
    fp = f"{fingerprint}:rows={source.start}-{source.stop}" if fingerprint else None
    with _quiet(), threadpool_limits(limits=threads):
        index, buildtime, cached, nbytes = build_or_load(backend, target, build_params, threads=threads,
                                                         fingerprint=fp, use_cache=use_cache and fp is not None)
    return ShardIndex(shard, backend, index, source, buildtime=buildtime, cached=cached, index_bytes=nbytes)


def _search_shard(holder: ShardIndex, queries: np.ndarray, k: int, knobs: dict, rows=None, probes=None,
                  coarse=None) -> ShardAnswer:
    """Task: one shard's top-min(k, shard rows) for ``queries[rows]``, ids made global, padded to k."""
    from threadpoolctl import threadpool_limits

    index = holder.index
    q = queries if rows is None else queries[rows]
    kk = min(int(k), holder.rows)
    t0 = time.perf_counter()
    with _quiet(), threadpool_limits(limits=index.threads):
        if knobs:
            index.set_query_params(**knobs)
        if holder.backend == "exact":
            from laionknn import exact

            res = exact.knn(holder.source, q, kk, index.metric, dists64=True, threads=index.threads)
            ids, dists = res.ids, res.attrs["dists64"]
        elif probes is not None:
            ids, dists = _search_preassigned(index, q, kk, probes, coarse)
        else:
            res = index.search(q, kk)
            ids, dists = res.ids, res.dists.astype(np.float64)
    seconds = time.perf_counter() - t0
    ids = np.asarray(ids, dtype=np.int64)
    if not holder.global_ids:
        ids = np.where(ids >= 0, ids + holder.source.start, -1)
    dists = np.where(ids >= 0, dists, np.inf)
    if kk < k:
        pad = k - kk
        ids = np.concatenate([ids, np.full((ids.shape[0], pad), -1, np.int64)], axis=1)
        dists = np.concatenate([dists, np.full((dists.shape[0], pad), np.inf)], axis=1)
    return ShardAnswer(holder.shard, rows, ids, dists, seconds, holder.build_id, holder.pid)


def merge_answers(n_queries: int, k: int, answers: list[ShardAnswer]) -> tuple[np.ndarray, np.ndarray]:
    """The shards' answers combined by the exact engine's associative merge: the top-k of their union
    by ``(distance, id)``. Returns float64 dists (n_queries, k) ascending and int64 ids (-1: fewer than
    k found)."""
    parts = []
    for a in answers:
        if a.rows is None:
            d, i = a.dists, a.ids
        else:  # routed: this shard saw only some queries
            d = np.full((n_queries, k), np.inf)
            i = np.full((n_queries, k), -1, np.int64)
            d[a.rows], i[a.rows] = a.dists, a.ids
        parts.append(Candidates(d, d, i))
    if not parts:
        return np.full((n_queries, k), np.inf), np.full((n_queries, k), -1, np.int64)
    state = reduce(lambda x, y: merge(x, y, k), parts)
    dd, ii = exact_topk(state.lo, state.ids, k)
    if dd.shape[1] < k:
        pad = k - dd.shape[1]
        dd = np.concatenate([dd, np.full((n_queries, pad), np.inf)], axis=1)
        ii = np.concatenate([ii, np.full((n_queries, pad), -1, np.int64)], axis=1)
    return dd, ii


# --- IVF: one quantizer for the whole database -----------------------------------------------------------
def _faiss_bytes(index) -> np.ndarray:
    import faiss

    return faiss.serialize_index(index)


def _faiss_from_bytes(blob: np.ndarray):
    import faiss

    return faiss.deserialize_index(blob)


def _assign_rows(template: np.ndarray, metric: str, source: ShardSource, threads: int) -> np.ndarray:
    """Task: the coarse list of every row of ``source`` (int64, one per row), with the shared quantizer."""
    import faiss

    from laionknn.indexes.base import float_blocks

    faiss.omp_set_num_threads(threads)
    whole = _faiss_from_bytes(template)  # owns the quantizer: keep it alive while it is used
    ivf = faiss.extract_index_ivf(whole)
    out = np.empty(source.n, np.int64)
    for lo, block in float_blocks(source, Metric.parse(metric)):
        _, a = ivf.quantizer.search(block, 1)
        out[lo:lo + block.shape[0]] = a[:, 0]
    source.close()
    return out


def _fill_ivf(shard: int, backend: str, metric: str, build_params: dict, threads: int, template: np.ndarray,
              source: ShardSource, rows: np.ndarray | None, lists: np.ndarray) -> ShardIndex:
    """Task: a copy of the trained empty index filled with this shard's rows (``rows``: sorted global
    ids taken from the whole file, routed layout; None: all rows of ``source``) at their lists."""
    import faiss
    from faiss.contrib.ivf_tools import add_preassigned

    from laionknn.indexes.base import float_blocks
    from laionknn.indexes.registry import create

    t0 = time.perf_counter()
    faiss.omp_set_num_threads(threads)
    index = create(backend, metric, threads=threads, **build_params)
    index.index = _faiss_from_bytes(template)
    ivf = faiss.extract_index_ivf(index.index)
    with _quiet():
        for lo, block in float_blocks(source, index.metric):
            hi = lo + block.shape[0]
            if rows is None:
                ids = np.arange(source.start + lo, source.start + hi, dtype=np.int64)
                add_preassigned(ivf, block, np.ascontiguousarray(lists[lo:hi]), ids)
                continue
            a, b = np.searchsorted(rows, [source.start + lo, source.start + hi])
            if b > a:
                ids = np.ascontiguousarray(rows[a:b])
                add_preassigned(ivf, np.ascontiguousarray(block[ids - source.start - lo]),
                                np.ascontiguousarray(lists[a:b]), ids)
    source.close()
    index.n, index.dim = int(ivf.ntotal), source.dim
    index._apply_query_params()
    return ShardIndex(shard, backend, index, source, buildtime=time.perf_counter() - t0, cached=False,
                      index_bytes=len(_faiss_bytes(index.index)), rows=index.n, global_ids=True)


def _search_preassigned(index, queries: np.ndarray, k: int, probes: np.ndarray, coarse: np.ndarray):
    """Scan exactly the given lists (-1: skip) of this shard's IVF index for each query."""
    import faiss
    from faiss.contrib.ivf_tools import search_preassigned

    from laionknn.indexes.base import finish, prepare_queries

    faiss.omp_set_num_threads(index.threads)
    q = prepare_queries(queries, index.metric, index.dim)
    ivf = faiss.extract_index_ivf(index.index)
    nprobe = probes.shape[1]
    ivf.nprobe = nprobe
    d, i = search_preassigned(ivf, q, k, np.ascontiguousarray(probes), np.ascontiguousarray(coarse, np.float32))
    res = finish(i, d, similarity=index.metric is not Metric.L2)
    return res.ids, res.dists.astype(np.float64)


def assign_lists(sizes: np.ndarray, n_shards: int) -> np.ndarray:
    """Owner shard of each inverted list: largest list first, to the shard with the fewest rows so far
    (ties: the lower shard). Pure; sizes: rows per list. Returns int64 (n_lists,)."""
    owner = np.empty(len(sizes), np.int64)
    load = np.zeros(n_shards, np.int64)
    for lst in np.argsort(-np.asarray(sizes), kind="stable"):
        s = int(np.argmin(load))
        owner[lst] = s
        load[s] += int(sizes[lst])
    return owner


def check_shards(shards: int, n_rows: int, what: str) -> int:
    """``shards`` when 1 <= shards <= n_rows, else a UsageError (each shard needs at least one row)."""
    from laionknn.validation import check_count

    shards = check_count(shards, "--shards")
    if shards > n_rows:
        raise UsageError(f"--shards {shards}: the database {what} has {n_rows} rows, so ask for 1 to {n_rows} "
                         f"shards (each shard needs at least one row)")
    return shards


# --- the driver -------------------------------------------------------------------------------------------
@dataclass
class SearchInfo:
    """What one distributed search did: wall seconds, each shard's own search seconds, the driver's merge
    seconds, (query, shard) pairs sent, mean shards per query, shards rebuilt since :meth:`build`."""

    seconds: float
    shard_seconds: list[float]
    merge_seconds: float
    pairs: int
    shards_per_query: float
    recomputed: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


class ShardedIndex:
    """One backend's index over ``shards`` row ranges of the HDF5 file ``database_path``, on a Dask
    ``client``. ``layout``: ``rows`` (each shard builds the backend's own index; every backend),
    ``broadcast`` or ``routed`` (IVF backends, one shared quantizer; see the module docstring).

    Life cycle: ``build()`` → ``scatter(queries)`` → ``search(k, **knobs)`` (any number of times)."""

    def __init__(self, client, backend: str, database_path: "str | os.PathLike[str]", metric: "Metric | str",
                 build_params: dict | None = None, *, shards: int, key: str | None = None, threads: int = 1,
                 layout: str = "rows", use_cache: bool = True, fingerprint: str | None = None) -> None:
        from laionknn.indexes.registry import create, get_backend
        from laionknn.io import VectorFile

        if layout not in LAYOUTS:
            raise UsageError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
        if layout != "rows" and backend not in IVF_BACKENDS:
            raise UsageError(f"--route {layout} needs an IVF backend with whole inverted lists "
                             f"({', '.join(IVF_BACKENDS)}); {backend!r} is not one; drop --route or pick one of them")
        self.client, self.backend, self.layout = client, backend, layout
        self.path = str(Path(database_path).resolve())
        self.metric = Metric.parse(metric)
        from laionknn.validation import check_threads

        self.threads = check_threads(threads)
        # parameters checked here, before any task: unknown keys fail on the driver
        self.build_params = create(backend, self.metric, threads=self.threads, **(build_params or {})).build_params
        self.cls = get_backend(backend)
        with VectorFile(self.path, key) as db:
            self.key, self.n, self.dim, self.dtype = db.key, int(db.n), int(db.dim), np.dtype(db.dtype)
        shards = check_shards(shards, self.n, self.path)
        self.plan = plan_shards(self.n, shards)
        self.use_cache, self.fingerprint = use_cache, fingerprint
        self.holders: list = []
        self.build_ids: list[str] = []
        self.owner: np.ndarray | None = None
        self.quantizer = None
        self.queries = None

    def _source(self, start: int, stop: int) -> ShardSource:
        return ShardSource(self.path, self.key, start, stop, self.dim, self.dtype)

    # --- build -----------------------------------------------------------------------------------
    def build(self) -> dict:
        """Build every shard (in parallel on the workers); returns ``{"seconds", "shard_seconds",
        "cached", "index_bytes", "shard_rows", "train_seconds"}``."""
        t0 = time.perf_counter()
        train = 0.0
        if self.layout == "rows":
            self.holders = [self.client.submit(_build_shard, t.shard, self.backend, self.metric.value,
                                               self.build_params, self.threads, self._source(t.start, t.stop),
                                               self.fingerprint, self.use_cache, pure=False) for t in self.plan]
        else:
            train = self._build_ivf()
        # one small task per shard, run where the index lives: only the facts travel
        info = self.client.gather([self.client.submit(_describe, h, pure=False) for h in self.holders])
        self.build_ids = [i["build_id"] for i in info]
        return {"seconds": time.perf_counter() - t0, "train_seconds": train,
                "shard_seconds": [i["buildtime"] for i in info], "cached": [i["cached"] for i in info],
                "index_bytes": [i["index_bytes"] for i in info], "shard_rows": [i["rows"] for i in info],
                "pids": [i["pid"] for i in info]}

    def _build_ivf(self) -> float:
        from laionknn.indexes.registry import create
        from laionknn.io import VectorFile

        t0 = time.perf_counter()
        template = create(self.backend, self.metric, threads=self.threads, **self.build_params)
        with VectorFile(self.path, self.key) as db:
            template.train_empty(db)
        blob = _faiss_bytes(template.index)
        import faiss

        self.quantizer = faiss.extract_index_ivf(template.index).quantizer
        self._template = template  # keeps the quantizer alive
        train = time.perf_counter() - t0
        blob_f = self.client.scatter(blob, broadcast=True, hash=False)
        parts = [self.client.submit(_assign_rows, blob_f, self.metric.value, self._source(t.start, t.stop),
                                    self.threads, pure=False) for t in self.plan]
        lists = np.concatenate(self.client.gather(parts))
        nlist = int(faiss.extract_index_ivf(template.index).nlist)
        args = (self.backend, self.metric.value, self.build_params, self.threads, blob_f)
        if self.layout == "broadcast":
            self.holders = [self.client.submit(_fill_ivf, t.shard, *args, self._source(t.start, t.stop), None,
                                               lists[t.start:t.stop], pure=False) for t in self.plan]
            return train
        self.owner = assign_lists(np.bincount(lists, minlength=nlist), len(self.plan))
        shard_of_row = self.owner[lists]
        self.holders = []
        for s in range(len(self.plan)):
            rows = np.flatnonzero(shard_of_row == s).astype(np.int64)
            self.holders.append(self.client.submit(_fill_ivf, s, *args, self._source(0, self.n), rows, lists[rows],
                                                   pure=False))
        return train

    # --- search ------------------------------------------------------------------------------------
    def scatter(self, queries: np.ndarray) -> None:
        """Send the queries to every worker once (their original values; each backend prepares them)."""
        self.queries_array = np.asarray(queries)
        self.queries = self.client.scatter(self.queries_array, broadcast=True, hash=False)

    def search(self, k: int, **knobs) -> tuple[KnnResult, SearchInfo]:
        """The merged top-k of every query: KnnResult(ids int64 0-based global, dists float32 ascending)."""
        from laionknn.indexes.base import prepare_queries

        if self.queries is None:
            raise UsageError("call scatter(queries) before search()")
        nq = int(self.queries_array.shape[0])
        t0 = time.perf_counter()
        if self.layout == "routed":
            nprobe = int(knobs.get("nprobe", self.cls.query_defaults.get("nprobe", 1)))
            q = prepare_queries(self.queries_array, self.metric, self.dim)
            coarse, probes = self.quantizer.search(q, nprobe)
            owners = np.where(probes >= 0, self.owner[np.maximum(probes, 0)], -1)
            futures = []
            for s, holder in enumerate(self.holders):
                mine = owners == s
                rows = np.flatnonzero(mine.any(axis=1))
                if rows.size == 0:
                    continue
                p = np.where(mine[rows], probes[rows], -1)
                futures.append(self.client.submit(_search_shard, holder, self.queries, k, knobs, rows, p,
                                                  coarse[rows], pure=False))
        else:
            futures = [self.client.submit(_search_shard, h, self.queries, k, knobs, pure=False) for h in self.holders]
        answers: list[ShardAnswer] = self.client.gather(futures)
        t1 = time.perf_counter()
        dd, ii = merge_answers(nq, k, answers)
        t2 = time.perf_counter()
        pairs = sum(nq if a.rows is None else len(a.rows) for a in answers)
        recomputed = sorted(a.shard for a in answers if self.build_ids and a.build_id != self.build_ids[a.shard])
        info = SearchInfo(seconds=t2 - t0, shard_seconds=[a.seconds for a in answers], merge_seconds=t2 - t1,
                          pairs=pairs, shards_per_query=pairs / nq if nq else 0.0, recomputed=recomputed,
                          pids=[a.pid for a in answers])
        return KnnResult(ids=ii, dists=dd.astype(np.float32)), info

    def close(self) -> None:
        futures = [f for f in [*self.holders, self.queries] if f is not None]
        if futures:
            self.client.cancel(futures)
        self.holders, self.queries = [], None


def _describe(h: ShardIndex) -> dict:
    """Task: the small facts of a built shard (the index stays where it is)."""
    return {"build_id": h.build_id, "buildtime": h.buildtime, "cached": h.cached, "index_bytes": h.index_bytes,
            "rows": h.rows, "pid": h.pid}


__all__ = ["ShardIndex", "ShardSource", "ShardedIndex", "SearchInfo", "assign_lists", "check_shards", "merge_answers"]
