"""faiss float indexes: flat, IVF-Flat, IVF-SQ8, IVF + 4-bit fast-scan PQ + exact refine, IVF +
RaBitQ fast-scan + exact refine, HNSW-Flat, HNSW over SQ8 + exact refine, NSG.

faiss answers inner products for DOT/COSINE (higher is better); they become ``1 - ip`` here. For L2 it
answers squared distances already. Vectors are added block by block (float16 → float32 per block);
IVF and SQ codebooks are trained on a random sample gathered in one pass; the build parameter
``seed`` seeds that sample and faiss's k-means (coarse quantiser and PQ codebooks) alike, and
``train_size`` is recorded as the number of rows really trained on.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.indexes.base import Index, finish, float_blocks, probes_for_k, sample_rows, source_shape
from laionknn.types import KnnResult, Metric


def _faiss():
    import faiss

    return faiss


# the ``refine`` build knob of the IVF fast-scan indexes: the refinement layer's copy of the vectors,
# as (faiss factory suffix, bytes per dimension)
REFINE = {"flat": ("RFlat", 4), "fp16": ("Refine(SQfp16)", 2)}


def _refine_bytes(build_params) -> int:
    return REFINE.get(str(build_params.get("refine", "flat")), REFINE["flat"])[1]


class FaissIndex(Index):
    """Common machinery; subclasses give the factory string and push their knobs."""

    library = "faiss"
    trains = False

    def _factory(self) -> str:
        raise NotImplementedError

    def _faiss_metric(self):
        faiss = _faiss()
        return faiss.METRIC_L2 if self.metric is Metric.L2 else faiss.METRIC_INNER_PRODUCT

    def _before_add(self) -> None:
        """Set build-time knobs on the freshly made index (e.g. HNSW efConstruction)."""

    def _train_size(self) -> int:
        return self.n

    def _seed_training(self, seed: int) -> None:
        """Seed the library's own training (k-means); the sample is seeded by :meth:`train_empty`."""

    def _build(self, database) -> None:
        self.train_empty(database)
        self.reserve_refine(self.n)
        for _, block in float_blocks(database, self.metric):
            self.index.add(block)

    def reserve_refine(self, n: int) -> None:
        """Give the refinement layer's vector copy (IndexRefineFlat's float32 rows, Refine(SQfp16)'s
        float16 codes) room for ``n`` rows before the block-by-block adds. faiss grows it by resizing a
        std::vector, which doubles its capacity and copies: with a 15 GB copy that moment holds the old
        and the new buffer (about 2x the final size) and does not fit a 24 GB machine at 10M rows. The
        vector is sized once, then emptied: its capacity stays, so the adds never reallocate."""
        refine = getattr(self.index, "refine_index", None)
        if refine is None:
            return
        codes = _faiss().downcast_index(refine)
        if codes.ntotal or not hasattr(codes, "codes"):
            return  # not an empty flat-codes layer: leave it to faiss
        codes.codes.resize(int(n) * int(codes.code_size))
        codes.codes.resize(0)

    def train_empty(self, database) -> None:
        """Make ``self.index`` and train it (codebooks, coarse quantizer) on a sample of ``database``,
        without adding vectors: the sharded IVF layouts train one such index for the whole database
        and fill copies of it shard by shard (laionknn.distributed.search)."""
        faiss = _faiss()
        faiss.omp_set_num_threads(self.threads)
        n, dim, _ = source_shape(database)
        self.n, self.dim = self.n or n, self.dim or dim
        self.index = faiss.index_factory(self.dim, self._factory(), self._faiss_metric())
        self._before_add()
        if not self.index.is_trained:
            seed = int(self.build_params.get("seed", 0))
            size = self._train_size()
            if "train_size" in self.build_params:
                self.build_params["train_size"] = size  # the record states the rows really trained on
            self._seed_training(seed)
            self.index.train(sample_rows(database, self.metric, size, seed=seed))

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        faiss = _faiss()
        faiss.omp_set_num_threads(self.threads)
        dists, ids = self.index.search(queries, k)
        return finish(ids, dists, similarity=self.metric is not Metric.L2)

    def _save(self, path: Path) -> None:
        _faiss().write_index(self.index, str(path / "index.faiss"))

    def _load(self, path: Path) -> None:
        self.index = _faiss().read_index(str(path / "index.faiss"))

    def _inner(self):
        """The index under the refinement layer (or the index itself), downcast."""
        faiss = _faiss()
        base = self.index.base_index if hasattr(self.index, "base_index") else self.index
        return faiss.downcast_index(base)

    def _refine_factory(self) -> str:
        """The factory suffix of the refinement layer the ``refine`` build knob names."""
        refine = str(self.build_params["refine"])
        if refine not in REFINE:
            raise UsageError(f"backend {self.name!r}: refine={refine!r}; choose {' or '.join(map(repr, REFINE))} "
                             f"(float32 or float16 copy of the vectors for the exact re-rank)")
        return REFINE[refine][0]

    def _check_nlist(self) -> None:
        nlist = int(self.build_params["nlist"])
        if nlist < 1 or nlist > self.n:
            raise UsageError(f"backend {self.name!r}: nlist={nlist} lists for {self.n} vectors; choose "
                             f"1 <= nlist <= {self.n} (about sqrt(n) to 4*sqrt(n) is usual)")

    def _ivf_train_size(self) -> int:
        size = int(self.build_params["train_size"])
        return self.n if size <= 0 else min(self.n, size)


