"""laionknn's own index: IVF over a quantised residual-PCA head, scanned over the query batch.

The benchmark searches a batch of 10k queries at once, so the work of one inverted list is shared by
every query that probes it: the list's codes are loaded once and scored against all of those queries.

Build (a training sample, then two passes over the database, block by block):

1. k-means (``nlist`` lists, ``niter`` rounds, seeded) on a sample of ``train_size`` rows;
2. residual PCA: the rotation that concentrates the sample's residuals ``x - centroid(x)`` into
   their first ``head`` dimensions; each head dimension is quantised uniformly to ``bits`` (8 or 4)
   between the 0.1 % and 99.9 % quantiles of the sample;
3. pass 1: each row's list and the codes of its residual head ``(x - c) @ R[:, :head]``; rows are
   then laid out list by list, the codes in panels of 16 rows (:mod:`laionknn.indexes.ivfgemm_native`);
4. pass 2 (``laionknn-ivfgemm``): the float16 originals in that layout, for the exact re-rank.

Search (``q . x = q . c + q . r``, the first term exact and shared by the list, the second estimated
as ``q . lo + (q_head * step) . code``):

1. one product queries x centroids, the ``nprobe`` lists nearest in L2 per query (as rows were
   assigned); one product for the query heads;
2. the (query, list) pairs grouped by list; each list's codes scored against its queries and a
   top-C per query of the estimates kept. Compiled kernel (``avx512``, AVX-512 VNNI): the query
   weights in int8, exact integer sums by ``vpdpbusd``, the threshold compare fused with the scoring
   (no score matrix). Fallback (``numba``: no compiled module, ``LAIONKNN_NATIVE=off`` or no VNNI):
   a list's codes unpacked to float32, one sgemm (:func:`head_scores`) and numba heaps;
3. ``laionknn-ivfgemm``: the ``C = k * k_factor`` candidates re-scored exactly on the float16
   originals, the top k returned. ``laionknn-ivfgemm-q4`` (the 2024 task 3 mode, 4-bit codes) keeps no
   originals: its answer is the estimate's top k.

Threads: the queries are split in ``threads`` contiguous ranges, one thread each (the compiled
kernels' own threads, or the index's pool with numpy's BLAS at one thread for the fallback); the big
products of step 1 use BLAS with ``threads`` threads.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from laionknn.errors import DataError, UsageError
from laionknn.indexes import ivfgemm_kernels as kern
from laionknn.indexes import ivfgemm_native as nat
from laionknn.indexes.base import Index, finish, float_blocks, raw_blocks, sample_rows
from laionknn.types import KnnResult, Metric

FORMAT = 2
ASSIGN_ROWS = 8192  # rows scored against the centroids at a time (8192 x 4096 float32 = 128 MiB at most)


def head_scores(qhead: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(m, d') x (r, d')^T -> ``out`` (m, r) float32: the one product per list. numpy's sgemm today; the
    seam where a faster kernel (bf16 / AMX, issue 16) can be substituted with the same contract."""
    return np.matmul(qhead, rows.T, out=out)


