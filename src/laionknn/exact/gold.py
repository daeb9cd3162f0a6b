"""Gold-standard files from the exact engine: inputs by path, output in the official layout, resumable."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from laionknn import workspace
from laionknn.errors import LaionKnnError, OutputError, UsageError
from laionknn.fsutil import check_free_space, check_writable, explain_os_error
from laionknn.exact import checkpoint
from laionknn.exact.engine import knn
from laionknn.io import VectorFile, write_gold
from laionknn.types import KnnResult, Metric

log = logging.getLogger(__name__)


def default_gold_path(database_path: Path, queries_path: Path, k: int, metric: Metric) -> Path:
    """``<gold_dir>/gold-<database stem>--<queries stem>-k=<k>-<metric>.h5``."""
    return workspace.gold_dir() / f"gold-{database_path.stem}--{queries_path.stem}-k={k}-{metric.value}.h5"


def resolve_out(out: "str | os.PathLike[str] | None", database_path: Path, queries_path: Path, k: int,
                metric: Metric) -> Path:
    """The gold file to write: ``out`` itself, or inside ``out`` under the default name when ``out`` is an
    existing folder or ends with a path separator (``--out`` names a folder on every command), or the
    default path under the workspace when ``out`` is None."""
    if out is None:
        return default_gold_path(database_path, queries_path, k, metric)
    text = os.fspath(out)
    if Path(text).is_dir() or text.endswith(("/", os.sep)):
        return Path(text) / default_gold_path(database_path, queries_path, k, metric).name
    return Path(text)


def checkpoint_path(out: Path) -> Path:
    """Where the checkpoint of a run writing ``out`` lives (one per output file)."""
    tag = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:10]
    return workspace.checkpoints_dir() / f"{out.name}.{tag}.ckpt.npz"


def resolve_metric(metric: "str | Metric | None", normalize: bool) -> Metric:
    """``--metric`` plus ``--normalize`` to one :class:`Metric` (normalised dot is cosine)."""
    m = Metric.parse(metric or "dot")
    if normalize:
        if m not in (Metric.DOT, Metric.COSINE):
            raise UsageError(f"--normalize only applies to the dot metric, not {m.value}")
        return Metric.COSINE
    return m


def gold_standard(database_path: "str | os.PathLike[str]", queries_path: "str | os.PathLike[str]", k: int, *,
                  normalize: bool = False, out: "str | os.PathLike[str] | None" = None,
                  memory: "int | str | None" = None, resume: bool = False, metric: "str | Metric | None" = None,
                  threads: int | None = None, blas: str | None = None, block_rows: int | None = None,
                  query_batch: int | None = None, checkpoint_every: float = 0.0) -> Path:
    """Compute the exact k-NN of every query and write an official gold-standard file (atomic).

    The file holds ``knns`` int32 (n_queries, k) 1-based and ``dists`` float32 ascending (``1 - dot``;
    squared L2 or bit counts for those metrics), attributes ``metric``, ``normalize``, ``k``,
    ``n_rescored``, ``n_tie_at_k`` and a dataset ``tie_at_k`` (uint8 per query: ranks k and k+1 have
    equal float64 distance). The checkpoint (see :func:`checkpoint_path`) is continued with
    ``resume`` and removed once the file is written. Returns the output path.
    """
    database_path, queries_path = Path(database_path), Path(queries_path)
    m = resolve_metric(metric, normalize)
    out = resolve_out(out, database_path, queries_path, k, m)
    ckpt = checkpoint_path(out)
    check_writable(out.parent, "gold output")  # before the work: a read-only folder fails now, not at the end
    if checkpoint.exists(ckpt) and not resume:
        log.warning("starting over: removing the checkpoint %s (pass --resume to continue it)", ckpt)
        checkpoint.remove(ckpt)
    with VectorFile(queries_path) as vq:
        queries = vq.read()
    # knns int32 + dists float32 + tie_at_k uint8 per query, plus HDF5 headers: refuse now, not after the pass
    check_free_space(out.parent, len(queries) * (8 * k + 1) + (64 << 10), f"writing {out}")
    with VectorFile(database_path) as db:
        res = knn(db, queries, k, m, memory=memory, threads=threads, blas=blas, checkpoint=ckpt, resume=resume,
                  block_rows=block_rows, query_batch=query_batch, checkpoint_every=checkpoint_every)
    try:
        write_gold_standard(out, res, database_path, queries_path, k, m)
    except (OSError, LaionKnnError) as exc:
        detail = explain_os_error(exc, exc.filename or out) if isinstance(exc, OSError) else str(exc)
        kept = (f"; the computed state is kept in {ckpt}: fix the output and rerun the same command with --resume "
                f"to write the file without computing again") if checkpoint.exists(ckpt) else ""
        raise OutputError(f"cannot write {out}: {detail}{kept}") from None
    checkpoint.remove(ckpt)
    return out


def write_gold_standard(out: Path, res: KnnResult, database_path: Path, queries_path: Path, k: int,
                        metric: Metric) -> Path:
    """Write an exact result (from :func:`laionknn.exact.knn` or the Dask engine) as a gold-standard file.

    Only the answer and engine-independent facts are stored (no timings, no block sizes), so every
    engine computing the same answer writes the same bytes.
    """
    tie = np.asarray(res.attrs["tie_at_k"], dtype=np.uint8)
    attrs = {"metric": metric.value, "normalize": int(metric is Metric.COSINE), "k": int(k),
             "n_rescored": int(res.attrs["n_rescored"]), "n_tie_at_k": int(tie.sum()),
             "database": Path(database_path).name, "queries": Path(queries_path).name,
             "engine": "laionknn.exact: certified filter (float32, bf16 or int16) with a rigorous error bound + float64 "
                       "rescoring"}
    write_gold(out, KnnResult(res.ids, res.dists), attrs=attrs, datasets={"tie_at_k": tie})
    log.info("wrote %s (%d queries, k=%d, %d pairs rescored, %d ties at k)", out, len(tie), k,
             attrs["n_rescored"], attrs["n_tie_at_k"])
    return Path(out)
