import numpy as np
import pytest

from laionknn.errors import FormatError, UsageError
from laionknn.evaluation import recall, recall_tie_aware
from laionknn.evaluation.recall import first_occurrence, membership, tie_hits_from_gold
from laionknn.types import KnnResult

from evalhelpers import py_recall


def _gold(rng, n=40, n_db=500, cols=100):
    ids = np.stack([rng.choice(n_db, cols, replace=False) for _ in range(n)]).astype(np.int64)
    d = np.sort(rng.random((n, cols)), axis=1).astype(np.float32)
    return KnnResult(ids, d)


def _perturb(rng, ids, share, n_db=500, cols=None):
    out = ids[:, : cols or ids.shape[1]].copy()
    mask = rng.random(out.shape) < share
    out[mask] = rng.integers(0, n_db, mask.sum())
    return out


@pytest.mark.parametrize("k", [1, 10, 30])
def test_recall_matches_python_sets(rng, k):
    g = _gold(rng)
    for share in (0.0, 0.3, 0.9):
        res = _perturb(rng, g.ids, share, cols=k + 5)
        res[0, 1] = res[0, 0]  # a repeated id counts once
        assert recall(res, g, k) == pytest.approx(py_recall(res, g.ids, k), abs=1e-12)
    assert recall(g.ids[:, :k], g, k) == 1.0


def test_recall_all_columns_matches_organisers_get_recall(rng):
    g = _gold(rng)
    res = _perturb(rng, g.ids, 0.5, cols=30)
    rng.shuffle(res, axis=1)

    def organisers(I, gt, k):  # the organisers' eval.py get_recall, restated
        return sum(len(set(I[i]) & set(gt[i, :k])) for i in range(len(I))) / (len(I) * k)

    assert recall(res, g, 10, all_columns=True) == pytest.approx(organisers(res, g.ids, 10))
    assert recall(res, g, 10) == pytest.approx(py_recall(res, g.ids, 10))
    assert recall(res, g, 10, all_columns=True) > recall(res, g, 10)


def test_recall_errors(rng):
    g = _gold(rng, cols=20)
    with pytest.raises(UsageError, match="larger than the gold"):
        recall(g.ids, g, 21)
    with pytest.raises(FormatError, match="queries"):
        recall(g.ids[:-1], g, 10)
    with pytest.raises(FormatError, match="fewer than k"):
        recall(g.ids[:, :5], g, 10)


def test_membership_and_first_occurrence(rng):
    ids = rng.integers(0, 30, (20, 12))
    ref = rng.integers(0, 30, (20, 15))
    found, pos = membership(ids, ref)
    for i in range(20):
        for j in range(12):
            row = ref[i].tolist()
            assert found[i, j] == (ids[i, j] in row)
            assert pos[i, j] == (row.index(ids[i, j]) if ids[i, j] in row else -1)
    first = first_occurrence(ids)
    for i in range(20):
        seen = set()
        for j in range(12):
            assert first[i, j] == (ids[i, j] not in seen)
            seen.add(ids[i, j])


def test_tie_aware_from_gold_row():
    # query 0: gold distances tie at ranks 2..4 (k=3); query 1: no tie
    gold = KnnResult(np.array([[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]]),
                     np.array([[0.1, 0.2, 0.5, 0.5, 0.5 + 5e-7, 0.6], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], dtype=np.float32))
    res = np.array([[10, 13, 14], [20, 23, 99]])
    assert recall(res, gold, 3) == pytest.approx(2 / 6)
    # 13 ties exactly, 14 is within 1e-6; 23 is farther; 99 is beyond the gold row
    hits, undecided = tie_hits_from_gold(res, gold, 3)
    assert hits.tolist() == [3, 1] and undecided == 0
    assert recall_tie_aware(res, gold, 3) == pytest.approx(4 / 6)
    assert recall_tie_aware(res, gold, 3, tol=1e-9) == pytest.approx(3 / 6)


def test_tie_aware_with_database_matches_python(rng):
    k = 4
    db = rng.standard_normal((60, 8)).astype(np.float32)
    q = rng.standard_normal((5, 8)).astype(np.float32)

    def cos(a, b):
        a, b = a.astype(np.float64), b.astype(np.float64)
        return 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    def exact_order():
        return np.array([sorted(range(len(db)), key=lambda j: (cos(qi, db[j]), j)) for qi in q])

    # make a far row an exact cosine duplicate of query 0's k-th neighbour: a tie at rank k
    order = exact_order()
    r, far = order[0, k - 1], order[0, -1]
    db[far] = db[r] * 2.0
    order = exact_order()
    gold_ids = order[:, :10]
    assert {gold_ids[0, k - 1], gold_ids[0, k]} == {r, far}
    gold = KnnResult(gold_ids, np.array([[cos(q[i], db[j]) for j in gold_ids[i]] for i in range(5)], dtype=np.float32))
    res = gold_ids[:, :k].copy()
    res[0, k - 1] = gold_ids[0, k]  # the tied partner instead of the gold k-th id
    res[1, 0] = order[1, 40]  # a real miss
    got = recall_tie_aware(res, gold, k, database=db, queries=q)
    hits = 0  # plain python: an id counts if in gold[:k] or as near as gold[k-1]
    for i in range(len(q)):
        kth = cos(q[i], db[gold_ids[i, k - 1]])
        hits += sum(j in set(gold_ids[i, :k].tolist()) or cos(q[i], db[j]) <= kth + 1e-6 for j in set(res[i].tolist()))
    assert hits == 5 * k - 1
    assert got == pytest.approx(hits / (len(q) * k))
    assert recall(res, gold, k) == pytest.approx((5 * k - 2) / (5 * k))
    # the gold row alone (10 columns) finds the same tie
    assert recall_tie_aware(res, gold, k) == pytest.approx(got)
    with pytest.raises(UsageError):
        recall_tie_aware(res, gold, k, database=db)


def test_tie_aware_from_gold_matches_python_with_many_ties(rng):
    n, cols, k = 30, 50, 10
    ids = np.stack([rng.choice(1000, cols, replace=False) for _ in range(n)])
    d = np.sort(rng.integers(0, 8, (n, cols)) / 8, axis=1).astype(np.float32)  # heavy ties
    gold = KnnResult(ids, d)
    res = np.where(rng.random((n, k)) < 0.5, ids[np.arange(n)[:, None], rng.integers(0, cols, (n, k))],
                   rng.integers(0, 1000, (n, k)))
    hits = 0
    for i in range(n):
        row = ids[i].tolist()
        kth = float(d[i, k - 1]) + 1e-6
        for j in set(res[i].tolist()):
            hits += j in row[:k] or (j in row and float(d[i, row.index(j)]) <= kth)
    assert recall_tie_aware(res, gold, k) == pytest.approx(hits / (n * k))
    assert recall_tie_aware(res, gold, k) >= recall(res, gold, k)