class Scratch:
    """Buffers one scanning thread reuses from list to list (a fresh array of a few hundred KB per
    list costs its page faults every time): ``get(name, shape, dtype)`` is a view of a buffer grown
    on demand."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        size = int(np.prod(shape))
        buf = self._bufs.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._bufs[name] = np.empty(max(size, 2 * (buf.size if buf is not None else 0)), dtype=dtype)
        return buf[:size].reshape(shape)


def nearest_centroid(x: np.ndarray, centroids: np.ndarray, half_sq: np.ndarray) -> np.ndarray:
    """The L2-nearest centroid of each row (int32): argmax of ``x . c - |c|^2 / 2``, a block at a time."""
    out = np.empty(len(x), dtype=np.int32)
    for lo in range(0, len(x), ASSIGN_ROWS):
        s = x[lo:lo + ASSIGN_ROWS] @ centroids.T
        s -= half_sq[None, :]
        out[lo:lo + len(s)] = np.argmax(s, axis=1)
    return out


def kmeans(x: np.ndarray, k: int, niter: int, seed: int, bar=None) -> np.ndarray:
    """Lloyd's k-means of the float32 rows ``x`` into ``k`` centroids, seeded: initial centroids are
    ``k`` distinct random rows; an emptied cluster restarts at a random row. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    cent = np.ascontiguousarray(x[np.sort(rng.choice(len(x), size=k, replace=False))], dtype=np.float32)
    for it in range(niter):
        if bar is not None:
            bar.describe(f"k-means {k} lists, round {it + 1}/{niter}")
        labels = nearest_centroid(x, cent, 0.5 * np.einsum("ij,ij->i", cent, cent))
        sums = np.zeros((k, x.shape[1]), dtype=np.float64)
        counts = np.zeros(k, dtype=np.int64)
        kern.accumulate(x, labels, sums, counts)
        empty = np.flatnonzero(counts == 0)
        full = counts > 0
        cent[full] = (sums[full] / counts[full, None]).astype(np.float32)
        if empty.size:
            cent[empty] = x[rng.choice(len(x), size=empty.size, replace=False)]
    return cent


