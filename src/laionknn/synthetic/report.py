"""``laionknn stats``: the statistics of any vector file (real or synthetic) next to the real figures.

The library side only computes (no printing): :func:`dataset_stats` returns a dict; the CLI formats it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from laionknn.errors import DataError, UsageError
from laionknn.synthetic.model import load_frame
from laionknn.synthetic.fidelity import real_projection_recall
from laionknn.synthetic.stats import (LID_K, NEAR_DUPLICATE_COS, global_stats, knn_scores, lid_mle, normalize_rows,
                                      projection_recall)

log = logging.getLogger(__name__)


@dataclass
class StatsReport:
    """What ``laionknn stats`` prints. ``sample``: global statistics of the random sample;
    ``database``: nearest-neighbour figures of the sample against the first ``recall_rows`` rows;
    ``recall``: {32: r, 96: r} or empty; ``real``: the same global statistics of the 1024 real vectors."""

    path: Path
    n: int
    dim: int
    dtype: str
    sample: dict
    database: dict = field(default_factory=dict)
    recall: dict = field(default_factory=dict)
    recall_rows: int = 0
    recall_queries: int = 0
    queries_source: str = ""
    real: dict = field(default_factory=dict)

    @property
    def real_scale(self) -> int:
        """The published scale (rows) nearest ``recall_rows``, whose real figures ``real_recall`` holds."""
        return real_projection_recall(self.recall_rows)[0]

    @property
    def real_recall(self) -> dict[int, float]:
        """The organisers' real pca32/pca96 recall@30 at :attr:`real_scale`."""
        return real_projection_recall(self.recall_rows)[1]


def resolve_file(target: str, catalogs=None) -> tuple[Path, object | None]:
    """A path for ``target`` (an existing file, or a catalog name made present locally) and the
    catalog record when it was a name (None for plain paths)."""
    from laionknn.io.formats import user_path

    p = user_path(target)
    if p is not None:
        return p, None
    from laionknn.catalog import resolve
    # the module, not the package attribute: importing catalog/ensure.py rebinds ``laionknn.catalog.ensure``
    from laionknn.catalog.ensure import ensure

    record = resolve(target, catalogs)
    if record.kind == "gold":
        raise UsageError(f"{record.name} is a gold standard (neighbour ids), not a vector file; give a database "
                         f"or query file or name, e.g. synthetic-clip768v2-n=100K")
    return Path(ensure(record)), record  # present, downloaded and verified, or synthesised


