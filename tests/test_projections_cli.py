"""CLI: project pca|binwalk|sketch, baselines, and exit code 2 on bad input."""

import csv

import numpy as np
import pytest

from laionknn.cli.main import main
from laionknn.io import read_vectors, write_vectors
from laionknn.projections import binwalk


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(5)
    refs = binwalk.default_model().refs
    db = refs[rng.integers(0, 1024, 900)] + rng.standard_normal((900, 768)).astype(np.float32) * 0.03
    q = refs[rng.integers(0, 1024, 15)] + rng.standard_normal((15, 768)).astype(np.float32) * 0.03
    return (write_vectors(tmp_path / "d-clip768v2-n=900.h5", db.astype(np.float16), "emb"),
            write_vectors(tmp_path / "q-clip768v2.h5", q.astype(np.float32), "emb"))


def _run(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


def test_project_commands(files, tmp_path):
    db, q = files
    out = tmp_path / "out"
    main(["-q", "project", "pca", "--dims", "32", "--fit-on", str(db), "--apply", str(db), "--apply", str(q),
          "--out", str(out)])
    assert read_vectors(out / "d-pca32v2-n=900.h5").shape == (900, 32)
    assert read_vectors(out / "q-pca32v2.h5").shape == (15, 32)
    main(["-q", "project", "binwalk", "--apply", str(q), "--out", str(out)])
    assert np.array_equal(read_vectors(out / "q-hammingv2.h5"), binwalk.encode(read_vectors(q)))
    main(["-q", "project", "sketch", "--bits", "128", "--method", "itq", "--fit-on", str(db), "--apply", str(q),
          "--task-b", str(db), str(q), "--out", str(out)])
    assert read_vectors(out / "q-clip768v2-sketch-itq-128.h5", expect_dim=2).dtype == np.uint64
    assert (out / "taskB-itq-128-d-clip768v2-n=900.h5").exists()


def test_bad_input_exits_2(files, tmp_path, capsys):
    db, q = files
    assert _run(["project", "sketch", "--bits", "100", "--fit-on", str(db)]) == 2
    assert "multiple of 64" in capsys.readouterr().err
    small = write_vectors(tmp_path / "s.h5", np.ones((10, 768), np.float32), "emb")
    assert _run(["project", "pca", "--dims", "32", "--fit-on", str(small)]) == 2
    assert "at least as many rows" in capsys.readouterr().err
    main(["-q", "project", "pca", "--dims", "8", "--fit-on", str(db), "--model", str(tmp_path / "m.npz")])
    other = write_vectors(tmp_path / "o.h5", np.ones((5, 96), np.float32), "pca96")
    assert _run(["project", "pca", "--dims", "8", "--model", str(tmp_path / "m.npz"), "--apply", str(other)]) == 2
    assert "768-dimensional" in capsys.readouterr().err


def test_baselines(files, tmp_path, capsys):
    db, q = files
    out = tmp_path / "bl"
    main(["baselines", "--database", str(db), "--queries", str(q), "--bits", "64", "--methods", "itq",
          "--srp", "--sketch-fit-rows", "900", "--out", str(out)])
    text = capsys.readouterr().out
    assert "recall@30" in text and "hammingv2" in text
    rows = list(csv.DictReader(open(out / "baselines-d-clip768v2-n=900.csv")))
    assert list(rows[0]) == ["data", "size", "algo", "buildtime", "querytime", "params", "recall", "k", "qps",
                             "recall_tie_aware", "file"]
    assert {r["data"] for r in rows} == {"pca32v2", "pca96v2", "hammingv2", "sketch-srp-64", "sketch-itq-64"}
    assert {r["k"] for r in rows} == {"10", "30"}
    assert all(0 <= float(r["recall"]) <= float(r["recall_tie_aware"]) <= 1 for r in rows)
    assert _run(["baselines", "--database", str(db), "--queries", str(q), "--bits", "96"]) == 2


def test_baselines_record_the_rows_really_fitted(files, tmp_path, capsys):
    """Asked for 100,000 fit rows on a 900-row database, every label and saved model says 900."""
    from laionknn.projections.sketches import SketchModel

    db, q = files
    out = tmp_path / "bl"
    main(["-q", "baselines", "--database", str(db), "--queries", str(q), "--bits", "64", "--methods", "itq",
          "--sketch-fit-rows", "100000", "--out", str(out)])
    rows = list(csv.DictReader(open(out / "baselines-d-clip768v2-n=900.csv")))
    fitted = [r["params"] for r in rows if r["data"] in ("pca32v2", "pca96v2", "sketch-itq-64")]
    assert fitted and all("fit_rows=900" in p and "100000" not in p for p in fitted)
    model = SketchModel.load(next(out.glob("sketch-itq-64-model-*.npz")))
    assert model.meta["n_fit"] == 900
