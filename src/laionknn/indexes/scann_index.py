"""ScaNN: k-means tree partitioning, anisotropic 4-bit asymmetric hashing, exact float re-ranking.

ScaNN's builder takes the database as one float32 array, so this backend (alone) holds one full
float32 copy during the build; it is released as soon as ScaNN has built its own structures.
ScaNN answers dot products (higher is better) for DOT/COSINE, turned into ``1 - dot`` here. Search
threads: ``threads == 1`` runs serially; more uses ScaNN's own pool (as many threads as cores).

The index is serialised with paths relative to its folder (``relative_path=True``), so a cached
index loads back after the runner's atomic rename or a move of the whole workspace; a folder
written by an older save with absolute paths is re-pointed at its current location on load.

ScaNN's C++ core logs through absl straight to file descriptor 2, past Python's logging and ``-q``;
its build and load run with fd 2 captured, and the lines go to this module's logger at DEBUG
(``-vv`` shows them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from laionknn.errors import UsageError
from laionknn.fsutil import atomic_path
from laionknn.indexes.base import Index, finish, float_blocks
from laionknn.types import KnnResult, Metric


log = logging.getLogger(__name__)


@contextlib.contextmanager
def native_stderr_to_log(logger: logging.Logger = log):
    """Send what native code writes to fd 2 into ``logger`` at DEBUG instead of the console."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    logger.debug("scann: %s", line)


class ScannIndex(Index):
    name = "scann"
    library = "scann"
    build_defaults = {"num_leaves": 1000, "training_sample": 100_000, "dims_per_block": 2,
                      "anisotropic_threshold": 0.2}
    query_defaults = {"leaves_to_search": 32, "reorder": 100}

    @classmethod
    def min_index_bytes(cls, n, dim, build_params):
        return n * dim * 4  # the float32 copy kept for exact re-ranking

    def _build(self, database) -> None:
        from scann.scann_ops.py import scann_ops_pybind

        leaves = int(self.build_params["num_leaves"])
        if leaves < 1 or leaves > self.n:
            raise UsageError(f"backend 'scann': num_leaves={leaves} for {self.n} vectors; choose 1 <= num_leaves <= {self.n}")
        self.build_params["training_sample"] = min(self.n, int(self.build_params["training_sample"]))
        data = np.empty((self.n, self.dim), dtype=np.float32)
        for lo, block in float_blocks(database, self.metric):
            data[lo:lo + block.shape[0]] = block
        measure = "squared_l2" if self.metric is Metric.L2 else "dot_product"
        threshold = float(self.build_params["anisotropic_threshold"])
        builder = (scann_ops_pybind.builder(data, 10, measure)
                   .tree(num_leaves=leaves, num_leaves_to_search=min(leaves, int(self.query_params["leaves_to_search"])),
                         training_sample_size=int(self.build_params["training_sample"]))
                   .score_ah(int(self.build_params["dims_per_block"]),
                             anisotropic_quantization_threshold=threshold if measure == "dot_product" else float("nan"))
                   .reorder(int(self.query_params["reorder"])))
        builder.set_n_training_threads(self.threads)
        with native_stderr_to_log():
            self.searcher = builder.build()
        del data

    def knob_floors(self, k: int) -> dict[str, int]:
        return {"reorder": k}

    def effective_query_params(self, k: int) -> dict:
        # re-rank at least k candidates; search at most every leaf
        return {**self.query_params, "reorder": max(k, int(self.query_params["reorder"])),
                "leaves_to_search": min(int(self.query_params["leaves_to_search"]), int(self.build_params["num_leaves"]))}

    def _search(self, queries: np.ndarray, k: int) -> KnnResult:
        used = self.effective_query_params(k)
        reorder, leaves = int(used["reorder"]), int(used["leaves_to_search"])
        if self.threads > 1:
            ids, dists = self.searcher.search_batched_parallel(queries, final_num_neighbors=k,
                                                               pre_reorder_num_neighbors=reorder,
                                                               leaves_to_search=leaves)
        else:
            ids, dists = self.searcher.search_batched(queries, final_num_neighbors=k,
                                                      pre_reorder_num_neighbors=reorder, leaves_to_search=leaves)
        ids = np.asarray(ids).astype(np.int64)
        dists = np.asarray(dists, dtype=np.float32)
        if ids.shape[1] < k:  # ScaNN returns fewer columns when too few candidates were scored
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            dists = np.pad(dists, ((0, 0), (0, pad)), constant_values=np.nan)
        return finish(ids, dists, similarity=self.metric is not Metric.L2)

    def _save(self, path: Path) -> None:
        # relative asset paths: the folder may be renamed or moved after saving
        self.searcher.serialize(str(path), relative_path=True)

    def _load(self, path: Path) -> None:
        from scann.scann_ops.py import scann_ops_pybind

        _repoint_assets(path)
        with native_stderr_to_log():
            self.searcher = scann_ops_pybind.load_searcher(str(path))


_ASSET_PATH = re.compile(r'(asset_path:\s*")([^"]*)(")')


def _repoint_assets(folder: Path) -> None:
    """Make every ``asset_path`` of ``scann_assets.pbtxt`` name a file of ``folder`` itself when it does
    not already (absolute paths written by ``serialize`` without ``relative_path`` go stale as soon as
    the folder moves). The file is replaced atomically; nothing changes when the paths are good."""
    pbtxt = folder / "scann_assets.pbtxt"
    if not pbtxt.is_file():
        return
    text = pbtxt.read_text()

    def fix(m: re.Match) -> str:
        p = m.group(2)
        if not os.path.isabs(p) or Path(p).parent == folder.resolve():
            return m.group(0)
        return f"{m.group(1)}{Path(p).name}{m.group(3)}"

    fixed = _ASSET_PATH.sub(fix, text)
    if fixed != text:
        with atomic_path(pbtxt) as tmp:
            tmp.write_text(fixed)
