"""Recall of k-NN answers against a gold standard: the official id-only definition and a tie-aware one.

All ids here are 0-based int64, shape (n_queries, columns), one query per row (the package's
convention; :mod:`laionknn.io` converts the 1-based files). Higher recall is better; 1.0 is exact.

Official (SISAP 2023 and 2024)::

    recall@k = sum_i |set(ids_i[:k]) ∩ set(gold_i[:k])| / (n * k)

Tie-aware: a returned id also counts when its true distance is within ``tol`` of the k-th gold
distance (it is as near as the k-th neighbour, so an exact method could have returned it); see
:func:`recall_tie_aware` for how the true distance is obtained.
"""

from __future__ import annotations

import logging

import numpy as np

from laionknn.errors import FormatError, UsageError
from laionknn.types import KnnResult

log = logging.getLogger(__name__)

TIE_TOL = 1e-6


def _gold_ids(gold: "KnnResult | np.ndarray") -> np.ndarray:
    return np.asarray(gold.ids if isinstance(gold, KnnResult) else gold)


def check_shapes(ids: np.ndarray, gold_ids: np.ndarray, k: int, *, all_columns: bool = False) -> None:
    """Raise a clear error when ``ids`` cannot be scored at ``k`` against ``gold_ids``."""
    if ids.ndim != 2 or gold_ids.ndim != 2:
        raise FormatError(f"ids {ids.shape} and gold {gold_ids.shape} must both be 2-d (n_queries, k)")
    if k < 1:
        raise UsageError(f"k={k}: expected a positive number of neighbours")
    if k > gold_ids.shape[1]:
        raise UsageError(f"k={k} is larger than the gold standard's {gold_ids.shape[1]} columns; "
                         f"use --k {gold_ids.shape[1]} or less, or a gold file with more neighbours")
    if ids.shape[0] != gold_ids.shape[0]:
        raise FormatError(f"the result has {ids.shape[0]} queries (rows) but the gold standard has "
                          f"{gold_ids.shape[0]}; is it scored against the right query set's gold file?")
    if ids.shape[1] < k:
        raise FormatError(f"the result has {ids.shape[1]} neighbours per query, fewer than k={k}; score it "
                          f"with --k {ids.shape[1]} or less")


