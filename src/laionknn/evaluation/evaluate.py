"""Score result files against a gold standard: one row per file, in the official CSV columns plus ours.

Columns (:data:`EVAL_COLUMNS`): the organisers' ``data, size, algo, buildtime, querytime, params,
recall`` followed by ``k``, ``qps`` (n_queries / querytime), ``recall_tie_aware``, ``file`` and
``recall_rule`` (which organisers' rule the ``recall`` figure follows: :data:`RECALL_RULES`).
"""

from __future__ import annotations

import csv
import io as _io
import logging
import math
import os
import re
from pathlib import Path
from typing import Iterable, TextIO

import numpy as np

from laionknn.errors import FormatError, LaionKnnError, UsageError
from laionknn.evaluation.gold import YEAR_K, GoldSource, locate_gold
from laionknn.evaluation.recall import (RECALL_RULES, TIE_TOL, recall_by_rule, recall_hits, tie_hits_from_distances,
                                       tie_hits_from_gold)
from laionknn.fsutil import atomic_path
from laionknn.io import VectorFile, read_gold, read_result, read_vectors, result_file_problems, result_shape
from laionknn.progress import progress_bar
from laionknn.validation import check_k
from laionknn.types import parse_size

log = logging.getLogger(__name__)

OFFICIAL_COLUMNS = ("data", "size", "algo", "buildtime", "querytime", "params", "recall")
EVAL_COLUMNS = OFFICIAL_COLUMNS + ("k", "qps", "recall_tie_aware", "file", "recall_rule")


def _natural_key(path: Path) -> list:
    """Sort key in which ef=16 comes before ef=128."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_result_files(paths: "Iterable[str | os.PathLike[str]]", *, exclude: Iterable[Path] = (),
                      results_only: bool = True) -> list[Path]:
    """Every ``.h5`` file named, or found recursively under a named folder (sorted, no duplicates).

    Inside a folder, ``.h5`` files without a ``knns`` dataset (projected vectors, sketches, models that
    ``laionknn run`` leaves beside its results) are not result files and are passed over; a file named
    explicitly is always returned; ``results_only=False`` (``results check``, which must report a result
    file that lost its ``knns``) keeps them too. Raises :class:`UsageError` for a missing path or when nothing is found.
    """
    skip = {Path(p).resolve() for p in exclude}
    found: list[Path] = []
    seen: set[Path] = set()
    paths = list(paths)
    if not paths:
        raise UsageError("no result files or folders given; pass --results DIR or FILE")
    for p in map(Path, paths):
        if p.is_dir():
            candidates = sorted((q for q in p.rglob("*.h5") if q.is_file() and not q.name.startswith(".tmp-")
                                 and (not results_only or _has_knns(q))), key=_natural_key)
        elif p.is_file():
            candidates = [p]
        else:
            raise UsageError(f"--results {p}: no such file or folder")
        for q in candidates:
            r = q.resolve()
            if r not in seen and r not in skip:
                seen.add(r)
                found.append(q)
    if not found:
        raise UsageError(f"no result files (*.h5) found in {', '.join(map(str, paths))}; "
                         f"point --results at the folder the search runs wrote")
    return found


def _has_knns(path: Path) -> bool:
    """True when ``path`` holds a ``knns`` dataset (a result or gold file) or cannot be read as HDF5
    (reported later as a broken result file rather than hidden)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            has = "knns" in f
    except OSError:
        return True
    if not has:
        log.info("passing over %s: no knns dataset (not a result file)", path)
    return has


def _open_database(name_or_path, catalogs) -> VectorFile:
    return VectorFile(_locate(name_or_path, catalogs))


def _locate(name_or_path, catalogs, role: str = "database") -> Path:
    from laionknn.io.formats import user_path

    path = user_path(name_or_path, role)
    if path is not None:
        return path
    from laionknn.catalog import local_path, resolve

    record = resolve(str(name_or_path), catalogs)
    path = local_path(record)
    if not path.exists():
        raise UsageError(f"{record.name} is not present locally; fetch or make it first "
                         f"(`laionknn datasets fetch {record.name}`)")
    return path


