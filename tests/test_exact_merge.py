"""The associative merge of candidate intervals and its numba helpers, against numpy oracles."""

from __future__ import annotations

import numpy as np

from laionknn.exact.merge import Candidates, exact_topk, kth_key, kth_keys, merge


def _random_cands(rng, nq, width, id_pool, exact=False, fill=0.8):
    c = Candidates.empty(nq, width)
    for q in range(nq):
        m = int(rng.integers(0, width + 1) * fill)
        ids = rng.choice(id_pool, size=m, replace=False)
        lo = rng.integers(0, 20, size=m).astype(np.float64)  # small integers: many ties
        hi = lo if exact else lo + rng.integers(0, 4, size=m)
        c.lo[q, :m], c.hi[q, :m], c.ids[q, :m] = lo, hi, ids
    return c


def _as_sets(c):
    return [{(int(i), float(l), float(h)) for l, h, i in zip(c.lo[q], c.hi[q], c.ids[q]) if i >= 0}
            for q in range(c.n_queries)]


def _oracle_prune(entries, k):
    """Keep e unless >= k entries f have (hi_f, id_f) < (lo_e, id_e)."""
    out = set()
    for (i, lo, hi) in entries:
        better = sum(1 for (j, lo2, hi2) in entries if (hi2, j) < (lo, i))
        if better < k:
            out.add((i, lo, hi))
    return out


def test_kth_key_matches_sorting():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        hi = rng.integers(0, 6, size=n).astype(np.float64)
        ids = rng.permutation(1000)[:n].astype(np.int64)
        k = int(rng.integers(1, 45))
        h, i = kth_key(hi, ids, n, k)
        if n < k:
            assert h == np.inf
        else:
            keys = sorted(zip(hi.tolist(), ids.tolist()))
            assert (h, i) == keys[k - 1]


def test_merge_equals_oracle_and_is_associative():
    rng = np.random.default_rng(1)
    for trial in range(30):
        k = int(rng.integers(1, 8))
        pool = rng.permutation(300)
        a = _random_cands(rng, 4, 10, pool[:100], exact=trial % 3 == 0)
        b = _random_cands(rng, 4, 12, pool[100:200], exact=trial % 3 == 0)
        c = _random_cands(rng, 4, 9, pool[200:], exact=trial % 3 == 0)
        union = [x | y | z for x, y, z in zip(_as_sets(a), _as_sets(b), _as_sets(c))]
        expected = [_oracle_prune(u, k) for u in union]
        left = _as_sets(merge(merge(a, b, k), c, k))
        right = _as_sets(merge(a, merge(c, b, k), k))
        assert left == expected
        assert right == expected


def test_exact_merge_is_topk_by_distance_then_id():
    rng = np.random.default_rng(2)
    d = rng.integers(0, 5, size=(3, 50)).astype(np.float64)
    ids = np.tile(rng.permutation(50), (3, 1)).astype(np.int64)
    a = Candidates(d[:, :20].copy(), d[:, :20].copy(), ids[:, :20].copy())
    b = Candidates(d[:, 20:].copy(), d[:, 20:].copy(), ids[:, 20:].copy())
    m = merge(a, b, 7)
    dd, ii = exact_topk(m.lo, m.ids, 7)
    for q in range(3):
        order = np.lexsort((ids[q], d[q]))[:7]
        np.testing.assert_array_equal(ii[q], ids[q, order])
        np.testing.assert_array_equal(dd[q], d[q, order])


def test_merge_does_not_modify_inputs_and_kth_keys_rows():
    rng = np.random.default_rng(3)
    a = _random_cands(rng, 5, 8, np.arange(100))
    b = _random_cands(rng, 5, 8, np.arange(100, 200))
    copies = [x.copy() for x in (a.lo, a.hi, a.ids, b.lo, b.hi, b.ids)]
    merge(a, b, 3)
    for x, y in zip(copies, (a.lo, a.hi, a.ids, b.lo, b.hi, b.ids)):
        np.testing.assert_array_equal(x, y)
    h, i = kth_keys(a, 2)
    for q in range(5):
        keys = sorted((float(hh), int(ii)) for hh, ii in zip(a.hi[q], a.ids[q]) if ii >= 0)
        assert (h[q], i[q]) == (keys[1] if len(keys) >= 2 else (np.inf, np.iinfo(np.int64).max))


def test_exact_topk_against_lexsort_with_ties_and_empty_slots():
    rng = np.random.default_rng(5)
    nq, w, k = 40, 30, 12
    d = rng.integers(0, 6, size=(nq, w)).astype(np.float64)  # many equal distances
    ids = np.stack([rng.permutation(1000)[:w] for _ in range(nq)]).astype(np.int64)
    ids[rng.random((nq, w)) < 0.3] = -1  # empty slots anywhere
    ids[0, 5:] = -1  # a row with fewer than k entries
    ids[0, :5] = [7, 3, 900, 11, 5]
    d[ids < 0] = rng.random(int((ids < 0).sum()))  # junk under empty slots must not matter
    dd, ii = exact_topk(d, ids, k)
    for q in range(nq):
        sel = ids[q] >= 0
        order = np.lexsort((ids[q][sel], d[q][sel]))[:k]
        m = order.size
        np.testing.assert_array_equal(ii[q, :m], ids[q][sel][order])
        np.testing.assert_array_equal(dd[q, :m], d[q][sel][order])
        assert (ii[q, m:] == -1).all() and np.isinf(dd[q, m:]).all()
    assert (ii[0, 5:] == -1).all() and (ii[0, :5] >= 0).all()