class FaissFlat(FaissIndex):
    """Brute force in float32 (IndexFlatIP / IndexFlatL2): fast, but not float64-exact."""

    name = "faiss-flat"

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * dim * 4

    def _factory(self) -> str:
        return "Flat"


class FaissIVFFlat(FaissIndex):
    name = "faiss-ivfflat"
    build_defaults = {"nlist": 1024, "train_size": 100_000, "seed": 0}
    query_defaults = {"nprobe": 16}
    code_bytes_per_dim = 4  # float32 vectors in the lists

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * (dim * cls.code_bytes_per_dim + 8)  # codes + int64 ids

    def _factory(self) -> str:
        self._check_nlist()
        return f"IVF{self.build_params['nlist']},Flat"

    def _train_size(self) -> int:
        return self._ivf_train_size()

    def _seed_training(self, seed: int) -> None:
        ivf = _faiss().extract_index_ivf(self.index)
        ivf.cp.seed = seed  # coarse k-means
        pq = getattr(ivf, "pq", None)
        if pq is not None:
            pq.cp.seed = seed  # PQ codebooks (fast-scan)

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            _faiss().extract_index_ivf(self.index).nprobe = int(self.query_params["nprobe"])

    def effective_query_params(self, k: int) -> dict:
        # faiss probes min(nprobe, nlist) lists
        return {**self.query_params, "nprobe": min(int(self.query_params["nprobe"]), int(self.build_params["nlist"]))}

    def knob_floors(self, k: int) -> dict[str, int]:
        # enough lists that even the k nearest of a query in the smallest lists fill k answers (the
        # refine layer of ivfpqfs re-ranks whatever valid candidates come back, so k suffices there)
        if getattr(self, "index", None) is None:  # not built (a describing instance): no lists to read
            return {}
        invlists = _faiss().extract_index_ivf(self.index).invlists
        return {"nprobe": probes_for_k([invlists.list_size(i) for i in range(invlists.nlist)], k)}


class FaissIVFSQ8(FaissIVFFlat):
    name = "faiss-ivfsq8"
    code_bytes_per_dim = 1
    keeps_originals = False

    def _factory(self) -> str:
        self._check_nlist()
        return f"IVF{self.build_params['nlist']},SQ8"


