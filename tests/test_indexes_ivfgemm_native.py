"""The compiled kernels of laionknn's own index (native/ivf_*.cpp through
laionknn.indexes.ivfgemm_native) against numpy oracles, the panel layout, the kernel choice, and the
index searched with each kernel (avx512, avx2, portable, numba fallback with the module disabled)."""

from __future__ import annotations

import numpy as np
import pytest

from laionknn import native
from laionknn.indexes import create
from laionknn.indexes import ivfgemm_kernels as kern
from laionknn.indexes import ivfgemm_native as nat
from ivfgemmhelpers import assert_rerank_matches_float64, rerank_case


def _kernels():
    """The compiled kernels this machine can run (none without the module)."""
    nat.reset()
    return [k for k in nat.available_kernels() if k != "numba"]


COMPILED = _kernels()
needs_native = pytest.mark.skipif(not COMPILED, reason="laionknn._native with the ivf kernels is not built here")


@pytest.fixture
def ivf_kernel(monkeypatch):
    """Set LAIONKNN_IVF_KERNEL for one test (and forget the cached choice after it)."""
    def use(name):
        monkeypatch.delenv(native.OFF_ENV, raising=False)
        monkeypatch.setenv(nat.KERNEL_ENV, name)
        nat.reset()
    yield use
    nat.reset()


def _lists(rng, sizes, head, bits):
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    codes = rng.integers(0, 1 << bits, (int(offsets[-1]), head)).astype(np.uint8)
    return offsets, codes, nat.pack(codes, offsets, bits)


@pytest.mark.parametrize("bits,head", [(8, 24), (8, 22), (4, 16), (4, 20)])
def test_pack_and_unpack_round_trip_every_list(bits, head):
    rng = np.random.default_rng(bits + head)
    offsets, codes, panels = _lists(rng, [5, 0, 16, 33, 1], head, bits)
    lp = nat.list_panels(offsets)
    assert list(lp) == [0, 1, 1, 2, 5, 6]
    assert panels.size == (lp[-1] + nat.END_PANELS) * nat.steps(head, bits) * 64
    for lst in range(5):
        a, b = offsets[lst], offsets[lst + 1]
        got = nat.unpack(panels, int(lp[lst]), int(b - a), head, bits)
        np.testing.assert_array_equal(got[:, :head], codes[a:b])
        assert not got[:, head:].any()  # padded dimensions are zero codes


def _pairs(rng, nq, nlist, per_query):
    pq, pl = [], []
    for q in range(nq):
        for lst in np.sort(rng.choice(nlist, size=per_query, replace=False)):
            pq.append(q)
            pl.append(lst)
    return np.array(pq, dtype=np.int64), np.array(pl, dtype=np.int64)


@needs_native
@pytest.mark.parametrize("kernel", COMPILED)
@pytest.mark.parametrize("bits,head", [(8, 40), (8, 36), (4, 32), (4, 24)])
@pytest.mark.parametrize("cands", [1, 7, 50])
def test_scan_keeps_each_querys_best_estimates(kernel, bits, head, cands):
    rng = np.random.default_rng(cands * 100 + bits + head)
    sizes = [37, 1, 16, 80, 0, 15, 64, 9]
    offsets, codes, panels = _lists(rng, sizes, head, bits)
    nq, nlist = 13, len(sizes)
    dq = nat.padded_dims(head, bits)
    qcodes = rng.integers(-127, 128, (nq, dq)).astype(np.int8)
    qscale = rng.uniform(0.001, 0.01, nq).astype(np.float32)
    pq, pl = _pairs(rng, nq, nlist, 4)
    base = rng.standard_normal(len(pq)).astype(np.float32)
    rank = rng.integers(0, 3, len(pq)).astype(np.int8)
    pos, est = nat.scan(kernel, panels, head, bits, nat.list_panels(offsets), offsets, qcodes, qscale, pq, pl, base,
                        nlist, cands, 2, rank=rank)
    for q in range(nq):
        every = []
        for i in np.flatnonzero(pq == q):
            a, b = offsets[pl[i]], offsets[pl[i] + 1]
            dots = codes[a:b].astype(np.int64) @ qcodes[q, :head].astype(np.int64)  # exact integers
            every += [(np.float32(np.float32(d) * qscale[q] + base[i]), a + j) for j, d in enumerate(dots)]
        want = sorted(every, key=lambda t: -t[0])[:cands]
        got = pos[q][pos[q] >= 0]
        assert len(got) == min(cands, len(every))
        assert np.all(pos[q][len(got):] == -1) and np.all(est[q][len(got):] == -np.inf)
        # the same estimates (fma or not: within one float32 rounding), the same rows up to ties
        np.testing.assert_allclose(np.sort(est[q][:len(got)]), np.sort([v for v, _ in want]), rtol=1e-6, atol=1e-6)
        worst = want[-1][0]
        clear = {p for v, p in want if v > worst + 1e-5}
        assert clear <= set(got.tolist())