def _same_size(a: str, b: str) -> bool:
    try:
        return parse_size(a) == parse_size(b)
    except LaionKnnError:
        return str(a).strip().lower() == str(b).strip().lower()


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def evaluate(paths: "Iterable[str | os.PathLike[str]]", gold: "str | os.PathLike[str] | GoldSource",
             k: int | None = None, *, database=None, queries=None, metric: str = "cosine",
             all_columns: bool = False, skip_bad: bool = False, tol: float = TIE_TOL,
             catalogs=None, rule: str | None = None) -> list[dict]:
    """Score every result file under ``paths`` against ``gold``; one dict per file (:data:`EVAL_COLUMNS`).

    gold: a gold file, a catalog name, or a :class:`GoldSource`; ``k`` defaults to the number of
    neighbours the result files hold when they all agree (:func:`infer_k`; a UsageError otherwise:
    never a guess). ``recall`` is the official id-only recall@k (with
    ``all_columns`` every returned column is intersected with gold[:k], as the organisers' scripts
    do). ``rule`` (:data:`RECALL_RULES`; default ``first-k``, or ``all-columns`` when ``all_columns``)
    chooses which organisers' rule ``recall`` follows; ``julia-2024`` is ``all-columns`` summed in the
    order of sisap2024's ``macrorecall``. ``recall_tie_aware`` uses true distances when ``database`` and ``queries`` (paths or catalog
    names of the clip768 files the gold was computed from) are given, else the full gold row's
    distances. ``qps`` = n_queries / querytime (NaN when querytime is missing or not positive).
    ``skip_bad`` logs and skips files that cannot be scored instead of raising.

    Every file first goes through the checks of ``laionknn results check``
    (:func:`laionknn.io.result_file_problems`, with this gold's query count, ``k`` and, when given,
    the database's rows): a file that check rejects (repeated ids in a row, NaN or unsorted distances,
    times that are not positive seconds...) is refused with its first problem, never scored.
    """
    rule = rule or ("all-columns" if all_columns else "first-k")
    if rule not in RECALL_RULES:
        raise UsageError(f"unknown recall rule {rule!r}; choose from {', '.join(RECALL_RULES)}")
    src = gold if isinstance(gold, GoldSource) else locate_gold(gold, catalogs, warn=k is None)
    files = find_result_files(paths, exclude=[src.path])
    g = read_gold(src.path)
    k = check_k(k) if k is not None else infer_k(files, g.k, g.n_queries, src)
    if k > g.k:
        raise UsageError(f"k={k} is larger than the gold standard's {g.k} columns ({src.path.name}); "
                         f"use --k {g.k} or less")
    if k < 1:
        raise UsageError(f"k={k}: expected a positive number of neighbours")
    if (database is None) != (queries is None):
        raise UsageError("--database and --queries go together (tie-aware recall from true distances)")
    db = q = None
    try:
        if database is not None:
            db = _open_database(database, catalogs)
            q = read_vectors(_locate(queries, catalogs, "queries"))
            if q.shape[0] != g.n_queries:
                raise UsageError(f"--queries has {q.shape[0]} rows but the gold standard has {g.n_queries} queries")
            if g.ids.size and int(g.ids.max()) >= db.n:
                raise UsageError(f"the gold standard refers to row {int(g.ids.max()) + 1} but --database has "
                                 f"{db.n} rows; pass the database the gold was computed on")
        rows = []
        with progress_bar("scoring result files", len(files), unit="files") as bar:
            for path in files:
                try:
                    rows.append(_score_one(path, g, src, k, db, q, metric, rule, tol))
                except LaionKnnError as exc:
                    if not skip_bad:
                        raise
                    log.warning("skipped %s", exc) if str(path) in str(exc) else log.warning("skipped %s: %s", path, exc)
                bar.advance()
    finally:
        if db is not None:
            db.close()
    if not rows:
        raise UsageError(f"none of the {len(files)} result files could be scored (see the warnings above)")
    return rows