class FaissIVFPQFastScan(FaissIVFFlat):
    """IVF with 4-bit fast-scan PQ (``m`` sub-quantisers) and exact float refinement of the
    ``k * k_factor`` best candidates. ``refine`` says what the refinement layer keeps: ``flat`` a float32
    copy of the vectors (IndexRefineFlat, faiss's usual pairing), ``fp16`` a float16 copy
    (``Refine(SQfp16)``: half the memory, and exact for float16 data such as LAION's; the 10M grids use
    it, because a float32 copy of 10M × 768 rows, 30.7 GB, does not fit a 24 GB machine)."""

    name = "faiss-ivfpqfs"
    build_defaults = {"nlist": 1024, "m": 192, "train_size": 100_000, "seed": 0, "refine": "flat"}
    query_defaults = {"nprobe": 16, "k_factor": 4}

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        # 4-bit codes, ids, refine copy
        return n * (int(build_params.get("m", 192)) // 2 + 8 + dim * _refine_bytes(build_params))

    def _factory(self) -> str:
        self._check_nlist()
        m = int(self.build_params["m"])
        if m < 1 or self.dim % m:
            raise UsageError(f"backend {self.name!r}: m={m} must divide the dimension {self.dim}")
        return f"IVF{self.build_params['nlist']},PQ{m}x4fs,{self._refine_factory()}"

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            super()._apply_query_params()
            self.index.k_factor = float(self.query_params["k_factor"])


class FaissIVFRaBitQFastScan(FaissIVFFlat):
    """IVF + RaBitQ codes scanned 32 at a time (faiss >= 1.13 ``RaBitQfs``), then exact float refinement
    of ``k * k_factor`` candidates (``refine`` as for faiss-ivfpqfs: ``flat`` = ``RFlat``, ``fp16`` =
    ``Refine(SQfp16)``). ``nb_bits`` = 1 is the sign bit alone (the configuration the RaBitQ authors pair
    with refinement); 2-9 add extra bits per dimension. ``qb`` is the number of bits the query is
    quantised to for the fast-scan lookup tables (faiss's default 8)."""

    name = "faiss-ivfrabitqfs"
    build_defaults = {"nlist": 1024, "nb_bits": 1, "train_size": 100_000, "seed": 0, "refine": "flat"}
    query_defaults = {"nprobe": 16, "k_factor": 4, "qb": 8}

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        bits = int(build_params.get("nb_bits", 1))
        # codes and per-row factors, ids, refine copy
        return n * (math.ceil(dim * bits / 8) + 8 + dim * _refine_bytes(build_params))

    def _factory(self) -> str:
        self._check_nlist()
        bits = int(self.build_params["nb_bits"])
        if not 1 <= bits <= 9:
            raise UsageError(f"backend {self.name!r}: nb_bits={bits}; faiss RaBitQ takes 1 to 9 bits per dimension")
        return f"IVF{self.build_params['nlist']},RaBitQfs{bits},{self._refine_factory()}"

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            super()._apply_query_params()
            self.index.k_factor = float(self.query_params["k_factor"])
            qb = int(self.query_params["qb"])
            if not 1 <= qb <= 8:
                raise UsageError(f"backend {self.name!r}: qb={qb}; the query is quantised to 1 to 8 bits")
            self._inner().qb = qb


class FaissHNSW(FaissIndex):
    name = "faiss-hnsw"
    build_defaults = {"M": 16, "ef_construction": 100}
    query_defaults = {"ef_search": 32}

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * (dim * 4 + 2 * int(build_params.get("M", 16)) * 4)  # vectors + level-0 links

    def _factory(self) -> str:
        return f"HNSW{int(self.build_params['M'])},Flat"

    def _before_add(self) -> None:
        self._inner().hnsw.efConstruction = int(self.build_params["ef_construction"])

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            self._inner().hnsw.efSearch = int(self.query_params["ef_search"])

    def knob_floors(self, k: int) -> dict[str, int]:
        # faiss honours an efSearch below k and then returns short rows
        return {"ef_search": k}


class FaissHNSWSQ8(FaissHNSW):
    """HNSW over 8-bit scalar-quantised vectors, then exact float refinement of ``k * k_factor``."""

    name = "faiss-hnswsq8"
    build_defaults = {"M": 32, "ef_construction": 100, "train_size": 100_000, "seed": 0}
    query_defaults = {"ef_search": 32, "k_factor": 2}

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * (dim + 2 * int(build_params.get("M", 32)) * 4 + dim * 4)  # SQ8 codes, links, refine copy

    def _factory(self) -> str:
        return f"HNSW{int(self.build_params['M'])}_SQ8,RFlat"

    def _train_size(self) -> int:
        size = int(self.build_params["train_size"])
        return self.n if size <= 0 else min(self.n, size)

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            super()._apply_query_params()
            self.index.k_factor = float(self.query_params["k_factor"])

    def knob_floors(self, k: int) -> dict[str, int]:
        # the refine layer asks the HNSW for k * k_factor candidates
        return {"ef_search": int(math.ceil(k * float(self.query_params["k_factor"])))}


class FaissNSG(FaissIndex):
    """NSG graph over float vectors (``NSG{R},Flat``): out-degree ``R``, built from a k-NN graph of
    ``GK`` neighbours (faiss builds it with NN-descent); the search knob is ``search_L``."""

    name = "faiss-nsg"
    build_defaults = {"R": 32, "GK": 64}
    query_defaults = {"search_L": 32}

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        # the float32 vectors and at least one int32 per vertex of the graph (faiss saves each vertex's
        # edges up to an end marker, so a pruned graph saves fewer than R; its memory holds R)
        return n * (dim * 4 + 4)

    def _factory(self) -> str:
        return f"NSG{int(self.build_params['R'])},Flat"

    def _before_add(self) -> None:
        self._inner().GK = int(self.build_params["GK"])

    def _build(self, database) -> None:
        # NSG is built in one add() over every vector (it cannot grow afterwards), so the float32
        # copy is gathered first; IndexNSGFlat keeps that copy as its storage anyway
        faiss = _faiss()
        faiss.omp_set_num_threads(self.threads)
        self.index = faiss.index_factory(self.dim, self._factory(), self._faiss_metric())
        self._before_add()
        data = np.empty((self.n, self.dim), dtype=np.float32)
        for lo, block in float_blocks(database, self.metric):
            data[lo:lo + block.shape[0]] = block
        self.index.add(data)

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * (dim * 4 + 4)  # float32 storage, at least the end-of-list marker of each vertex

    def _apply_query_params(self) -> None:
        if getattr(self, "index", None) is not None:
            self._inner().nsg.search_L = int(self.query_params["search_L"])

    def knob_floors(self, k: int) -> dict[str, int]:
        return {"search_L": k}

    def effective_query_params(self, k: int) -> dict:
        # faiss's NSG::search walks a pool of max(search_L, k) candidates
        return {**self.query_params, "search_L": max(int(self.query_params["search_L"]), k)}


__all__ = ["FaissFlat", "FaissHNSW", "FaissHNSWSQ8", "FaissIVFFlat", "FaissIVFPQFastScan", "FaissIVFRaBitQFastScan",
           "FaissIVFSQ8", "FaissNSG"]
