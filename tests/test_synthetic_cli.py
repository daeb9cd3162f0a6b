"""`laionknn synth` and `laionknn stats` end to end (small sizes), and their one-line errors."""

import h5py
import numpy as np
import pytest

from laionknn.cli.main import main
from laionknn.synthetic.report import dataset_stats
from laionknn.synthetic.stats import global_stats, lid_mle, projection_recall


def run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_synth_then_stats(home, capsys):
    code, out, err = run(["synth", "--size", "5000", "--queries", "300", "--seed", "1"], capsys)
    assert code == 0, err
    db = home / "data" / "synthetic-v3-clip768v2-n=5K-seed=1.h5"
    q = home / "data" / "synthetic-v3-queries-300-clip768v2-seed=1.h5"
    assert "synthetic-v3-clip768v2-n=5K-seed=1" in out and str(db) in out.replace("\n", "")
    with h5py.File(db) as f:
        assert f["emb"].dtype == np.float16 and f["emb"].shape == (5000, 768)
    with h5py.File(q) as f:
        assert f["emb"].dtype == np.float32 and f["emb"].shape == (300, 768)
    code, out, err = run(["synth", "--size", "5000", "--queries", "300", "--seed", "1"], capsys)
    assert code == 0 and "kept" in out
    code, out, err = run(["stats", "--database", "synthetic-v3-clip768v2-n=5K-seed=1", "--sample", "512",
                          "--queries", str(q), "--n-queries", "100"], capsys)
    assert code == 0, err
    assert "x 100 queries" in out  # --n-queries took effect
    for text in ("mean pairwise cosine", "norm of the mean", "PCA variance share, top 96", "pca32 recall@30",
                 "pca96 recall@30", "LID", "0.384", "0.620", "0.290", "0.495", "organisers: real 100K"):
        assert text in out, text


def test_stats_on_a_plain_file_uses_held_out_rows(tmp_path, rng):
    from laionknn.io import write_vectors

    x = rng.standard_normal((2000, 768)).astype(np.float32)
    p = write_vectors(tmp_path / "plain.h5", x, "emb")
    rep = dataset_stats(str(p), sample=256, recall_rows=2000, recall_queries=100)
    assert rep.recall_rows == 1900 and rep.recall_queries == 100 and "held-out" in rep.queries_source
    # isotropic noise: no common direction, flat spectrum
    assert abs(rep.sample["mean_cos"]) < 0.01 and rep.sample["norm_of_mean"] < 0.1
    assert set(rep.recall) == {32, 96} and 0 <= rep.recall[32] <= rep.recall[96] <= 1


