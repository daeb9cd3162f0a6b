"""Numba kernels of the exact engine against plain numpy oracles, and the float32 error bound."""

from __future__ import annotations

import numpy as np
import pytest

from laionknn.exact import gamma
from laionknn.exact.kernels import norms64, pairs_by_row, rescore_into, select_hamming, select_scores
from laionknn.exact.engine import _scan_tile
from laionknn.exact.merge import INT64_MAX, Candidates, merge


def test_norms64_matches_numpy():
    rng = np.random.default_rng(30)
    x = rng.standard_normal((37, 19)).astype(np.float32)
    x[3] = 0
    np.testing.assert_allclose(norms64(x), np.linalg.norm(x.astype(np.float64), axis=1), rtol=1e-15)


def test_rescore_into_matches_numpy_for_each_mode():
    rng = np.random.default_rng(31)
    xb = rng.standard_normal((50, 23)).astype(np.float16).astype(np.float32)
    xq = rng.standard_normal((4, 23))
    rows = rng.integers(0, 50, size=40)
    qs = rng.integers(0, 4, size=40)
    qn, bn = norms64(xq), norms64(xb)
    x64 = xb.astype(np.float64)
    for mode, expect in ((0, 1 - (x64[rows] * xq[qs]).sum(1)),
                         (1, 1 - (x64[rows] * xq[qs]).sum(1) / (qn[qs] * bn[rows])),
                         (2, ((x64[rows] - xq[qs]) ** 2).sum(1))):
        out = np.full((4, 40), np.nan)
        rescore_into(xb, xq, rows.astype(np.int64), qs.astype(np.int64), np.arange(40), mode, qn, bn, out)
        np.testing.assert_allclose(out[qs, np.arange(40)], expect, rtol=1e-14, atol=1e-14)
        assert np.isnan(out).sum() == 3 * 40  # nothing written outside the pairs' own slots


def test_pairs_by_row_is_a_stable_grouping_by_row():
    rng = np.random.default_rng(35)
    ids = rng.integers(100, 160, size=(7, 9)).astype(np.int64)
    ids[rng.random((7, 9)) < 0.25] = -1
    qidx, pos = np.nonzero(ids >= 0)
    rid = ids[qidx, pos]
    order = np.argsort(rid, kind="stable")  # the numpy oracle it replaces
    rows, qs, slots = pairs_by_row(ids, 100, 160)
    np.testing.assert_array_equal(rows, rid[order])
    np.testing.assert_array_equal(qs, qidx[order])
    np.testing.assert_array_equal(slots, pos[order])
    with pytest.raises(ValueError, match="outside the row range"):
        pairs_by_row(ids, 120, 160)


def test_select_hamming_popcount_matches_numpy():
    rng = np.random.default_rng(32)
    xq = rng.integers(0, 2**64, size=(5, 16), dtype=np.uint64)
    xb = rng.integers(0, 2**64, size=(300, 16), dtype=np.uint64)
    k = 300  # keep everything: the kernel then reports every distance
    out = Candidates.empty(5, 300)
    counts = np.zeros(5, dtype=np.int64)
    select_hamming(xq, xb, np.full(5, np.inf), np.full(5, INT64_MAX), 1000, k, out.lo, out.hi, out.ids, counts)
    assert (counts == 300).all()
    expect = np.stack([np.bitwise_count(xb ^ q).sum(axis=1) for q in xq])
    for q in range(5):
        np.testing.assert_array_equal(out.ids[q], 1000 + np.arange(300))
        np.testing.assert_array_equal(out.lo[q], expect[q])


@pytest.mark.parametrize("tile,with_max", [(128, False), (100, False), (100, True), (128, True)])
def test_select_scores_keeps_every_row_the_bound_cannot_exclude(tile, with_max):
    """Tiles of 100 columns end in a partial chunk, and overflowing buffers resume mid-chunk; with_max
    feeds the per-32-column row maxima the int16 GEMM kernel writes."""
    rng = np.random.default_rng(33)
    nq, nbk, k = 6, 400, 5
    S = rng.standard_normal((nq, nbk)).astype(np.float32)
    S[:, 100:130] = S[:, [99]]  # equal scores: intervals overlap, all must survive
    cols = (np.ones(nbk), np.zeros(nbk), np.full(nbk, 0.01), np.zeros(nbk))
    from laionknn.exact.kernels import _CHUNK, chunk_bounds
    g, c = np.ones(nq), np.zeros(nq)
    for width in (6, 12, 64, 400):  # small buffers overflow and are widened, or compact repeatedly
        buf = Candidates.empty(nq, width)
        th, ti = np.full(nq, np.inf), np.full(nq, INT64_MAX)
        counts, pos = np.zeros(nq, dtype=np.int64), np.zeros(nq, dtype=np.int64)
        for t0 in range(0, nbk, tile):  # several tiles feeding one buffer
            tc = tuple(x[t0:t0 + tile] for x in cols)
            st = np.ascontiguousarray(S[:, t0:t0 + tile])
            cm = np.empty((0, 0), dtype=np.float32)
            if with_max:
                cm = np.stack([st[:, j:j + 32].max(axis=1) for j in range(0, st.shape[1], 32)], axis=1)
            buf = _scan_tile(st, tc + (chunk_bounds(*tc, _CHUNK),), g, c, th, ti, t0, k, buf, counts, pos, cm)
        assert (counts == (buf.ids >= 0).sum(axis=1)).all()
        pruned = merge(Candidates.empty(nq), buf, k)
        for q in range(nq):
            lo, hi = -S[q].astype(np.float64) - 0.01, -S[q].astype(np.float64) + 0.01
            keys = sorted(zip(hi.tolist(), range(nbk)))
            H, I = keys[k - 1]
            expect = {j for j in range(nbk) if (lo[j], j) <= (H, I)}
            assert set(pruned.ids[q][pruned.ids[q] >= 0].tolist()) == expect
            sel = pruned.ids[q] >= 0
            np.testing.assert_array_equal(pruned.lo[q][sel], lo[pruned.ids[q][sel]])


def test_float32_dot_error_stays_within_gamma_bound():
    rng = np.random.default_rng(34)
    for dim in (8, 32, 768):
        q = (rng.standard_normal((20, dim)) * rng.uniform(0.01, 100, (20, 1))).astype(np.float32)
        x = rng.standard_normal((500, dim)).astype(np.float16).astype(np.float32)
        x[:10] = np.abs(x[:10])  # same-sign rows: the worst case for cancellation-free growth
        q[:3] = np.abs(q[:3])
        s32 = (q @ x.T).astype(np.float64)
        exact = q.astype(np.float64) @ x.astype(np.float64).T
        bound = gamma(dim) * np.linalg.norm(q.astype(np.float64), axis=1)[:, None] \
            * np.linalg.norm(x.astype(np.float64), axis=1)[None, :]
        assert (np.abs(s32 - exact) <= bound).all()