@needs_native
@pytest.mark.parametrize("kernel", COMPILED)
def test_scan_refuses_bad_arrays_with_one_clear_message(kernel):
    rng = np.random.default_rng(0)
    offsets, codes, panels = _lists(rng, [20, 20], 16, 8)
    qcodes = np.zeros((2, 16), dtype=np.int8)
    args = (kernel, panels, 16, 8, nat.list_panels(offsets), offsets, qcodes, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="out of range"):
        nat.scan(*args, np.array([0, 1]), np.array([0, 5]), np.zeros(2, np.float32), 8, 4, 1)
    with pytest.raises(ValueError, match="outside the code array"):
        nat.scan(kernel, panels[:64 * 4 * 3], *args[2:], np.array([0, 1]), np.array([0, 1]),
                 np.zeros(2, np.float32), 2, 4, 1)
    with pytest.raises(ValueError, match="unknown ivf kernel"):
        nat.scan("sse9", *args[1:], np.array([0, 1]), np.array([0, 1]), np.zeros(2, np.float32), 2, 4, 1)


@needs_native
@pytest.mark.parametrize("kernel", COMPILED)
@pytest.mark.parametrize("dim", [40, 64, 77])
def test_rerank_matches_numpy_on_float16_rows(kernel, dim):
    rng = np.random.default_rng(dim)
    rows, inv, q, cand, k = rerank_case(rng, dim)
    pos, sim = nat.rerank(kernel, rows.view(np.uint16), inv, q, cand, k, 2)
    assert_rerank_matches_float64(pos, sim, rows, inv, q, cand, k)
    with pytest.raises(ValueError, match="out of range"):
        nat.rerank(kernel, rows.view(np.uint16), inv, q, np.full((6, 3), 300), k, 1)


@needs_native
def test_rerank_in_nearest_list_order_puts_each_answer_back_in_place():
    """The backend re-ranks its queries sorted by nearest list (for the cache) and un-permutes: every
    query gets its own answer, equal to the batch-order re-rank's and to the float64 oracle."""
    rng = np.random.default_rng(12)
    rows, inv, q, cand, k = rerank_case(rng, 48)
    ix = create("laionknn-ivfgemm", "dot", threads=2)
    ix.orig, ix.inv_norm = rows.view(np.uint16), inv
    nearest = np.array([5, 1, 5, 0, 3, 1])  # ties keep the batch order among themselves
    pos, sim = ix._rerank(COMPILED[0], q, cand, nearest, k)
    want_pos, want_sim = nat.rerank(COMPILED[0], rows.view(np.uint16), inv, q, cand, k, 1)
    np.testing.assert_array_equal(pos, want_pos)
    np.testing.assert_array_equal(sim, want_sim)
    assert_rerank_matches_float64(pos, sim, rows, inv, q, cand, k)


