"""Query sets drawn the way the organisers drew them, with their filters, reproducibly.

Candidates are source rows in the order of ``numpy.random.default_rng(seed).permutation(n_source)``
(the *sample order*), L2-normalised in float64 and stored as float32. Filters, in this order:

* both rules: rows with NaN/inf or zero norm are dropped (``invalid``).
* 2024: ``near_duplicate`` -- greedy in sample order, a candidate is dropped when its cosine distance
  ``1 - <q_i, q_j>`` (float64 of the stored float32 vectors) to an earlier representative is < ε
  (0.2); every candidate not dropped becomes a representative, so kept queries are pairwise >= ε apart.
* then the exact k-NN of the survivors in the database (``laionknn.exact.knn``), judged on the
  engine's float64 distances (``dists64``), not on the float32 values the gold file stores:
  2023: ``tie_10_11`` -- the engine's float64 tie flag between ranks 10 and 11 (``tie_ranks=(10,)``;
  the 10-NN set is ambiguous); ``top10_sum`` -- d1 + ... + d10 <= 0.1 in float64 (a query sitting on a
  near-duplicate cluster); 2024: ``gap_30_29`` -- d30 - d29 < 1e-4 in float64.
  A candidate failing several is counted under the first.

The first ``n`` passing candidates in sample order are the queries. Candidates are examined in
batches: the first batch holds ``ceil(n * oversample)`` rows, later ones ``(missing / pass rate) *
oversample``, so the exact search usually runs once or twice; passing candidates beyond ``n`` are
counted as ``passed_unused``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from laionknn.errors import DataError, UsageError
from laionknn.fsutil import atomic_path
from laionknn.progress import progress_bar
from laionknn.types import KnnResult, Metric
from laionknn.validation import check_k, check_optional, check_seed

log = logging.getLogger(__name__)

RULES = ("2023", "2024")
RULE_METRIC = {"2023": Metric.COSINE, "2024": Metric.DOT}
FILTERS = {"2023": ("invalid", "tie_10_11", "top10_sum"), "2024": ("invalid", "near_duplicate", "gap_30_29")}
KNN_FILTERS = {"2023": ("tie_10_11", "top10_sum"), "2024": ("gap_30_29",)}


@dataclass
class QueriesReport:
    """Paths written, the summary (counts per filter) and, per examined candidate in sample order,
    its source row and status ("kept", "passed_unused" or the filter that removed it)."""

    queries_path: Path
    gold_path: Path
    summary_path: Path
    summary: dict
    examined_rows: np.ndarray = field(repr=False, default=None)
    statuses: list[str] = field(repr=False, default_factory=list)


class _Source:
    """Random-access rows of a raw part (.npy/.npz) or an HDF5 vector file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.suffix in (".npy", ".npz"):
            from laionknn.prepare.parts import PartEmbeddings

            self._emb = PartEmbeddings(path, str(path))
            self.n, self.dim = self._emb.n, self._emb.shape[1]
            self._h5 = None
        else:
            from laionknn.io import VectorFile

            with VectorFile(path) as vf:
                self.n, self.dim, self.key = vf.n, vf.dim, vf.key
            self._emb = None

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float64 (len(rows), dim) in the order of ``rows``."""
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        if self._emb is not None and self.path.suffix == ".npy":
            got = np.asarray(self._emb._arr[srt], dtype=np.float64)
        elif self._emb is not None:  # .npz: one sequential pass, picking the asked rows
            got = np.empty((len(srt), self.dim), dtype=np.float64)
            pos = 0
            for lo, block in zip(range(0, self.n, 65536), self._emb.chunks(65536)):
                hi = lo + len(block)
                end = np.searchsorted(srt, hi)
                got[pos:end] = block[srt[pos:end] - lo]
                pos = end
        else:
            import h5py

            with h5py.File(self.path, "r") as f:
                got = np.asarray(f[self.key][srt], dtype=np.float64)
        out = np.empty_like(got)
        out[order] = got
        return out


def _resolve(text: "str | os.PathLike[str]", what: str) -> Path:
    p = Path(text)
    if p.exists():
        return p
    from laionknn.catalog import ensure, resolve
    from laionknn.errors import CatalogError

    try:
        record = resolve(str(text))
    except CatalogError as exc:
        raise UsageError(f"--{what} {text}: neither an existing file nor a catalog name ({exc})") from None
    return Path(ensure(record))


def candidate_order(n_source: int, seed: int) -> np.ndarray:
    """The sample order: source rows in the order candidates are examined."""
    return np.random.default_rng(seed).permutation(n_source)


def normalise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 L2-normalised copies of the valid rows of float64 ``x``, and the bool validity mask."""
    finite = np.isfinite(x).all(axis=1)
    norms = np.linalg.norm(np.where(finite[:, None], x, 0.0), axis=1)
    valid = finite & (norms > 0)
    return (x[valid] / norms[valid, None]).astype(np.float32), valid


