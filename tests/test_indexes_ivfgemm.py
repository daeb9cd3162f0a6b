"""laionknn's own index (laionknn-ivfgemm, laionknn-ivfgemm-q4): its numba kernels against numpy
oracles, its build (k-means, residual PCA, list layout) and search against brute force, determinism for
a seed, save/load round trips, and one-line errors for bad input on the command line."""

from __future__ import annotations

import numpy as np
import pytest

from laionknn.errors import UsageError
from laionknn.indexes import create
from laionknn.indexes import ivfgemm_kernels as kern
from laionknn.indexes.base import dir_size
from laionknn.indexes.ivfgemm_index import kmeans, nearest_centroid, residual_rotation
from test_memory_limit import _run
from test_indexes_runner import DB, NQ, tiny  # noqa: F401 -- the tiny catalog dataset fixture
from ivfgemmhelpers import assert_rerank_matches_float64, rerank_case


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((12, 48))
    x = centers[rng.integers(0, 12, 1500)] + 0.7 * rng.standard_normal((1500, 48))
    q = centers[rng.integers(0, 12, 40)] + 0.7 * rng.standard_normal((40, 48))
    return x.astype(np.float16), q.astype(np.float32)


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- kernels ---------------------------------------------------------------------------------------------------
def test_f16_bit_trick_converts_every_float16_exactly():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    finite = np.isfinite(bits.view(np.float16))  # normal, subnormal, +-0 (inf/nan are refused at build)
    buf = np.empty(bits.size, dtype=np.uint32)
    kern._f16_bits(bits, buf)
    got = buf.view(np.float32).astype(np.float64) * 2.0 ** 112
    np.testing.assert_array_equal(got[finite], bits.view(np.float16)[finite].astype(np.float64))


def test_scan_list_keeps_each_querys_top_c_of_base_plus_score():
    rng = np.random.default_rng(0)
    nq, c = 7, 5
    heap_v = np.full((nq, c), -np.inf, dtype=np.float32)
    heap_i = np.full((nq, c), -1, dtype=np.int64)
    every = {q: [] for q in range(nq)}
    first = 0
    for rows in (3, 40, 17, 1, 33):  # lists of these sizes, each probed by a random subset of queries
        qrows = np.sort(rng.choice(nq, size=rng.integers(1, nq + 1), replace=False)).astype(np.int64)
        scores = rng.standard_normal((len(qrows), rows)).astype(np.float32)
        base = rng.standard_normal(len(qrows)).astype(np.float32)
        kern.scan_list(scores, qrows, base, first, heap_v, heap_i)
        for a, q in enumerate(qrows):
            every[q] += [(float(np.float32(scores[a, j] + base[a])), first + j) for j in range(rows)]
        first += rows
    for q in range(nq):
        want = sorted(every[q], reverse=True)[:c]
        got = sorted(zip(heap_v[q].tolist(), heap_i[q].tolist()), reverse=True)
        got = [g for g in got if g[1] >= 0]
        assert [p for _, p in got] == [p for _, p in want]
        np.testing.assert_allclose([v for v, _ in got], [v for v, _ in want], rtol=0, atol=1e-6)


def test_rerank_f16_matches_numpy_on_float16_rows():
    rng = np.random.default_rng(1)
    rows, inv, q, cand, k = rerank_case(rng, 40)
    pos = np.empty((6, k), dtype=np.int64)
    sim = np.empty((6, k), dtype=np.float32)
    kern.rerank_f16(rows.view(np.uint16), inv, q * kern.F16_SCALE, cand, 0, 6, k, pos, sim)
    assert_rerank_matches_float64(pos, sim, rows, inv, q, cand, k)


def test_accumulate_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 50).astype(np.int32)
    sums, counts = np.zeros((4, 6)), np.zeros(4, dtype=np.int64)
    kern.accumulate(x, labels, sums, counts)
    want = np.zeros((4, 6))
    np.add.at(want, labels, x.astype(np.float64))
    np.testing.assert_allclose(sums, want, atol=1e-9)
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=4))


@pytest.mark.parametrize("nprobe", [1, 3, 7, 16])
def test_probe_lists_are_the_nearest_sorted_with_their_base(nprobe):
    rng = np.random.default_rng(nprobe)
    nq, nlist = 30, 16
    both = rng.standard_normal((nq, nlist + 5)).astype(np.float32)
    both[3, :nlist] = 0.25  # ties everywhere: the lower lists win, in list order
    half_sq = rng.uniform(0, 0.5, nlist).astype(np.float32)
    if nprobe == 7:
        half_sq[:] = 0.0  # equal centroid norms: query 3 ties on every list
    qconst = rng.standard_normal(nq).astype(np.float32)
    probes = np.full((nq, nprobe), -9, dtype=np.int64)
    base = np.zeros((nq, nprobe), dtype=np.float32)
    kern.probe_lists(both, nlist, half_sq, qconst, nprobe, 0, 17, probes, base)
    kern.probe_lists(both, nlist, half_sq, qconst, nprobe, 17, nq, probes, base)
    near = both[:, :nlist] - half_sq  # float32, as the kernel
    for q in range(nq):
        want = sorted(range(nlist), key=lambda j: (-near[q, j], j))[:nprobe]  # nearest first, ties to the lower list
        assert probes[q].tolist() == want, q
        np.testing.assert_array_equal(base[q], both[q, want] + qconst[q])