def test_quantized_query_weights_are_within_half_a_step():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((20, 30)).astype(np.float32)
    w[3] = 0
    codes = np.full((20, 32), 99, dtype=np.int8)
    scale, qconst = np.zeros(20, np.float32), np.zeros(20, np.float32)
    kern.quantize_weights(w, np.ones(30, np.float32), np.zeros(30, np.float32), 0, 20, codes, scale, qconst)
    assert codes.shape == (20, 32) and not codes[:, 30:].any()
    assert np.all(np.abs(codes[:, :30] * scale[:, None] - w) <= 0.5001 * scale[:, None])
    assert np.abs(codes).max() <= 127 and not codes[3].any()


def test_kernel_choice_follows_the_environment(ivf_kernel, monkeypatch):
    ivf_kernel("numba")
    assert nat.kernel() == "numba"
    monkeypatch.setenv(native.OFF_ENV, "off")
    monkeypatch.delenv(nat.KERNEL_ENV)
    nat.reset()
    assert nat.available_kernels() == ["numba"] and nat.kernel() == "numba"
    monkeypatch.delenv(native.OFF_ENV)
    nat.reset()
    avail = nat.available_kernels()
    assert nat.kernel() == next((k for k in ("avx512", "avx2") if k in avail), "numba")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    centers = rng.standard_normal((12, 48))
    x = centers[rng.integers(0, 12, 2500)] + 0.7 * rng.standard_normal((2500, 48))
    q = centers[rng.integers(0, 12, 60)] + 0.7 * rng.standard_normal((60, 48))
    return x.astype(np.float16), q.astype(np.float32)


@pytest.mark.parametrize("name,bits,head", [("laionknn-ivfgemm", 8, 40), ("laionknn-ivfgemm-q4", 4, 40)])
def test_every_kernel_gives_the_same_search(name, bits, head, data, ivf_kernel):
    x, q = data
    ix = create(name, "cosine", threads=2, nlist=16, head=head, bits=bits, train_size=2500)
    ix.build(x)
    ix.set_query_params(nprobe=5, **({} if name.endswith("q4") else {"k_factor": 6}))
    results = {}
    for kernel in [*COMPILED, "numba"]:
        ivf_kernel(kernel)
        assert nat.kernel() == kernel
        results[kernel] = ix.search(q, 10)
    xs = x.astype(np.float64)
    xs /= np.linalg.norm(xs, axis=1, keepdims=True)
    want = np.argsort(-(q / np.linalg.norm(q, axis=1, keepdims=True)) @ xs.T, axis=1)[:, :10]
    for kernel, res in results.items():
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids, want)])
        assert recall >= (0.9 if bits == 8 else 0.4), (kernel, recall)
    for fast in ("avx512", "avx2"):  # the same integer sums and the same selection as the portable build
        if "portable" in results and fast in results:
            np.testing.assert_array_equal(results[fast].ids, results["portable"].ids)
    for kernel, res in results.items():  # the fallback scores float32 weights, not int8: nearly the same
        same = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids, results["numba"].ids)])
        assert same >= 0.85, (kernel, same)


def test_the_fallback_runs_with_the_module_disabled(data, monkeypatch):
    x, q = data
    monkeypatch.setenv(native.OFF_ENV, "off")
    nat.reset()
    try:
        assert nat.kernel() == "numba"
        ix = create("laionknn-ivfgemm", "dot", threads=1, nlist=8, head=16, train_size=1000)
        ix.build(x)
        ix.set_query_params(nprobe=8, k_factor=len(x) / 10)  # every list, every row re-ranked: exact
        res = ix.search(q, 5)
        exact = q.astype(np.float64) @ x.astype(np.float64).T
        np.testing.assert_array_equal(np.sort(res.ids, 1), np.sort(np.argsort(-exact, axis=1)[:, :5], 1))
    finally:
        monkeypatch.delenv(native.OFF_ENV)
        nat.reset()