def infer_k(files: list[Path], gold_k: int, n_queries: int, src: GoldSource | None = None) -> int:
    """The k to score at when ``--k`` is not given: the width of the result files (``knns`` columns)
    when every file with one row per gold query has the same one, and the gold is at least that wide.
    A width that is no challenge k (10, 30) against the gold of a known challenge year whose k is
    smaller gives that year's k instead: the organisers scored such longer rows at their k (first k
    columns, or every column under the all-columns rules); k-wide files (what laionknn writes) keep
    their width whatever the gold's name says.

    Anything else raises :class:`UsageError` asking for ``--k``: files of different widths (a k=10 and a
    k=30 sweep in one folder), files wider than the gold, or no usable file (then the first file's own
    problem is raised, e.g. "looks transposed").
    """
    widths: dict[int, list[Path]] = {}
    for path in files:
        shape = result_shape(path)
        if shape is not None and shape[0] == n_queries:  # other shapes: the scoring step says what is wrong
            widths.setdefault(shape[1], []).append(path)
    if not widths:
        read_result(files[0], n_queries=n_queries)  # raises the file's own problem (transposed, short...)
        raise UsageError(f"cannot tell k: none of the {len(files)} result file(s) has a readable knns dataset; "
                         f"pass --k (and `laionknn results check` says what is wrong with the files)")
    if len(widths) > 1:
        seen = "; ".join(f"{w} columns in {len(ps)} file(s), e.g. {ps[0]}" for w, ps in sorted(widths.items()))
        raise UsageError(f"cannot tell k: the result files disagree ({seen}); pass --k N (files wider than N "
                         f"are scored on their first N columns) or score each sweep's folder on its own")
    (width, _), = widths.items()
    if (width not in YEAR_K.values() and src is not None and src.year is not None and src.default_k < width
            and src.default_k <= gold_k):
        log.info("scoring at k=%d, the %d challenge's: the result files hold %d columns", src.default_k, src.year,
                 width)
        return src.default_k
    if width > gold_k:
        raise UsageError(f"cannot tell k: the result files hold {width} neighbours per query but the gold standard "
                         f"has only {gold_k} columns; pass --k {min(gold_k, src.default_k if src else gold_k)} "
                         f"or any k up to {gold_k}")
    if src is not None and src.year is not None and src.default_k != width:
        log.info("scoring at k=%d, the width of the result files (the %d challenge scored at k=%d)",
                 width, src.year, src.default_k)
    return width


def check_scorable(path, *, n_queries: int, k: int, n_database: int | None = None) -> None:
    """Raise :class:`FormatError` (one line: the first problem, how many more) when ``laionknn results
    check`` would reject ``path`` with these expectations; eval scores only what the checker accepts."""
    problems = result_file_problems(path, n_database=n_database, k=k, n_queries=n_queries)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise FormatError(f"{path}: {problems[0]}{more}; not scored: `laionknn results check {path}` lists every "
                          f"problem; fix the file (--skip-bad scores the others)")


def _score_one(path, g, src, k, db, q, metric, rule, tol) -> dict:
    n_db = db.n if db is not None else None
    check_scorable(path, n_queries=g.n_queries, k=k, n_database=n_db)
    res = read_result(path, n_queries=g.n_queries, n_database=n_db)
    size = str(res.meta.get("size", ""))
    if src.subset and size and not _same_size(size, src.subset):
        log.warning("%s: result size %s but the gold standard is for %s", path, size, src.subset)
    all_columns = rule != "first-k"
    hits_k = recall_hits(res.ids, g, k)
    hits = recall_hits(res.ids, g, k, all_columns=True) if all_columns else hits_k
    n = hits.shape[0]
    if db is not None:
        from laionknn.evaluation.truedist import tie_distances

        cols = res.ids if all_columns else res.ids[:, :k]
        true_d, kth_d = tie_distances(db, q, cols, g.ids[:, k - 1], metric)
        tie = tie_hits_from_distances(res.ids, g, k, true_d, kth_d, tol, all_columns=all_columns)
    else:
        tie, undecided = tie_hits_from_gold(res.ids, g, k, tol, all_columns=all_columns)
        if undecided:
            log.info("%s: %d queries have ties reaching the gold's last column", path, undecided)
    querytime = _number(res.meta.get("querytime"))
    qps = n / querytime if querytime > 0 and math.isfinite(querytime) else float("nan")
    meta = res.meta
    return {
        "data": str(meta.get("data", "")), "size": size, "algo": str(meta.get("algo", "")),
        "buildtime": _number(meta.get("buildtime")), "querytime": querytime, "params": str(meta.get("params", "")),
        "recall": recall_by_rule(hits_k, hits, k, rule), "k": k, "qps": qps,
        "recall_tie_aware": float(np.asarray(tie).sum()) / (n * k), "file": str(path), "recall_rule": rule,
    }


def _format(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_eval_csv(rows: list[dict], out: "str | os.PathLike[str] | TextIO | None" = None) -> "Path | str":
    """Write rows in :data:`EVAL_COLUMNS` order: to ``out`` (atomically) when it is a path, into an open
    text stream, or return the CSV text when ``out`` is None. NaN is written as an empty field."""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(EVAL_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _format(row.get(c, "")) for c in EVAL_COLUMNS})
    text = buf.getvalue()
    if out is None:
        return text
    if hasattr(out, "write"):
        out.write(text)
        return text
    path = Path(out)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
