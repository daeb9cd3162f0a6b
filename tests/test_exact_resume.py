"""Checkpoints: kill -9 mid-run and --resume gives a byte-identical gold file; mismatches are refused;
CLI errors exit with code 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from laionknn.cli.main import main
from laionknn.errors import CheckpointError
from laionknn.exact import knn
from laionknn.exact.gold import checkpoint_path
from laionknn.io import read_gold, write_vectors

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _files(tmp_path, n=3000, dim=32, nq=8, seed=20):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float16)
    Q = rng.standard_normal((nq, dim)).astype(np.float32)
    return write_vectors(tmp_path / "db.h5", X, "emb"), write_vectors(tmp_path / "q.h5", Q, "emb"), X, Q


def _cli(args, env_extra=None, **popen):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "laionknn", "--quiet", "gold", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_kill_and_resume_is_byte_identical(home, tmp_path):
    db, q, X, Q = _files(tmp_path)
    common = ["--database", str(db), "--queries", str(q), "--k", "20", "--normalize", "--block-rows", "100",
              "--checkpoint-every", "0"]
    ref = tmp_path / "ref.h5"
    p = _cli([*common, "--out", str(ref)])
    assert p.wait(timeout=120) == 0, p.stderr.read()

    out = tmp_path / "gold.h5"
    ck = checkpoint_path(out)
    p = _cli([*common, "--out", str(out)], {"LAIONKNN_EXACT_TEST_SLEEP": "0.25"})
    deadline = time.monotonic() + 120
    while not ck.exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert not out.exists()
    with np.load(ck) as z:
        next_row = json.loads(str(z["header"]))["next_row"]
    assert 0 < next_row < 3000  # killed mid-run

    p = _cli([*common, "--out", str(out), "--resume"])
    assert p.wait(timeout=120) == 0, p.stderr.read()
    assert out.read_bytes() == ref.read_bytes()
    assert not ck.exists()  # removed once the output is written
    gold = read_gold(out)
    assert gold.attrs["metric"] == "cosine" and gold.attrs["n_rescored"] >= 8 * 21


def test_gold_file_layout_and_tie_flags(home, tmp_path):
    db, q, X, Q = _files(tmp_path, n=500, nq=4)
    with h5py.File(db, "r+") as f:  # a database row duplicated right at the k boundary of query 0
        x = f["emb"][()]
        s = (x.astype(np.float64) @ Q[0].astype(np.float64))
        order = np.lexsort((np.arange(500), -s))
        f["emb"][int(order[10]) if order[10] > order[9] else int(order[9])] = x[min(order[9], order[10])]
    out = tmp_path / "g.h5"
    main(["--quiet", "gold", "--database", str(db), "--queries", str(q), "--k", "10", "--out", str(out)])
    with h5py.File(out, "r") as f:
        knns, dists, tie = f["knns"][()], f["dists"][()], f["tie_at_k"][()]
        assert knns.dtype == np.int32 and dists.dtype == np.float32 and knns.shape == (4, 10)
        assert knns.min() >= 1 and tie.dtype == np.uint8
        assert f.attrs["n_tie_at_k"] == tie.sum()
    xf = read_gold(out)
    assert tie[0] == 1
    x64 = x.astype(np.float64)
    x64[max(order[9], order[10])] = x64[min(order[9], order[10])]
    s = x64 @ Q[0].astype(np.float64)
    expect = np.lexsort((np.arange(500), 1 - s))[:10]
    np.testing.assert_array_equal(xf.ids[0], expect)
    np.testing.assert_allclose(xf.dists[0], (1 - s[expect]).astype(np.float32), rtol=1e-7, atol=1e-7)


def test_checkpoint_from_other_parameters_is_refused(home, tmp_path):
    rng = np.random.default_rng(21)
    X = rng.standard_normal((400, 16)).astype(np.float32)
    Q = rng.standard_normal((3, 16)).astype(np.float32)
    ck = tmp_path / "state.ckpt.npz"
    first = knn(X, Q, 7, "dot", block_rows=50, checkpoint=ck)
    assert ck.exists()
    again = knn(X, Q, 7, "dot", block_rows=64, checkpoint=ck, resume=True)  # finished state, other blocks
    np.testing.assert_array_equal(first.ids, again.ids)
    with pytest.raises(CheckpointError, match="k \\(checkpoint: 7, now: 8\\)"):
        knn(X, Q, 8, "dot", checkpoint=ck, resume=True)
    with pytest.raises(CheckpointError, match="metric"):
        knn(X, Q, 7, "l2", checkpoint=ck, resume=True)
    with pytest.raises(CheckpointError, match="queries"):
        knn(X, Q[:2], 7, "dot", checkpoint=ck, resume=True)
    # a damaged checkpoint no longer stops --resume: it is named, and the previous one (or a fresh
    # start) gives the same answer (tests/test_hardening_recovery.py covers this in detail)
    ck.write_bytes(b"not a checkpoint")
    assert np.array_equal(knn(X, Q, 7, "dot", checkpoint=ck, resume=True).ids, first.ids)


def _run_main(args):
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


def test_cli_bad_inputs_exit_2(home, tmp_path, capsys):
    db, q, X, Q = _files(tmp_path, n=60, dim=8, nq=2)
    base = ["--quiet", "gold", "--database", str(db), "--queries", str(q), "--out", str(tmp_path / "o.h5")]
    assert _run_main([*base, "--k", "61"]) == 2
    assert "larger than the database" in capsys.readouterr().err
    q4 = write_vectors(tmp_path / "q4.h5", Q[:, :4], "emb")
    assert _run_main(["--quiet", "gold", "--database", str(db), "--queries", str(q4), "--k", "5"]) == 2
    assert "dimension mismatch" in capsys.readouterr().err
    bad = X.copy()
    bad[42] = 0
    zdb = write_vectors(tmp_path / "zero.h5", bad, "emb")
    assert _run_main(["--quiet", "gold", "--database", str(zdb), "--queries", str(q), "--k", "5", "--normalize"]) == 2
    assert "row 42 has zero norm" in capsys.readouterr().err
    bad[42, 3] = np.nan
    ndb = write_vectors(tmp_path / "nan.h5", bad, "emb")
    assert _run_main(["--quiet", "gold", "--database", str(ndb), "--queries", str(q), "--k", "5"]) == 2
    assert "row 42 contains NaN" in capsys.readouterr().err
    edb = write_vectors(tmp_path / "empty.h5", X[:0], "emb")
    assert _run_main(["--quiet", "gold", "--database", str(edb), "--queries", str(q), "--k", "5"]) == 2
    assert "no rows" in capsys.readouterr().err
    assert _run_main(["--quiet", "gold", "--database", str(tmp_path / "missing.h5"), "--queries", str(q)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert _run_main([*base, "--k", "5", "--metric", "l2", "--normalize"]) == 2
    assert "--normalize" in capsys.readouterr().err


def test_cli_resolves_catalog_names(home, tmp_path):
    out = tmp_path / "named.h5"
    main(["--quiet", "gold", "--database", "synthetic-clip768v2-n=2K", "--queries", "synthetic-queries-20-clip768v2",
          "--k", "5", "--normalize", "--out", str(out)])
    from laionknn.catalog import local_path, resolve
    from laionknn.io import read_vectors

    X = read_vectors(local_path(resolve("synthetic-clip768v2-n=2K"))).astype(np.float64)
    Q = read_vectors(local_path(resolve("synthetic-queries-20-clip768v2"))).astype(np.float64)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    expect = np.stack([np.lexsort((np.arange(len(X)), 1 - (X * q).sum(axis=1)))[:5] for q in Q])
    np.testing.assert_array_equal(read_gold(out).ids, expect)