def sample_rows(vf, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` distinct random rows of a VectorFile (all rows when it has fewer), float64, sorted ids."""
    ids = np.sort(rng.choice(vf.n, size=min(size, vf.n), replace=False))
    return np.vstack([vf.read(int(i), int(i) + 1, dtype=np.float64) for i in ids]), ids


def database_neighbours(sample: np.ndarray, sample_ids: np.ndarray, database: np.ndarray) -> dict:
    """Nearest-neighbour figures of ``sample`` rows against ``database`` (normalised float32 rows; the
    sample's own rows, by id, are excluded): mean cosine to the nearest other row, share of sample rows
    with a near-duplicate (cosine >= NEAR_DUPLICATE_COS), median LID (MLE, k = 10)."""
    xs = normalize_rows(sample)
    sims = np.empty((xs.shape[0], LID_K), np.float32)
    for i in range(0, xs.shape[0], 256):
        part = xs[i:i + 256]
        ids = knn_scores(database, part, LID_K + 1)
        s = np.einsum("qd,qkd->qk", part, database[ids])
        own = ids == sample_ids[i:i + 256, None]
        s[own] = -np.inf  # drop the row itself (if it is inside the database range)
        sims[i:i + 256] = -np.sort(-s, axis=1)[:, :LID_K]
    nn = sims[:, 0]
    dists = np.sqrt(np.maximum(2.0 - 2.0 * sims.astype(np.float64), 0.0))
    lid = lid_mle(dists)
    return {"nn_cos": float(nn.mean()), "near_dup_rate": float((nn >= NEAR_DUPLICATE_COS).mean()),
            "lid": float(np.median(lid[np.isfinite(lid)])) if np.isfinite(lid).any() else float("inf")}


def _load_normalised(vf, rows: int) -> np.ndarray:
    out = np.empty((rows, vf.dim), np.float32)
    for lo, block in vf.blocks(stop=rows, dtype=np.float32):
        out[lo:lo + len(block)] = normalize_rows(block)
    return out


def dataset_stats(target: str, *, sample: int = 1024, queries: str | None = None, recall_rows: int | None = 300_000,
                  recall_queries: int = 1000, seed: int = 0, catalogs=None) -> StatsReport:
    """Statistics of the vector file or catalog name ``target`` (one vector per row).

    ``sample`` random rows give the global figures; the first ``recall_rows`` rows (0 = skip) form the
    database for the neighbour figures and the pca32/pca96 recall@30, with ``recall_queries`` queries
    taken from ``queries`` (a name or file), else the dataset's companion query file, else held-out
    rows at the end of that range."""
    from laionknn.io import VectorFile, check_vectors

    if sample < LID_K + 2:
        raise UsageError(f"--sample must be at least {LID_K + 2}, got {sample}")
    path, record = resolve_file(target, catalogs)
    rng = np.random.default_rng(seed)
    with VectorFile(path) as vf:
        if vf.dtype.kind != "f":
            raise UsageError(f"{path}: statistics need float vectors, found {vf.dtype} (key {vf.key!r})")
        rows, ids = sample_rows(vf, sample, rng)
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():  # the SVD of the statistics would fail with a raw LinAlgError
            raise DataError(f"{path}: row {int(ids[~finite][0])} contains NaN or infinite values; statistics need "
                            f"finite vectors: clean or drop that row")
        report = StatsReport(path=path, n=vf.n, dim=vf.dim, dtype=str(vf.dtype), sample=global_stats(rows),
                             real=load_frame()["real_stats"] if vf.dim == 768 else {})
        n_db = min(vf.n, recall_rows or 0)
        if n_db == 0:
            return report
        qsource, xq = _queries(queries, record, catalogs)
        if xq is None:
            n_hold = min(recall_queries, n_db // 10)
            n_db -= n_hold
            xq = vf.read(n_db, n_db + n_hold, dtype=np.float32)
            qsource = f"{n_hold} held-out rows {n_db}..{n_db + n_hold - 1} (no query file known)"
        database = _load_normalised(vf, n_db)
        check_vectors(database, what=f"{path}")
        check_vectors(xq, what=f"queries ({qsource})")
    if xq.shape[1] != database.shape[1]:
        raise UsageError(f"queries have dimension {xq.shape[1]}, the database {database.shape[1]}; "
                         f"give a matching --queries file")
    if len(xq) > recall_queries:
        xq = xq[np.sort(rng.choice(len(xq), recall_queries, replace=False))]
    inside = ids < n_db
    if inside.sum() > LID_K:
        report.database = database_neighbours(rows[inside], ids[inside], database)
    if n_db >= 30 and database.shape[1] > 96:
        report.recall = projection_recall(database, xq, dims=(32, 96), k=30)
    report.recall_rows, report.recall_queries, report.queries_source = n_db, len(xq), qsource
    return report


def file_fingerprint(target: str, *, queries: str | None = None, n_queries: int = 1000, seed: int = 0,
                     catalogs=None, ivf: bool = True, binwalk: bool = True, hnsw_max_rows: int = 2_000_000,
                     threads: int = 2, progress: bool = True):
    """The real-data fingerprint (:func:`laionknn.synthetic.fidelity.fingerprint`) of a vector file or
    catalog name, on its prefixes of 100K / 300K / 1M / 10M rows (those it has). Queries: ``queries``
    (a name or file), else the dataset's companion query file, else held-out rows after the last scale."""
    from laionknn.io import VectorFile
    from laionknn.progress import progress_bar
    from laionknn.synthetic.fidelity import SCALES, fingerprint

    path, record = resolve_file(target, catalogs)
    with VectorFile(path) as vf:
        if vf.dtype.kind != "f" or vf.dim != 768:
            raise UsageError(f"{path}: the fingerprint needs 768-d float vectors (clip768), found {vf.dim}-d "
                             f"{vf.dtype} (key {vf.key!r})")
        n = vf.n
        _, xq = _queries(queries, record, catalogs)
        if xq is None:  # held-out rows after the largest scale the file covers
            usable = [s for s in SCALES if s + n_queries <= n]
            if not usable:
                raise UsageError(f"{path} has {n:,} rows: the fingerprint needs at least {SCALES[0]:,} rows plus "
                                 f"{n_queries} held-out query rows, or a --queries file")
            n = usable[-1]
            xq = vf.read(n, n + n_queries, dtype=np.float32)
        elif len(xq) > n_queries:
            xq = xq[np.sort(np.random.default_rng(seed).choice(len(xq), n_queries, replace=False))]
        if n < SCALES[0]:
            raise UsageError(f"{path} has {n:,} rows; the fingerprint's smallest scale is {SCALES[0]:,} rows")
        n = max(s for s in SCALES if s <= n)
        with progress_bar(f"fingerprint {path.name[:40]}", n) as bar:
            return fingerprint(lambda stop: vf.blocks(stop=stop), n, xq, ivf=ivf, binwalk=binwalk,
                               hnsw_max_rows=hnsw_max_rows, threads=threads, seed=seed,
                               progress=bar.update)


def _queries(queries: str | None, record, catalogs) -> tuple[str, np.ndarray | None]:
    from laionknn.io import read_vectors

    if queries is None and record is not None and record.kind == "database":
        from laionknn.catalog import dataset

        try:
            queries = dataset(record.name, extra_catalogs=catalogs).queries.name
        except Exception as exc:  # no companion: fall back to held-out rows
            log.info("no companion queries for %s: %s", record.name, exc)
            return "", None
    if queries is None:
        return "", None
    qpath, _ = resolve_file(queries, catalogs)
    return str(qpath.name), read_vectors(qpath, dtype=np.float32)