def membership(ids: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ``ids[i, j]``: is it in row ``ref[i]``, and at which column of ``ref[i]``.

    ids: int (n, m); ref: int (n, r), same number of rows. Returns ``(found bool (n, m), position
    int64 (n, m))`` with position -1 where not found (the first column when ``ref`` repeats an id).
    Vectorised by offsetting each row's values into its own key range and one global search.
    """
    ids = np.asarray(ids, dtype=np.int64)
    ref = np.asarray(ref, dtype=np.int64)
    n = ids.shape[0]
    lo = min(int(ids.min(initial=0)), int(ref.min(initial=0)))
    span = max(int(ids.max(initial=0)), int(ref.max(initial=0))) - lo + 1
    rows = np.arange(n, dtype=np.int64)[:, None] * span
    ref_keys = (ref - lo) + rows
    order = np.argsort(ref_keys, axis=1, kind="stable")
    sorted_keys = np.take_along_axis(ref_keys, order, axis=1).ravel()
    id_keys = ((ids - lo) + rows).ravel()
    if sorted_keys.size == 0:
        return np.zeros(ids.shape, dtype=bool), np.full(ids.shape, -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(sorted_keys, id_keys), sorted_keys.size - 1)
    # searchsorted lands on the first equal key and the stable sort keeps the earliest column first
    found = sorted_keys[at] == id_keys
    pos = np.where(found, order.ravel()[at], -1)
    return found.reshape(ids.shape), pos.reshape(ids.shape).astype(np.int64)


def first_occurrence(ids: np.ndarray) -> np.ndarray:
    """bool (n, m): True where ``ids[i, j]`` did not already appear earlier in row i (set semantics)."""
    ids = np.asarray(ids)
    if ids.shape[1] < 2:
        return np.ones(ids.shape, dtype=bool)
    order = np.argsort(ids, axis=1, kind="stable")
    srt = np.take_along_axis(ids, order, axis=1)
    dup_sorted = np.zeros(ids.shape, dtype=bool)
    dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
    first = np.empty(ids.shape, dtype=bool)
    np.put_along_axis(first, order, ~dup_sorted, axis=1)
    return first


def recall_hits(ids: np.ndarray, gold: "KnnResult | np.ndarray", k: int, *, all_columns: bool = False) -> np.ndarray:
    """Per-query hit counts |set(ids_i[:k]) ∩ set(gold_i[:k])|, int64 (n,).

    ``all_columns=True`` intersects every returned column with ``gold_i[:k]`` (what the organisers'
    2023 ``eval.py`` and 2024 ``macrorecall`` compute; differs only for results wider than k).
    """
    ids = np.asarray(ids)
    gids = _gold_ids(gold)
    check_shapes(ids, gids, k, all_columns=all_columns)
    mine = ids if all_columns else ids[:, :k]
    found, _ = membership(mine, gids[:, :k])
    return (found & first_occurrence(mine)).sum(axis=1)


#: The recall rules ``laionknn eval --rule`` offers, each with the organisers' code it reproduces.
#: ``first-k``: Σ_i |set(ids_i[:k]) ∩ set(gold_i[:k])| / (n·k), as sisap23-laion-challenge-evaluation
#: ``eval.py`` from commit 0a6f90de (2023-08-09, final) does; ``all-columns``: every returned column is
#: intersected with gold_i[:k], as ``eval.py`` before 2023-03-06 (commit 084394b4) and SimilaritySearch.jl
#: v0.11.10's two-argument ``macrorecall`` do, summed as one total; ``julia-2024``: the same hits as
#: ``all-columns`` but scored as sisap2024 ``evaluate-sisap24.jl`` does, ``macrorecall`` adding the
#: per-query fractions |…|/k one after the other in float64 and dividing by n, so the last digits (and a
#: verdict exactly at a threshold) can differ from the total H/(n·k).
RECALL_RULES = ("first-k", "all-columns", "julia-2024")


def macrorecall_sum(hits: np.ndarray, k: int) -> float:
    """``macrorecall``'s arithmetic: s = 0.0; s += hits_i / k for i in order; s / n (float64).

    ``np.cumsum`` adds strictly left to right (unlike ``np.sum``'s pairwise summation), which is the
    order of the Julia loop."""
    fractions = np.asarray(hits, dtype=np.float64) / float(k)
    if fractions.size == 0:
        return float("nan")
    return float(np.cumsum(fractions)[-1] / fractions.size)


def recall_by_rule(hits_first_k: np.ndarray, hits_all: np.ndarray, k: int, rule: str) -> float:
    """The recall figure of ``rule`` (:data:`RECALL_RULES`) from per-query hit counts."""
    if rule == "first-k":
        return float(np.sum(hits_first_k)) / (len(hits_first_k) * k)
    if rule == "all-columns":
        return float(np.sum(hits_all)) / (len(hits_all) * k)
    if rule == "julia-2024":
        return macrorecall_sum(hits_all, k)
    raise UsageError(f"unknown recall rule {rule!r}; choose from {', '.join(RECALL_RULES)}")


def recall(ids: np.ndarray, gold: "KnnResult | np.ndarray", k: int, *, all_columns: bool = False) -> float:
    """Official id-only recall: Σ_i |set(ids_i[:k]) ∩ set(gold_i[:k])| / (n·k), in [0, 1], higher is better.

    ids: int (n_queries, m >= k), 0-based; gold: a :class:`KnnResult` or its ids (n_queries, >= k).
    Repeated ids in a row count once (set semantics, as the organisers' script). Raises
    :class:`UsageError` when k exceeds the gold's columns and :class:`FormatError` when the query
    counts differ or the result has fewer than k columns.
    """
    hits = recall_hits(ids, gold, k, all_columns=all_columns)
    return float(hits.sum()) / (hits.shape[0] * k) if hits.shape[0] else float("nan")


def tie_hits_from_gold(ids: np.ndarray, gold: KnnResult, k: int, tol: float = TIE_TOL, *,
                       all_columns: bool = False) -> tuple[np.ndarray, int]:
    """Tie-aware hits using only the gold file: a returned id counts when it is in ``gold_i[:k]``, or
    appears anywhere in the full gold row with a gold distance <= gold.dists[i, k-1] + tol.
    ``all_columns``: every returned column is looked at (as the official recall with that rule), the
    count capped at k per query, so the tie-aware hits are never below the official ones.

    Returns ``(hits int64 (n,), undecided)`` where ``undecided`` counts the queries whose ties reach the
    last gold column: a returned id beyond the gold row could be tied there, and is counted as a miss.
    """
    ids = np.asarray(ids) if all_columns else np.asarray(ids)[:, :k]
    check_shapes(ids, gold.ids, k)
    gd = gold.dists.astype(np.float64)
    kth = gd[:, k - 1] + tol
    # rows are ascending, so no column past the widest run of ties can hold a tie: search only those
    width = max(k, int((gd <= kth[:, None]).sum(axis=1).max(initial=k)))
    found, pos = membership(ids, gold.ids[:, :width])
    d = np.take_along_axis(gd[:, :width], np.maximum(pos, 0), axis=1)
    in_top = found & (pos < k)
    tied = found & (d <= kth[:, None])
    hits = np.minimum(((in_top | tied) & first_occurrence(ids)).sum(axis=1), k)
    undecided_rows = (gd[:, -1] <= kth) & (~found).any(axis=1)
    return hits, int(undecided_rows.sum())


def tie_hits_from_distances(ids: np.ndarray, gold: "KnnResult | np.ndarray", k: int, true_dists: np.ndarray,
                            kth_dists: np.ndarray, tol: float = TIE_TOL, *, all_columns: bool = False) -> np.ndarray:
    """Tie-aware hits from true distances: a returned id counts when it is in ``gold_i[:k]`` or its
    true distance ``true_dists[i, j]`` <= ``kth_dists[i]`` + tol, where ``kth_dists[i]`` is the true
    distance of ``gold_i[k-1]`` computed the same way (so both sides share one arithmetic).

    true_dists: float (n, >= k) for ``ids[:, :k]`` (for every column of ``ids`` with ``all_columns``,
    the count then capped at k per query); kth_dists: float (n,). Returns int64 (n,).
    """
    ids = np.asarray(ids) if all_columns else np.asarray(ids)[:, :k]
    gids = _gold_ids(gold)
    check_shapes(ids, gids, k)
    found, _ = membership(ids, gids[:, :k])
    near = (np.asarray(true_dists, dtype=np.float64)[:, :ids.shape[1]]
            <= np.asarray(kth_dists, dtype=np.float64)[:, None] + tol)
    return np.minimum(((found | near) & first_occurrence(ids)).sum(axis=1), k)


def recall_tie_aware(ids: np.ndarray, gold: KnnResult, k: int, tol: float = TIE_TOL, *, database=None,
                     queries: "np.ndarray | None" = None, metric="cosine", all_columns: bool = False) -> float:
    """Tie-aware recall@k in [0, 1] (>= the official recall; higher is better).

    With ``database`` (ndarray or :class:`~laionknn.io.VectorFile`, one vector per row) and ``queries``
    (n_queries, dim): the true distances of the returned ids and of each gold k-th neighbour are
    computed under ``metric`` (see :mod:`laionknn.evaluation.truedist`) and a returned id counts when
    its distance <= the k-th one + ``tol``. Without them: the returned ids are looked up in the full gold
    row (gold files hold 100 or 1000 columns) and their gold distances compared with the k-th gold
    distance; ids beyond the gold row count as misses. ``all_columns`` looks at every returned column
    (as :func:`recall` with ``all_columns``), at most k hits per query.
    """
    if (database is None) != (queries is None):
        raise UsageError("tie-aware recall from true distances needs both the database and the queries")
    ids = np.asarray(ids)
    if database is not None:
        from laionknn.evaluation.truedist import tie_distances

        check_shapes(ids, gold.ids, k)
        cols = ids if all_columns else ids[:, :k]
        true_d, kth_d = tie_distances(database, queries, cols, gold.ids[:, k - 1], metric)
        hits = tie_hits_from_distances(ids, gold, k, true_d, kth_d, tol, all_columns=all_columns)
    else:
        hits, undecided = tie_hits_from_gold(ids, gold, k, tol, all_columns=all_columns)
        if undecided:
            log.warning("tie-aware recall: for %d queries the ties at distance d_k reach the last gold column; "
                        "returned ids beyond it were counted as misses (pass the database and queries for "
                        "exact distances)", undecided)
    return float(hits.sum()) / (hits.shape[0] * k) if hits.shape[0] else float("nan")