@pytest.mark.parametrize("argv, message", [
    (["synth", "--size", "12X"], "cannot read size '12X'"),
    (["synth", "--size", "1K", "--seed", "-3"], "--seed must be a non-negative integer"),
    (["synth", "--size", "1K", "--seed", "abc"], "--seed must be a non-negative integer"),
    (["synth", "--size", "2K", "--generator", "v7"], "unknown synthetic generator version 'v7'; known versions: v2, v3, v4"),
    (["synth", "--size", "500"], "--size must be at least 768 rows (the number of dimensions)"),
    (["stats", "synthetic-v9-clip768v2-n=100K"], "unknown synthetic generator version 'v9'"),
    (["stats", "no-such-dataset"], "no catalog entry named"),
    (["stats", "synthetic-gold-standard-clip768v2-n=100K-q=10k"], "is a gold standard"),
    (["stats", "synthetic-clip768v2-n=1000", "--sample", "5"], "--sample must be at least"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_global_stats_against_numpy(rng):
    x = rng.standard_normal((200, 768)) + 0.5
    s = global_stats(x)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    g = xn @ xn.T
    assert s["mean_cos"] == pytest.approx(g[np.triu_indices(200, 1)].mean())
    assert s["norm_of_mean"] == pytest.approx(np.linalg.norm(xn.mean(0)))
    ev = np.linalg.eigvalsh(np.cov(xn.T, bias=True))[::-1]
    assert s["pca"][32] == pytest.approx(ev[:32].sum() / ev.sum())
    np.fill_diagonal(g, -2)
    assert s["nn_cos"] == pytest.approx(g.max(1).mean())


def test_lid_mle_uniform_ball():
    # points uniform in a d-dim ball: the MLE should be close to d
    rng = np.random.default_rng(0)
    for d in (4, 10):
        x = rng.standard_normal((20000, d))
        x *= (rng.random((20000, 1)) ** (1 / d)) / np.linalg.norm(x, axis=1, keepdims=True)
        q = x[:200]
        db = x[200:]
        dist = np.sqrt(np.maximum((q**2).sum(1)[:, None] + (db**2).sum(1)[None, :] - 2 * q @ db.T, 0))
        lid = np.median(lid_mle(np.sort(dist, axis=1)[:, :10]))
        assert d * 0.6 < lid < d * 1.5


def test_projection_recall_exact_when_data_is_low_rank(rng):
    # data in a 20-dim subspace: PCA-32 and PCA-96 lose nothing
    x = rng.standard_normal((3000, 20)) @ rng.standard_normal((20, 768))
    r = projection_recall(x[100:], x[:100], dims=(32, 96), k=30)
    assert r[32] == pytest.approx(1.0) and r[96] == pytest.approx(1.0)


def test_synth_v2_keeps_its_original_names(home, capsys):
    code, out, err = run(["synth", "--size", "1000", "--queries", "20", "--generator", "v2"], capsys)
    assert code == 0, err
    with h5py.File(home / "data" / "synthetic-clip768v2-n=1K.h5") as f:
        assert f.attrs["generator"] == "v2"
    assert (home / "data" / "synthetic-queries-20-clip768v2.h5").exists()


def test_fingerprint_against_a_numpy_oracle(rng):
    """The streamed fingerprint at two small scales equals brute force written here with numpy."""
    from laionknn.synthetic.fidelity import fingerprint

    n, nq = 3000, 40
    centres = rng.standard_normal((20, 768))
    x = (centres[rng.integers(0, 20, n)] + 0.8 * rng.standard_normal((n, 768))).astype(np.float16)
    q = (centres[rng.integers(0, 20, nq)] + 0.8 * rng.standard_normal((nq, 768))).astype(np.float32)

    def blocks(stop):  # uneven blocks, so that scale boundaries fall inside a block
        for lo in range(0, stop, 700):
            yield lo, x[lo:min(stop, lo + 700)]

    real = {"pca32_r30": {1000: 0.5, 3000: 0.5}, "pca96_r30": {3000: 0.5}}
    fp = fingerprint(blocks, n, q, scales=(1000, 3000), ivf=False, binwalk=False, real=real)
    xn = x.astype(np.float64)
    xn /= np.linalg.norm(xn, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    mean = xn.mean(axis=0)  # PCA fitted on all (here < 1M) rows
    _, _, vt = np.linalg.svd(xn - mean, full_matrices=False)

    def oracle(rows, d):
        db = xn[:rows]
        gold = np.argsort(-(qn @ db.T), axis=1)[:, :30]
        pb, pq = (db - mean) @ vt[:d].T, (qn - mean) @ vt[:d].T
        d2 = ((pq[:, None, :] - pb[None, :, :]) ** 2).sum(axis=2)
        got = np.argsort(d2, axis=1)[:, :30]
        return np.mean([len(set(a) & set(b)) / 30 for a, b in zip(got, gold)])

    assert fp.figures["pca32_r30"][1000] == pytest.approx(oracle(1000, 32), abs=1e-9)
    assert fp.figures["pca32_r30"][3000] == pytest.approx(oracle(3000, 32), abs=1e-9)
    assert fp.figures["pca96_r30"][3000] == pytest.approx(oracle(3000, 96), abs=1e-9)
    rows = {(r["figure"], r["scale"]): r for r in fp.rows()}
    r = rows[("pca96_r30", 3000)]
    assert r["delta"] == pytest.approx(abs(r["measured"] - 0.5)) and r["within"] == (r["delta"] <= 0.03)


def test_stats_reads_projection_recall_against_the_nearest_published_scale():
    # the organisers published pca32/pca96 recall@30 at 100K, 300K and 10M only: a twin is read against the
    # scale nearest its size on a log scale, never always against 300K
    from laionknn.synthetic.fidelity import real_projection_recall as _real_projection_recall

    assert _real_projection_recall(20_000) == (100_000, {32: 0.2896, 96: 0.4948})
    assert _real_projection_recall(250_000)[0] == 300_000
    assert _real_projection_recall(1_000_000) == (300_000, {32: 0.2567, 96: 0.4733})
    assert _real_projection_recall(4_000_000) == (10_000_000, {32: 0.1955, 96: 0.4222})


def test_graph_proxy_is_measured_below_the_published_scale_and_read_one_sided(rng):
    """An HNSW row published at a scale the run does not reach is measured on the largest scale it does,
    and judged one-sided: below the real figure means
    harder than real; above it is only consistent."""
    pytest.importorskip("faiss")
    from laionknn.synthetic.fidelity import fingerprint, table_rows

    n, nq = 2000, 30
    x = rng.standard_normal((n, 768)).astype(np.float16)
    q = rng.standard_normal((nq, 768)).astype(np.float32)

    def blocks(stop):
        for lo in range(0, stop, 512):
            yield lo, x[lo:min(stop, lo + 512)]

    # published at 4000 rows (> n): the proxy runs at 2000; figures of 1.0 and 0.0 bracket any measurement
    real = {"faiss_hnsw_r10": {4000: (1.0, 0.0)}, "pca32_r30": {2000: 0.5}}
    fp = fingerprint(blocks, n, q, scales=(1000, 2000), ivf=False, binwalk=False, real=real,
                     graph_proxy=("faiss_hnsw_r10",))
    (row,) = fp.proxy_rows()
    assert row["scale"] == 2000 and row["real_scale"] == 4000
    got = np.asarray(row["measured"])
    assert got.shape == (2,) and np.all((got >= 0) & (got <= 1))
    # efSearch 64 on 2000 rows visits a large part of the graph: most true neighbours are found
    assert got[1] >= 0.5 and got[1] >= got[0] - 0.05
    assert row["shortfall"] == pytest.approx(max(1.0 - got[0], 0.0 - got[1]))
    assert row["harder"] == (row["shortfall"] > 0.03)
    assert any("proxy at" in r[0] for r in table_rows(fp))
    # a figure measured at its own scale gets no proxy
    real2 = {"faiss_hnsw_r10": {2000: (0.5, 0.5)}}
    fp2 = fingerprint(blocks, n, q, scales=(1000, 2000), ivf=False, binwalk=False, real=real2,
                      graph_proxy=("faiss_hnsw_r10",))
    assert fp2.proxy_rows() == [] and "faiss_hnsw_r10" in fp2.figures
    with pytest.raises(Exception, match="graph proxy"):
        fingerprint(blocks, n, q, scales=(1000, 2000), ivf=False, binwalk=False, real=real, graph_proxy=("nope",))


def test_stats_takes_the_dataset_once_and_keeps_the_old_query_count_spelling(home, capsys):
    code, out, err = run(["stats"], capsys)
    assert code == 2 and "found none" in err and "Traceback" not in err
    code, out, err = run(["stats", "a.h5", "--database", "b.h5"], capsys)
    assert code == 2 and "give the dataset once" in err
    code, out, err = run(["stats", "a.h5", "--recall-queries", "0"], capsys)
    assert code == 2 and "--recall-queries is deprecated" in err and "--n-queries" in err