class _Dedup:
    """Greedy near-duplicate removal in sample order, representatives kept across batches."""

    def __init__(self, dim: int, epsilon: float) -> None:
        self.reps = np.empty((0, dim))
        self.epsilon = epsilon

    def keep(self, q: np.ndarray, block: int = 1024) -> np.ndarray:
        """bool (len(q),): True for candidates at cosine distance >= ε from every earlier representative."""
        out = np.zeros(len(q), dtype=bool)
        for lo in range(0, len(q), block):
            sub = q[lo:lo + block].astype(np.float64)
            alive = np.ones(len(sub), dtype=bool)
            for r0 in range(0, len(self.reps), 8192):
                alive &= ((1.0 - sub @ self.reps[r0:r0 + 8192].T) >= self.epsilon).all(axis=1)
            gram = 1.0 - sub @ sub.T
            for i in range(len(sub)):
                if alive[i]:
                    alive[i + 1:] &= gram[i, i + 1:] >= self.epsilon
            out[lo:lo + block] = alive
            self.reps = np.concatenate([self.reps, sub[alive]])
        return out


TIE_RANK = 10  # 2023: no tie between ranks 10 and 11


def _knn_filter(rule: str, res: KnnResult, min_top10: float, gap: float) -> np.ndarray:
    """Status index per query of an exact answer: 0 = passed, else 1 + the filter's index in
    ``KNN_FILTERS[rule]``. Uses the engine's float64 information only: ``attrs["dists64"]`` (float64
    (nq, k) distances of ranks 1..k) and, for 2023, ``attrs["tie_at"][10]`` (float64 tie between ranks
    10 and 11)."""
    d = res.attrs["dists64"]
    status = np.zeros(len(d), dtype=np.int64)
    if rule == "2023":
        small = d[:, :TIE_RANK].sum(axis=1) <= min_top10
        status[small] = 2
        status[res.attrs["tie_at"][TIE_RANK].astype(bool)] = 1
    else:
        status[(d[:, 29] - d[:, 28]) < gap] = 1
    return status