def _numpy_quantize(w, dq):
    """The oracle: per-query int8 codes (nq, dq) and scales of the weights w in float32 numpy."""
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    codes = np.zeros((len(w), dq), dtype=np.int8)
    codes[:, :w.shape[1]] = np.clip(np.rint(w / scale[:, None]), -127, 127)
    return codes, scale


def test_quantize_weights_matches_the_numpy_quantisation():
    from laionknn.indexes import ivfgemm_native as nat

    rng = np.random.default_rng(5)
    qh = rng.standard_normal((25, 37)).astype(np.float32)
    qh[4] = 0  # a zero query: scale 1, codes 0
    step = rng.uniform(0.01, 0.2, 37).astype(np.float32)
    lo = rng.standard_normal(37).astype(np.float32)
    dq = nat.padded_dims(37, 8)
    qcodes = np.full((25, dq), 99, dtype=np.int8)
    qscale, qconst = np.zeros(25, np.float32), np.zeros(25, np.float32)
    kern.quantize_weights(qh, step, lo, 0, 25, qcodes, qscale, qconst)
    want_codes, want_scale = _numpy_quantize(qh * step, dq)
    np.testing.assert_array_equal(qcodes, want_codes)
    np.testing.assert_array_equal(qscale, want_scale)
    np.testing.assert_allclose(qconst, qh.astype(np.float64) @ lo.astype(np.float64), rtol=1e-6, atol=1e-6)


