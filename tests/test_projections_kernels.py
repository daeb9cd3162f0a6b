"""Numba kernels against plain numpy oracles (including duplicate rows and ties)."""

import numpy as np
import pytest

from laionknn.errors import UsageError
from laionknn.projections import kernels


def _oracle_hamming(xq, xb):
    x = xq[:, None, :] ^ xb[None, :, :]
    bits = np.unpackbits(x.view(np.uint8), axis=2)
    return bits.sum(axis=2)


def _oracle_topk(d, k):
    out = []
    for row in d:
        order = sorted(range(len(row)), key=lambda j: (row[j], j))[:k]
        out.append(order)
    return np.array(out)


def test_hamming_distances_and_knn_match_oracle(rng):
    xb = rng.integers(0, 2**63, size=(300, 3), dtype=np.uint64)
    xb[10] = xb[20]                      # duplicate -> tie broken by lower id
    xb[30] = 0                           # degenerate rows
    xb[31] = np.iinfo(np.uint64).max
    xq = np.concatenate([xb[:5], rng.integers(0, 2**63, size=(7, 3), dtype=np.uint64)])
    d = _oracle_hamming(xq, xb)
    assert np.array_equal(kernels.hamming_distances(xq, xb), d)
    res = kernels.hamming_knn(xb, xq, 15, tile=64)
    want = _oracle_topk(d, 15)
    assert np.array_equal(res.ids, want)
    assert np.array_equal(res.dists, np.take_along_axis(d, want, 1).astype(np.float32))


def test_hamming_knn_heavy_ties_lower_id_first():
    xb = np.zeros((50, 1), dtype=np.uint64)
    xb[::3] = 1
    res = kernels.hamming_knn(xb, np.zeros((2, 1), np.uint64), 10)
    zeros = [j for j in range(50) if j % 3][:10]
    assert res.ids[0].tolist() == zeros and res.ids[1].tolist() == zeros
    assert (res.dists == 0).all()


@pytest.mark.parametrize("k", [1, 10, 300])
def test_hamming_knn_bounded_candidate_list_stays_exact(rng, k):
    """More rows than the per-query candidate list holds (max(4k, 1024)): the list is compacted many
    times, with a tie-rich distance distribution (sparse one-word sketches) and rows that arrive in
    every order of distance, and the answer must still be the oracle's (ties to the lower id)."""
    n = 6000
    bits = rng.random((n, 64)) < 0.08                 # few set bits: distances 0..~15, heavy ties
    xb = np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64)
    xb[n // 2:n // 2 + 40] = 0                        # late exact matches of the zero query
    xq = np.concatenate([np.zeros((1, 1), np.uint64), xb[[5, 4999]],
                         rng.integers(0, 2**63, size=(20, 1), dtype=np.uint64)])
    res = kernels.hamming_knn(xb, xq, k, tile=256)
    d = _oracle_hamming(xq, xb)
    want = np.argsort(d, axis=1, kind="stable")[:, :k]   # stable: equal distances keep ascending ids
    assert np.array_equal(res.ids, want)
    assert np.array_equal(res.dists, np.take_along_axis(d, want, 1).astype(np.float32))


def test_l2_distances_and_knn_match_oracle(rng):
    xb = rng.standard_normal((257, 7)).astype(np.float32)
    xb[3] = xb[100]
    xb[4] = 0
    xq = np.concatenate([xb[[100, 4]], rng.standard_normal((9, 7)).astype(np.float32)])
    d = ((xq.astype(np.float64)[:, None, :] - xb.astype(np.float64)[None]) ** 2).sum(-1)
    assert np.allclose(kernels.l2_distances(xq, xb), d, rtol=1e-6)
    res = kernels.l2_knn(xb, xq, 12, tile=50)
    want = _oracle_topk(d, 12)
    assert np.array_equal(res.ids, want)
    assert res.ids[0, 0] == 3 and res.ids[0, 1] == 100   # exact duplicate: lower id first
    assert np.allclose(res.dists, np.take_along_axis(d, want, 1), rtol=1e-6)


def test_kernels_agree_with_exact_engine(rng):
    from laionknn.exact import knn

    xb = rng.integers(0, 2**63, size=(200, 2), dtype=np.uint64)
    xq = rng.integers(0, 2**63, size=(6, 2), dtype=np.uint64)
    a, b = kernels.hamming_knn(xb, xq, 10), knn(xb, xq, 10, "hamming")
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.dists, b.dists)
    fb = rng.standard_normal((200, 5)).astype(np.float32)
    fq = rng.standard_normal((6, 5)).astype(np.float32)
    assert np.array_equal(kernels.l2_knn(fb, fq, 10).ids, knn(fb, fq, 10, "l2").ids)


def test_bad_k_and_widths(rng):
    xb = rng.integers(0, 2**63, size=(5, 2), dtype=np.uint64)
    with pytest.raises(UsageError, match="larger than the database"):
        kernels.hamming_knn(xb, xb, 6)
    with pytest.raises(UsageError, match="widths differ"):
        kernels.hamming_knn(xb, xb[:, :1].copy(), 2)
    with pytest.raises(UsageError, match="dimensions differ"):
        kernels.l2_knn(np.zeros((5, 3), np.float32), np.zeros((1, 2), np.float32), 1)
