"""`laionknn gold --dask` / `--scheduler` write the same bytes as the local engine; clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from laionknn.cli.main import main
from laionknn.io import write_vectors

distributed = pytest.importorskip("distributed")


def _files(tmp_path):
    rng = np.random.default_rng(31)
    X = rng.standard_normal((1500, 16)).astype(np.float16)
    X[[10, 900, 1499]] = X[400]  # duplicates across shards
    Q = rng.standard_normal((7, 16)).astype(np.float32)
    Q[2] = X[400]
    return write_vectors(tmp_path / "db.h5", X, "emb"), write_vectors(tmp_path / "q.h5", Q, "emb")


def _run(args):
    try:
        main(args)
    except SystemExit as e:
        return e.code
    return 0


def test_gold_dask_local_cluster_and_scheduler_bytes_equal_local(home, tmp_path):
    db, q = _files(tmp_path)
    base = ["--quiet", "gold", "--database", str(db), "--queries", str(q), "--k", "20", "--normalize"]
    local, viadask, viasched = tmp_path / "local.h5", tmp_path / "dask.h5", tmp_path / "sched.h5"
    assert _run([*base, "--out", str(local)]) in (0, None)
    assert _run([*base, "--out", str(viadask), "--dask", "--workers", "2", "--threads", "1", "--shards", "5",
                 "--split-every", "2"]) in (0, None)
    assert viadask.read_bytes() == local.read_bytes()
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                  scheduler_kwargs={"dashboard": False}) as cluster:
        assert _run([*base, "--out", str(viasched), "--scheduler", cluster.scheduler_address]) in (0, None)
    assert viasched.read_bytes() == local.read_bytes()


def test_gold_dask_errors(home, tmp_path, capsys, monkeypatch):
    db, q = _files(tmp_path)
    base = ["--quiet", "gold", "--database", str(db), "--queries", str(q), "--k", "5", "--dask"]
    assert _run([*base, "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert _run(base) == 2
    assert 'pip install "dask[distributed]"' in capsys.readouterr().err


def test_knn_dask_without_dask_says_how_to_install(home, tmp_path, monkeypatch):
    from laionknn.distributed import knn_dask
    from laionknn.errors import UsageError

    db, q = _files(tmp_path)
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(UsageError, match=r'pip install "dask\[distributed\]"'):
        knn_dask(db, np.zeros((1, 16), np.float32), 3, "dot")