def residual_rotation(x: np.ndarray, cent: np.ndarray, labels: np.ndarray, head: int) -> np.ndarray:
    """(dim, head) float32: the top ``head`` principal directions of the residuals ``x - cent[labels]``
    (eigenvectors of their uncentred second moment, largest first; signs fixed so that each column's
    largest entry is positive, for determinism)."""
    r = (x - cent[labels]).astype(np.float64)
    w, v = np.linalg.eigh(r.T @ r)
    v = v[:, np.argsort(-w, kind="stable")[:head]]
    v *= np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])[None, :]
    return np.ascontiguousarray(v, dtype=np.float32)


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, max(1, min(parts, n)) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class IvfGemm(Index):
    """IVF + 8-bit residual-PCA head scored over the query batch, exact float16 re-rank."""

    name = "laionknn-ivfgemm"
    library = "laionknn"
    metrics = frozenset({Metric.DOT, Metric.COSINE})
    build_defaults = {"nlist": 1024, "head": 128, "bits": 8, "train_size": 51_200, "niter": 10, "seed": 0}
    query_defaults = {"nprobe": 16, "k_factor": 4}
    keeps_originals = True
    ARRAYS = ("centroids", "rot", "lo", "step", "offsets", "list_panel", "ids", "codes", "orig", "inv_norm")

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        head = min(dim, int(build_params.get("head", cls.build_defaults["head"])))
        bits = int(build_params.get("bits", cls.build_defaults["bits"]))
        originals = dim * 2 + 4 if cls.keeps_originals else 0  # float16 row, inverse norm
        return n * (math.ceil(head * bits / 8) + 4 + originals)  # codes, int32 id

    # --- parameters ----------------------------------------------------------------------------------
    def _check_build(self) -> tuple[int, int, int, int]:
        p = self.build_params
        nlist, head, niter, bits = int(p["nlist"]), int(p["head"]), int(p["niter"]), int(p["bits"])
        if not 1 <= nlist <= self.n:
            raise UsageError(f"backend {self.name!r}: nlist={nlist} lists for {self.n} vectors; choose "
                             f"1 <= nlist <= {self.n} (about sqrt(n) is usual: 1024 at 1M rows)")
        if self.dim < 2:
            raise UsageError(f"backend {self.name!r} needs vectors of at least 2 dimensions; the data has {self.dim}")
        if not 1 <= head <= self.dim:
            raise UsageError(f"backend {self.name!r}: head={head} PCA dimensions but the data has {self.dim}; "
                             f"choose 1 <= head <= {self.dim}")
        if bits not in (4, 8):
            raise UsageError(f"backend {self.name!r}: bits={bits}; the head codes take 4 or 8 bits per dimension")
        if bits == 4 and head % 2:
            raise UsageError(f"backend {self.name!r}: head={head} with 4-bit codes; choose an even head "
                             f"(two codes per byte)")
        if self.n >= 2**31:
            raise UsageError(f"backend {self.name!r} indexes at most 2^31 - 1 rows; the database has {self.n}")
        size = int(p["train_size"])
        size = min(self.n, max(size, nlist))
        return nlist, head, niter, size

    def effective_query_params(self, k: int) -> dict:
        return {**self.query_params, "nprobe": min(int(self.query_params["nprobe"]), int(self.build_params["nlist"]))}

    @property
    def head(self) -> int:
        return int(self.build_params["head"])

    @property
    def bits(self) -> int:
        return int(self.build_params["bits"])

    # --- build ---------------------------------------------------------------------------------------
    def _build(self, database) -> None:
        from threadpoolctl import threadpool_limits

        from laionknn.progress import progress_bar

        nlist, head, niter, size = self._check_build()
        seed = int(self.build_params["seed"])
        self.build_params["train_size"] = size  # the record states the rows really trained on
        passes = 2 if self.keeps_originals else 1
        with threadpool_limits(limits=self.threads), \
                progress_bar(f"building {self.name}", passes * self.n, unit="rows") as bar:
            bar.describe(f"sampling {size} training rows")
            train = sample_rows(database, self.metric, size, seed=seed)
            cent = self._round_centroids(kmeans(train, nlist, niter, seed, bar))
            half_sq = 0.5 * np.einsum("ij,ij->i", cent, cent)
            rot = residual_rotation(train, cent, nearest_centroid(train, cent, half_sq), head)
            self._fit_codes(train, cent, half_sq, rot)
            del train
            bar.describe("pass 1: lists and head codes")
            labels = np.empty(self.n, dtype=np.int32)
            codes = np.empty((self.n, head), dtype=np.uint8)
            for lo, block in float_blocks(database, self.metric):
                lab = nearest_centroid(block, cent, half_sq)
                labels[lo:lo + len(block)] = lab
                codes[lo:lo + len(block)] = self._encode((block - cent[lab]) @ rot)
                bar.advance(len(block))
            order = np.argsort(labels, kind="stable")
            self.ids = order.astype(np.int32)
            self.offsets = np.zeros(nlist + 1, dtype=np.int64)
            np.cumsum(np.bincount(labels, minlength=nlist), out=self.offsets[1:])
            del labels
            self.list_panel = nat.list_panels(self.offsets)
            self.codes = nat.pack(codes[order], self.offsets, self.bits)
            del codes
            self.centroids, self.rot, self._proj = cent, rot, None
            if self.keeps_originals:
                bar.describe("pass 2: float16 originals")
                self._store_originals(database, order, bar)

    def _round_centroids(self, cent: np.ndarray) -> np.ndarray:
        """The centroids as searched (the float index keeps float32)."""
        return cent

    def _fit_codes(self, train, cent, half_sq, rot) -> None:
        """Per-dimension uniform codes of the head between the 0.1 % and 99.9 % quantiles of the sample."""
        r = (train - cent[nearest_centroid(train, cent, half_sq)]) @ rot
        lo, hi = np.quantile(r, 0.001, axis=0), np.quantile(r, 0.999, axis=0)
        levels = (1 << self.bits) - 1
        self.lo = lo.astype(np.float32)
        self.step = np.maximum((hi - lo) / levels, 1e-12).astype(np.float32)

    def _encode(self, values: np.ndarray) -> np.ndarray:
        levels = (1 << self.bits) - 1
        return np.clip(np.rint((values - self.lo) / self.step), 0, levels).astype(np.uint8)

    def _store_originals(self, database, order: np.ndarray, bar) -> None:
        """The float16 rows in index order (uint16 bit patterns) and, for cosine, 1 / norm per row."""
        where = np.empty(self.n, dtype=np.int64)
        where[order] = np.arange(self.n)
        self.orig = np.empty((self.n, self.dim), dtype=np.uint16)
        self.inv_norm = np.empty(self.n, dtype=np.float32)
        for lo, block in raw_blocks(database):
            half = np.asarray(block, dtype=np.float16)
            if not np.isfinite(half).all():
                raise DataError(f"the database has values float16 cannot hold near row {lo} (inf or nan after "
                                f"conversion); {self.name} stores float16 originals: scale the data")
            norms = np.linalg.norm(half.astype(np.float32), axis=1)
            if self.metric is Metric.COSINE and not (norms > 0).all():
                raise DataError(f"row {lo + int(np.argmin(norms))} of the database is zero in float16; cosine "
                                f"needs nonzero rows")
            dest = where[lo:lo + len(block)]
            self.orig[dest] = half.view(np.uint16)
            self.inv_norm[dest] = 1.0 / norms if self.metric is Metric.COSINE else 1.0
            bar.advance(len(block))

    # --- search --------------------------------------------------------------------------------------
    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        from threadpoolctl import threadpool_limits

        nlist = int(self.build_params["nlist"])
        nprobe = min(int(self.query_params["nprobe"]), nlist)
        cands = self._candidates(k)
        nq = len(queries)
        if getattr(self, "_proj", None) is None:  # centroids and rotation side by side: one product for both
            self._proj = np.ascontiguousarray(np.concatenate([self.centroids.T, self.rot], axis=1))
            self._half_sq = (0.5 * np.einsum("ij,ij->i", self.centroids, self.centroids)).astype(np.float32)
        with threadpool_limits(limits=self.threads):
            both = queries @ self._proj
        coarse, qh = both[:, :nlist], both[:, nlist:]
        # q . r ~ q_head . (lo + step * code) = q_head . lo + (q_head * step) . code; the query weights
        # (q_head * step) in int8 for the compiled scan. (query, list) pairs to scan: each query's nprobe
        # nearest lists in L2, as the rows were assigned (unit queries: argmax q.c - |c|^2/2; q.c alone
        # would favour tight lists with long centroids), nearest first. Both in numba over query ranges.
        qcodes = np.empty((nq, nat.padded_dims(self.head, self.bits)), dtype=np.int8)
        qscale = np.empty(nq, dtype=np.float32)
        qconst = np.empty(nq, dtype=np.float32)
        probes = np.empty((nq, nprobe), dtype=np.int64)
        base = np.empty((nq, nprobe), dtype=np.float32)

        def setup(lo: int, hi: int) -> None:
            kern.quantize_weights(qh, self.step, self.lo, lo, hi, qcodes, qscale, qconst)
            kern.probe_lists(both, nlist, self._half_sq, qconst, nprobe, lo, hi, probes, base)

        self._on_ranges(nq, setup)
        pair_q = np.repeat(np.arange(nq), nprobe)
        pair_l = probes.ravel()
        pair_base = base.ravel()
        # the compiled scan's passes: each query's nearest list, its second nearest, then the rest (the
        # thresholds are high early, so few rows of the farther lists enter the candidate buffers)
        rank = np.tile(np.minimum(np.arange(nprobe), 2).astype(np.int8), nq)
        extra_q, extra_l = self._extra_probes(coarse, probes, k)
        if extra_q.size:
            pair_q = np.concatenate([pair_q, extra_q])
            pair_l = np.concatenate([pair_l, extra_l])
            pair_base = np.concatenate([pair_base, coarse[extra_q, extra_l] + qconst[extra_q]])
            rank = np.concatenate([rank, np.full(len(extra_q), 2, dtype=np.int8)])
            by_query = np.argsort(pair_q, kind="stable")
            pair_q, pair_l, pair_base, rank = pair_q[by_query], pair_l[by_query], pair_base[by_query], rank[by_query]
        name = nat.kernel()
        if name == "numba":
            weights = np.ascontiguousarray(qh * self.step)
            out_pos, out_sim = self._search_numba(queries, k, cands, coarse, weights, qconst, pair_q, pair_l)
        else:
            pos, est = nat.scan(name, self.codes, self.head, self.bits, self.list_panel, self.offsets, qcodes, qscale,
                                pair_q, pair_l, pair_base, nlist, cands, self.threads, rank=rank)
            if self.keeps_originals:
                out_pos, out_sim = self._rerank(name, queries, pos, probes[:, 0], k)
            else:
                best = np.argsort(-est, axis=1, kind="stable")[:, :k]
                out_pos = np.take_along_axis(pos, best, 1)
                out_sim = np.take_along_axis(est, best, 1)
        ids = np.where(out_pos >= 0, self.ids[np.maximum(out_pos, 0)], -1)
        return finish(ids, out_sim, similarity=True)

    def _rerank(self, name: str, queries: np.ndarray, pos: np.ndarray, nearest: np.ndarray, k: int):
        """The compiled exact re-rank with the queries taken in the order of their nearest list: most
        candidates of a query lie in that list, so consecutive queries fetch many of the same float16
        rows, which the previous ones left in the cache (in query order every row comes from memory).
        Each query's answer does not depend on the order; it is put back in place."""
        order = np.argsort(nearest, kind="stable")
        got_pos, got_sim = nat.rerank(name, self.orig, self.inv_norm, queries[order], pos[order], k, self.threads)
        out_pos, out_sim = np.empty_like(got_pos), np.empty_like(got_sim)
        out_pos[order], out_sim[order] = got_pos, got_sim
        return out_pos, out_sim

    def _search_numba(self, queries, k, cands, coarse, weights, qconst, pair_q, pair_l):
        """The fallback scan: per list, the codes unpacked to float32 and one sgemm, numba heaps."""
        from threadpoolctl import threadpool_limits

        nq, nlist = len(queries), int(self.build_params["nlist"])
        dq = nat.padded_dims(self.head, self.bits)
        w = np.zeros((nq, dq), dtype=np.float32)
        w[:, :self.head] = weights
        out_pos = np.empty((nq, k), dtype=np.int64)
        out_sim = np.empty((nq, k), dtype=np.float32)
        qscaled = (queries * kern.F16_SCALE) if self.keeps_originals else None

        def work(lo: int, hi: int) -> None:
            heap_v = np.full((hi - lo, cands), -np.inf, dtype=np.float32)
            heap_i = np.full((hi - lo, cands), -1, dtype=np.int64)
            scratch = Scratch()
            a, b = np.searchsorted(pair_q, [lo, hi])
            lists = pair_l[a:b]
            order = np.argsort(lists, kind="stable")
            qrows = pair_q[a:b][order] - lo
            bounds = np.searchsorted(lists[order], np.arange(nlist + 1))
            for lst in np.flatnonzero(np.diff(bounds)):
                first, last = int(self.offsets[lst]), int(self.offsets[lst + 1])
                if first == last:
                    continue
                mine = qrows[bounds[lst]:bounds[lst + 1]]
                rows = lo + mine
                base = coarse[rows, lst] + qconst[rows]
                qw = np.take(w, rows, axis=0, out=scratch.get("q", (len(rows), dq), np.float32))
                codes = scratch.get("rows", (last - first, dq), np.float32)
                codes[...] = nat.unpack(self.codes, int(self.list_panel[lst]), last - first, self.head, self.bits)
                scores = head_scores(qw, codes, scratch.get("s", (len(rows), last - first), np.float32))
                kern.scan_list(scores, mine, base, first, heap_v, heap_i)
            if self.keeps_originals:
                kern.rerank_f16(self.orig, self.inv_norm, qscaled[lo:hi], heap_i, 0, hi - lo, k,
                                out_pos[lo:hi], out_sim[lo:hi])
            else:
                kern.heaps_to_topk(heap_v, heap_i, 0, hi - lo, out_pos[lo:hi], out_sim[lo:hi])

        with threadpool_limits(limits=1):
            self._on_ranges(nq, work)
        return out_pos, out_sim

    def _on_ranges(self, n: int, fn) -> None:
        """fn(lo, hi) over ``threads`` contiguous ranges of [0, n) on the index's threads (nogil kernels)."""
        parts = _ranges(n, self.threads)
        if len(parts) == 1:
            fn(*parts[0])
            return
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            for f in [pool.submit(fn, lo, hi) for lo, hi in parts]:
                f.result()

    def _extra_probes(self, coarse: np.ndarray, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(query, list) pairs beyond the nprobe nearest for the few queries whose probed lists hold
        fewer than k rows in all: the next nearest lists until they reach k (so every query gets k
        answers without raising nprobe for all of them)."""
        sizes = np.diff(self.offsets)
        short = np.flatnonzero(sizes[probes].sum(axis=1) < k)
        eq, el = [], []
        for q in short:
            order = np.argsort(-(coarse[q] - self._half_sq), kind="stable")
            order = order[~np.isin(order, probes[q])]
            need = k - int(sizes[probes[q]].sum())
            take = int(np.searchsorted(np.cumsum(sizes[order]), need)) + 1
            eq.append(np.full(min(take, len(order)), q))
            el.append(order[:take])
        if not eq:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=probes.dtype)
        return np.concatenate(eq).astype(np.int64), np.concatenate(el).astype(probes.dtype)

    def _candidates(self, k: int) -> int:
        return max(k, int(math.ceil(k * float(self.query_params["k_factor"]))))

    # --- persistence ---------------------------------------------------------------------------------
    def _arrays(self) -> list[str]:
        return list(self.ARRAYS)

    def _save(self, path: Path) -> None:
        for name in self._arrays():
            np.save(path / f"{name}.npy", getattr(self, name))
        meta = {"format": FORMAT, "backend": self.name, "metric": self.metric.value, "n": self.n, "dim": self.dim,
                "build_params": self.build_params}
        (path / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    def _load(self, path: Path) -> None:
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path} is not a saved {self.name} index ({exc}); save one with index.save()") from None
        if meta.get("format") != FORMAT or meta.get("backend") != self.name:
            raise UsageError(f"{path} holds a {meta.get('backend')} index of format {meta.get('format')}; this is "
                             f"{self.name} format {FORMAT}: rebuild it")
        if (meta["n"], meta["dim"], meta["metric"]) != (self.n, self.dim, self.metric.value):
            raise UsageError(f"{path} indexes {meta['n']} rows of {meta['dim']} ({meta['metric']}), not {self.n} "
                             f"rows of {self.dim} ({self.metric.value}); rebuild it for this database")
        self.build_params.update(meta["build_params"])
        self._proj = None
        for name in self._arrays():
            setattr(self, name, np.load(path / f"{name}.npy", allow_pickle=False))


class IvfGemmQ(IvfGemm):
    """The 2024 task 3 mode: no originals; the residual head in 4-bit codes (or 8); answers are the
    estimates' top k."""

    name = "laionknn-ivfgemm-q4"
    build_defaults = {"nlist": 1024, "head": 112, "bits": 4, "train_size": 51_200, "niter": 10, "seed": 0}
    query_defaults = {"nprobe": 16}
    keeps_originals = False
    ARRAYS = ("centroids", "rot", "lo", "step", "offsets", "list_panel", "ids", "codes")

    def _candidates(self, k: int) -> int:
        return k

    # the centroids are bytes of every vector here (4 * nlist * dim): stored as float16 (rounded before the
    # rows are assigned, so the saved index searches exactly as built), float32 in memory for the product
    def _round_centroids(self, cent):
        return cent.astype(np.float16).astype(np.float32)

    def _save(self, path: Path) -> None:
        full = self.centroids
        self.centroids = full.astype(np.float16)
        try:
            super()._save(path)
        finally:
            self.centroids = full

    def _load(self, path: Path) -> None:
        super()._load(path)
        self.centroids = self.centroids.astype(np.float32)