def test_kmeans_is_seeded_and_assigns_to_the_nearest_centroid(data):
    x = np.asarray(data[0], dtype=np.float32)
    a, b = kmeans(x, 16, 5, seed=3), kmeans(x, 16, 5, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, kmeans(x, 16, 5, seed=4))
    lab = nearest_centroid(x, a, 0.5 * (a.astype(np.float64) ** 2).sum(1))
    d2 = ((x[:, None, :].astype(np.float64) - a[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(lab, np.argmin(d2, axis=1))


def test_residual_rotation_is_orthonormal_and_takes_the_largest_directions(data):
    x = np.asarray(data[0], dtype=np.float32)
    cent = kmeans(x, 8, 4, seed=0)
    lab = nearest_centroid(x, cent, 0.5 * (cent.astype(np.float64) ** 2).sum(1))
    rot = residual_rotation(x, cent, lab, 10)
    np.testing.assert_allclose(rot.T.astype(np.float64) @ rot, np.eye(10), atol=1e-5)
    r = (x - cent[lab]).astype(np.float64)
    w = np.sort(np.linalg.eigvalsh(r.T @ r))[::-1]
    np.testing.assert_allclose(((r @ rot) ** 2).sum(), w[:10].sum(), rtol=1e-4)


# --- the index ---------------------------------------------------------------------------------------------------
def test_probing_every_list_with_every_candidate_is_exact(data):
    x, q = data
    ix = create("laionknn-ivfgemm", "cosine", threads=2, nlist=8, head=8, train_size=1500, niter=4)
    ix.build(x)
    ix.set_query_params(nprobe=8, k_factor=len(x) / 10)
    res = ix.search(q, 10)
    sims = _unit(q) @ _unit(x.astype(np.float64)).T
    want = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(np.sort(res.ids, 1), np.sort(want, 1))
    np.testing.assert_allclose(res.dists, 1 - np.take_along_axis(sims, res.ids, 1), atol=1e-5)
    # the lists partition the rows, each row once
    assert ix.offsets[-1] == len(x) and np.array_equal(np.sort(ix.ids), np.arange(len(x)))


@pytest.mark.parametrize("name", ["laionknn-ivfgemm", "laionknn-ivfgemm-q4"])
def test_builds_are_deterministic_and_save_load_round_trips(name, data, tmp_path):
    x, q = data
    params = dict(nlist=16, head=16, train_size=800, seed=5)
    a, b = create(name, "cosine", threads=2, **params), create(name, "cosine", threads=2, **params)
    a.build(x)
    b.build(x)
    for arr in a._arrays():
        np.testing.assert_array_equal(getattr(a, arr), getattr(b, arr), err_msg=arr)
    a.set_query_params(nprobe=4)
    res = a.search(q, 10)
    a.save(tmp_path / "ix")
    again = create(name, "cosine", threads=2, **params)
    again.load(tmp_path / "ix", len(x), x.shape[1])
    again.set_query_params(nprobe=4)
    res2 = again.search(q, 10)
    np.testing.assert_array_equal(res.ids, res2.ids)
    np.testing.assert_array_equal(res.dists, res2.dists)
    assert again.build_params["train_size"] == 800
    with pytest.raises(UsageError, match="rebuild it for this database"):
        create(name, "cosine", **params).load(tmp_path / "ix", len(x) + 1, x.shape[1])


def test_threads_do_not_change_the_answer(data):
    x, q = data
    ix = create("laionknn-ivfgemm", "dot", threads=1, nlist=16, head=12, train_size=1500)
    ix.build(x)
    ix.set_query_params(nprobe=5, k_factor=3)
    one = ix.search(q, 7)
    ix.set_threads(3)
    three = ix.search(q, 7)
    np.testing.assert_array_equal(one.ids, three.ids)
    exact = q.astype(np.float64) @ x.astype(np.float64).T  # dot: distances 1 - q.x on the originals
    np.testing.assert_allclose(one.dists, 1 - np.take_along_axis(exact, one.ids, 1), atol=1e-4)


def test_q4_mode_keeps_no_originals_and_stays_within_64_bytes_a_vector(data, tmp_path):
    x, q = data
    ix = create("laionknn-ivfgemm-q4", "cosine", threads=1, nlist=16, head=48, bits=4, train_size=1500)
    ix.build(x)
    assert not hasattr(ix, "orig")
    assert ix.codes.dtype == np.uint8
    # 4-bit codes in 16-row panels: 24 bytes a row, each list padded to whole panels, 4 end panels
    assert ix.codes.size == (int(ix.list_panel[-1]) + 4) * 16 * 24
    assert np.all(np.diff(ix.list_panel) == -(-np.diff(ix.offsets) // 16))
    per_row = ix.codes.nbytes / len(x) + ix.ids.itemsize
    assert per_row <= 64
    ix.set_query_params(nprobe=16)
    res = ix.search(q, 10)
    sims = _unit(q) @ _unit(x.astype(np.float64)).T
    want = np.argsort(-sims, axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids, want)])
    assert recall >= 0.8  # all 48 dimensions at 4 bits: the estimate ranks well
    # the centroids are saved as float16, rounded before the rows were assigned: searched as built
    assert np.array_equal(ix.centroids, ix.centroids.astype(np.float16).astype(np.float32))
    ix.save(tmp_path / "ix")
    assert np.load(tmp_path / "ix" / "centroids.npy").dtype == np.float16
    assert dir_size(tmp_path / "ix") >= create("laionknn-ivfgemm-q4").min_index_bytes(
        len(x), 48, ix.build_params)


@pytest.mark.parametrize("params,needle", [
    (dict(nlist=5000), "nlist=5000 lists for 1500 vectors"),
    (dict(head=49), "head=49 PCA dimensions but the data has 48"),
])
def test_bad_build_parameters_are_refused(data, params, needle):
    with pytest.raises(UsageError, match=needle):
        create("laionknn-ivfgemm", "cosine", **params).build(data[0])


def test_bad_code_width_is_refused(data):
    with pytest.raises(UsageError, match="4 or 8 bits"):
        create("laionknn-ivfgemm-q4", "cosine", bits=5, head=16).build(data[0])
    with pytest.raises(UsageError, match="does not support the l2 metric"):
        create("laionknn-ivfgemm", "l2")


@pytest.mark.parametrize("extra,needle", [
    (["--grid", "GRID"], "head=4096 PCA dimensions but the data has 768"),
    (["--memory-limit", "1K"], "below the smallest index laionknn-ivfgemm can build"),
])
def test_cli_bad_input_is_one_line_exit_2(tiny, tmp_path, capsys, extra, needle):  # noqa: F811
    grid = tmp_path / "g.toml"
    grid.write_text("[[build]]\nnlist = 8\nhead = 4096\n[query]\nnprobe = [2]\n")
    extra = [str(grid) if e == "GRID" else e for e in extra]
    code = _run(["--quiet", "search", "--database", DB, "--index", "laionknn-ivfgemm", "--n-queries", str(NQ),
                 "--out", str(tmp_path / "o"), "--threads", "1", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_a_query_whose_lists_are_too_small_still_gets_k_answers():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((600, 16))
    x[:3] = 40 + rng.standard_normal((3, 16))  # a far cluster of 3 rows: a list of its own
    ix = create("laionknn-ivfgemm", "dot", threads=1, nlist=8, head=8, train_size=600, seed=1)
    ix.build(x.astype(np.float16))
    assert np.diff(ix.offsets).min() < 10
    q = np.full((1, 16), 40.0, dtype=np.float32)
    ix.set_query_params(nprobe=1, k_factor=50)
    res = ix.search(q, 10)
    assert (res.ids >= 0).all() and len(set(res.ids[0])) == 10
    exact = (q.astype(np.float64) @ x.astype(np.float16).astype(np.float64).T)[0]
    assert set(res.ids[0][:3]) == {0, 1, 2} == set(np.argsort(-exact)[:3])