def select_queries(source: "str | os.PathLike[str]", database: "str | os.PathLike[str]", n: int = 10_000,
                   rule: str = "2024", *, seed: int = 0, out_dir: "str | os.PathLike[str] | None" = None,
                   k: int | None = None, metric: "str | Metric | None" = None, oversample: float = 1.25,
                   epsilon: float = 0.2, gap: float = 1e-4, min_top10: float = 0.1) -> QueriesReport:
    """Draw ``n`` queries from ``source`` (raw part or HDF5 file/name, not part of ``database``),
    filter them by ``rule`` and write the query file (``emb`` float32 (n, 768), L2-normalised), its
    gold standard (k = min(1000, n_database) by default; official layout, 1-based ids) and a JSON
    summary. Metric of the gold standard and the filters: cosine for 2023, dot for 2024 by default.
    """
    from laionknn import workspace
    from laionknn.io import VectorFile, write_gold, write_vectors

    rule = str(rule)
    if rule not in RULES:
        raise UsageError(f"--rule {rule}: expected 2023 or 2024")
    if n < 1:
        raise UsageError(f"--n {n}: ask for at least one query")
    if oversample < 1:
        raise UsageError(f"oversample {oversample}: must be >= 1")
    seed = check_seed(seed)
    k = check_optional(check_k, k)
    metric = Metric.parse(metric) if metric is not None else RULE_METRIC[rule]
    src_path, db_path = _resolve(source, "source"), _resolve(database, "database")
    if src_path.resolve() == db_path.resolve():
        raise UsageError(f"--source and --database are the same file ({db_path}); draw queries from a part that "
                         f"is not in the database (the organisers used part 0)")
    src = _Source(src_path)
    db = VectorFile(db_path)
    try:
        if src.dim != db.dim:
            raise UsageError(f"--source {src_path.name} has dimension {src.dim}, the database {db.dim}")
        need = 11 if rule == "2023" else 30
        k_gold = min(1000, db.n) if k is None else int(k)
        k_search = max(k_gold, need)
        if k_search > db.n:
            raise UsageError(f"the {rule} rule needs {need} neighbours (and the gold k={k_gold}) but the database "
                             f"has {db.n} rows")
        order = candidate_order(src.n, seed)
        drawn = _draw(src, db, order, n, rule, metric, k_search, k_gold, oversample, epsilon, gap, min_top10)
        n_db = db.n
    finally:
        db.close()

    out_dir = Path(out_dir) if out_dir is not None else workspace.data_dir()
    stem = f"laionknn-queries-rule={rule}-n={n}-seed={seed}-clip768v2"
    q_path = write_vectors(out_dir / f"{stem}.h5", np.stack(drawn.queries), "emb", np.float32,
                           attrs={"rule": rule, "seed": seed, "source": src_path.name})
    gold = KnnResult(ids=np.stack(drawn.ids), dists=np.stack(drawn.dists))
    tie = np.asarray(drawn.ties, dtype=np.uint8)
    g_path = write_gold(out_dir / f"laionknn-gold-standard-dbfile={db_path.stem}--queries-rule={rule}-n={n}-seed={seed}"
                        f"-k={k_gold}.h5", gold,
                        attrs={"metric": metric.value, "k": k_gold, "n_tie_at_k": int(tie.sum()),
                               "database": db_path.name, "queries": q_path.name},
                        datasets={"tie_at_k": tie})
    summary = {"rule": rule, "seed": seed, "n": n, "source": str(src_path), "source_rows": src.n,
               "database": str(db_path), "database_rows": n_db, "metric": metric.value, "k": k_gold,
               "epsilon": epsilon if rule == "2024" else None, "gap": gap if rule == "2024" else None,
               "min_top10": min_top10 if rule == "2023" else None, "oversample": oversample,
               "batches": drawn.batches, "candidates": len(drawn.statuses), "removed": drawn.removed,
               "passed_unused": drawn.statuses.count("passed_unused"), "kept": len(drawn.rows),
               "queries": str(q_path), "gold": str(g_path), "kept_source_rows": drawn.rows}
    s_path = out_dir / f"{stem}.summary.json"
    with atomic_path(s_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return QueriesReport(q_path, g_path, s_path, summary, order[:len(drawn.statuses)], drawn.statuses)


@dataclass
class _Drawn:
    queries: list = field(default_factory=list)  # float32 (768,) rows
    ids: list = field(default_factory=list)  # int64 (k_gold,) 0-based
    ties: list = field(default_factory=list)  # uint8: ranks k_gold and k_gold + 1 tie in float64
    dists: list = field(default_factory=list)  # float32 (k_gold,) ascending
    rows: list = field(default_factory=list)  # source row of each query
    statuses: list = field(default_factory=list)  # per examined candidate, sample order
    removed: dict = field(default_factory=dict)
    batches: int = 0


def _draw(src: _Source, db, order: np.ndarray, n: int, rule: str, metric: Metric, k_search: int, k_gold: int,
          oversample: float, epsilon: float, gap: float, min_top10: float) -> _Drawn:
    """Examine candidates in sample order, batch by batch, until ``n`` pass every filter."""
    from laionknn.exact import knn

    out = _Drawn(removed=dict.fromkeys(FILTERS[rule], 0))
    dedup = _Dedup(src.dim, epsilon) if rule == "2024" else None
    pos = 0
    with progress_bar("select queries", total=n, unit="queries") as bar:
        while len(out.rows) < n:
            accepted = len(out.rows)
            if pos >= src.n:
                raise DataError(f"{src.path.name}: only {accepted} of its {src.n} rows pass the {rule} filters "
                                f"(removed: {out.removed}); ask for fewer queries (--n) or use a larger source")
            rate = accepted / pos if pos else 1.0
            rows = order[pos:pos + math.ceil((n - accepted) / max(rate, 0.05) * oversample)]
            pos += len(rows)
            out.batches += 1
            q, valid = normalise(src.take(rows))
            st = np.where(valid, "", "invalid").astype(object)
            q_rows = rows[valid]
            if dedup is not None:
                keep = dedup.keep(q)
                st[np.flatnonzero(valid)[~keep]] = "near_duplicate"
                q, q_rows = q[keep], q_rows[keep]
            log.info("batch %d: %d candidates, exact %d-NN of %d", out.batches, len(rows), k_search, len(q))
            ranks = ({TIE_RANK} if rule == "2023" else set()) | ({k_gold} if k_gold < k_search else set())
            res = knn(db, q, k_search, metric, tie_ranks=tuple(sorted(ranks)), dists64=True)
            tie_gold = res.attrs["tie_at"][k_gold] if k_gold < k_search else res.attrs["tie_at_k"]
            live = np.flatnonzero(st == "")
            for j, c in enumerate(_knn_filter(rule, res, min_top10, gap)):
                if c:
                    st[live[j]] = KNN_FILTERS[rule][c - 1]
                elif len(out.rows) < n:
                    st[live[j]] = "kept"
                    out.queries.append(q[j])
                    out.ids.append(res.ids[j, :k_gold])
                    out.dists.append(res.dists[j, :k_gold])
                    out.ties.append(int(tie_gold[j]))
                    out.rows.append(int(q_rows[j]))
                else:
                    st[live[j]] = "passed_unused"
            for status in st:
                if status in out.removed:
                    out.removed[status] += 1
            out.statuses.extend(st.tolist())
            bar.update(len(out.rows))
    return out
