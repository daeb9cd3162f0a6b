"""Audit parts 4, 5 and 6: damaged caches and checkpoints recover; stale temporary files of dead
processes are removed (never those of live ones); `gold` checks its output before the work and keeps
its checkpoint when the final write fails."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hardeninghelpers import SRC, assert_clean_error, cli
from laionknn import workspace
from laionknn.errors import OutputError
from laionknn.exact import checkpoint as ckpt
from laionknn.exact import knn
from laionknn.exact.gold import checkpoint_path, gold_standard
from laionknn.fsutil import clean_stale_temps, temp_path
from laionknn.io import read_gold, write_vectors
from laionknn.types import Metric


# --- part 4: the index cache ---------------------------------------------------------------------
@pytest.fixture
def target():
    from laionknn.indexes.runner import SweepTarget

    x = np.random.default_rng(3).standard_normal((600, 16)).astype(np.float32)
    return SweepTarget(database=x, queries=x[:20], metric=Metric.L2, data="pca32v2", size="600", dataset="t")


def _backend():
    from laionknn.indexes.registry import is_available

    for name in ("hnswlib", "faiss-hnsw", "faiss-ivfflat"):
        if is_available(name):
            return name
    pytest.skip("no saving backend installed")


def _entry() -> Path:
    entries = [p for p in workspace.index_cache_dir().iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1, entries
    return entries[0]


@pytest.mark.parametrize("damage", ["truncate-index", "truncate-meta", "delete-index", "junk-meta"])
def test_damaged_index_cache_entry_is_detected_and_rebuilt(target, home, caplog, damage):
    from laionknn.indexes.runner import build_or_load

    backend = _backend()
    params = {"M": 8} if "hnsw" in backend else {"nlist": 4}
    first, _, cached, _ = build_or_load(backend, target, params, threads=1)
    assert not cached
    entry = _entry()
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["files"] and all(v > 0 for v in meta["files"].values())  # sizes recorded at save
    biggest = max((entry / "index").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else -1)
    if damage == "truncate-index":
        biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size * 2 // 3])
    elif damage == "delete-index":
        biggest.unlink()
    elif damage == "truncate-meta":
        (entry / "meta.json").write_text((entry / "meta.json").read_text()[:20])
    else:
        (entry / "meta.json").write_bytes(b"\xff\x00junk")
    caplog.clear()
    again, _, cached, _ = build_or_load(backend, target, params, threads=1)
    assert not cached  # rebuilt, not loaded from the damaged entry
    assert any(str(entry) in r.getMessage() and "building again" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(again.search(target.queries, 5).ids.shape, (20, 5))
    third, _, cached, _ = build_or_load(backend, target, params, threads=1)
    assert cached  # the rebuilt entry is good


def test_index_cache_entry_of_the_old_format_still_loads(target, home):
    from laionknn.indexes.runner import build_or_load

    backend = _backend()
    params = {"M": 8} if "hnsw" in backend else {"nlist": 4}
    build_or_load(backend, target, params, threads=1)
    meta_path = _entry() / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["files"]
    meta_path.write_text(json.dumps(meta))
    assert build_or_load(backend, target, params, threads=1)[2]


def test_save_that_fills_the_disk_is_not_cached(target, home, monkeypatch):
    """ENOSPC injection: hnswlib truncates without raising, so the runner must look at the disk."""
    from laionknn.indexes import cachecheck
    from laionknn.indexes.runner import build_or_load

    backend = _backend()
    params = {"M": 8} if "hnsw" in backend else {"nlist": 4}
    monkeypatch.setattr(cachecheck, "MIN_FREE_AFTER_SAVE", 1 << 62)  # every disk looks full after the save
    index, _, cached, _ = build_or_load(backend, target, params, threads=1)
    assert not cached and index.search(target.queries, 5).ids.shape == (20, 5)
    assert list(workspace.index_cache_dir().iterdir()) == []  # nothing cached, no temp folder left


# --- part 4: checkpoints ---------------------------------------------------------------------------
def _data(n=900, dim=16, nq=5, seed=9):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32), rng.standard_normal((nq, dim)).astype(np.float32)


def test_truncated_checkpoint_resumes_from_the_previous_one(tmp_path, caplog):
    X, Q = _data()
    ref = knn(X, Q, 7, "dot")
    ck = tmp_path / "c.ckpt.npz"
    knn(X, Q, 7, "dot", block_rows=100, checkpoint=ck)
    assert ck.exists() and ckpt.previous_path(ck).exists()
    with np.load(ckpt.previous_path(ck)) as z:
        prev_row = json.loads(str(z["header"]))["next_row"]
    assert prev_row == 800  # the one before the last
    ck.write_bytes(ck.read_bytes()[:500])  # truncated
    caplog.set_level("INFO")
    caplog.clear()
    res = knn(X, Q, 7, "dot", block_rows=100, checkpoint=ck, resume=True)
    np.testing.assert_array_equal(res.ids, ref.ids)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert str(ck) in messages and "trying the checkpoint before it" in messages
    assert "at row 800 of 900" in messages  # resumed from the previous checkpoint, not from zero


def test_both_checkpoints_damaged_starts_over(tmp_path, caplog):
    X, Q = _data()
    ck = tmp_path / "c.ckpt.npz"
    knn(X, Q, 7, "dot", block_rows=100, checkpoint=ck)
    ck.write_bytes(b"PK\x03\x04 truncated")
    ckpt.previous_path(ck).write_bytes(b"")
    caplog.clear()
    res = knn(X, Q, 7, "dot", block_rows=100, checkpoint=ck, resume=True)
    np.testing.assert_array_equal(res.ids, knn(X, Q, 7, "dot").ids)
    assert "starting over" in " ".join(r.getMessage() for r in caplog.records)


def _gold_cli(args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "laionknn", "--quiet", "gold", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_then_truncated_checkpoint_then_resume_is_byte_identical(tmp_path, home):
    """A real kill by pid mid-run, the newest checkpoint cut short, --resume: same bytes as a clean run."""
    X, Q = _data(n=2000, dim=32, nq=6)
    db, q = write_vectors(tmp_path / "db.h5", X.astype(np.float16), "emb"), write_vectors(tmp_path / "q.h5", Q, "emb")
    common = ["--database", db, "--queries", q, "--k", "10", "--block-rows", "100", "--checkpoint-every", "0"]
    ref = tmp_path / "ref.h5"
    p = _gold_cli([*common, "--out", ref])
    assert p.wait(timeout=120) == 0, p.stderr.read()
    out = tmp_path / "gold.h5"
    ck = checkpoint_path(out)
    p = _gold_cli([*common, "--out", out], {"LAIONKNN_EXACT_TEST_SLEEP": "0.2"})
    deadline = time.monotonic() + 60
    while not ckpt.previous_path(ck).exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL and not out.exists()
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    p = _gold_cli([*common, "--out", out, "--resume"])
    assert p.wait(timeout=120) == 0, p.stderr.read()
    assert out.read_bytes() == ref.read_bytes()
    assert not ckpt.exists(ck)


# --- part 5: stale temporary files -----------------------------------------------------------------
def _age(path: Path, seconds: float = 3600) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_temp_file_of_a_killed_writer_is_removed_by_the_next_run(tmp_path):
    """A real writer killed by pid leaves .tmp-<pid>-*; the next writer into that folder removes it
    (once untouched for STALE_AFTER seconds, here aged by hand), and keeps a live process's file."""
    code = ("import sys, time, numpy as np; from laionknn.io import VectorWriter\n"
            "w = VectorWriter(sys.argv[1], 'emb', 8, np.float32)\n"
            "w.append(np.zeros((10, 8), np.float32)); print('ready', flush=True); time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    writer = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "a.h5")], env=env, stdout=subprocess.PIPE,
                              text=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert writer.stdout.readline().strip() == "ready"
        left = tmp_path / f".tmp-{writer.pid}-a.h5"
        assert left.exists()
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        assert left.exists()  # the kill left it
        live_tmp = tmp_path / f".tmp-{live.pid}-b.h5"
        live_tmp.write_bytes(b"in use")
        stale_dir = tmp_path / ".tmp-999999999-hnswlib-abc"  # a folder (index cache entry) of a gone pid
        stale_dir.mkdir()
        (stale_dir / "index").write_bytes(b"x")
        fresh = tmp_path / ".tmp-999999998-c.h5"  # gone pid, but touched just now
        fresh.write_bytes(b"x")
        for p in (left, live_tmp, stale_dir):
            _age(p)
        write_vectors(tmp_path / "next.h5", np.ones((3, 8), np.float32), "emb")
        assert not left.exists() and not stale_dir.exists()
        assert live_tmp.exists() and fresh.exists()  # a live process's file, and a recent one, are kept
        assert (tmp_path / "next.h5").exists()
    finally:
        live.kill()
        live.wait()
        if writer.poll() is None:
            writer.kill()


def test_temp_path_names_and_cleaning(tmp_path):
    assert temp_path(tmp_path / "x.h5") == tmp_path / f".tmp-{os.getpid()}-x.h5"
    mine = tmp_path / f".tmp-{os.getpid()}-y.h5"
    mine.write_text("mine")
    _age(mine)
    other = tmp_path / "data.tmp-1-z"  # not a temporary name of ours
    other.write_text("z")
    _age(other)
    assert clean_stale_temps(tmp_path) == []
    assert mine.exists() and other.exists()


# --- part 6: gold checks its output first, keeps its checkpoint --------------------------------------
def test_gold_into_an_unwritable_folder_fails_before_the_work(tmp_path, home, capsys):
    X, Q = _data()
    db, q = write_vectors(tmp_path / "db.h5", X, "emb"), write_vectors(tmp_path / "q.h5", Q, "emb")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "sub" / "gold.h5"
    t0 = time.perf_counter()
    code, _, err = cli(["--quiet", "gold", "--database", db, "--queries", q, "--k", "5", "--out", out], capsys)
    assert_clean_error(code, err, "cannot write into", str(blocker))
    assert not ckpt.exists(checkpoint_path(out))  # nothing computed, nothing checkpointed


def test_gold_final_write_failure_keeps_the_checkpoint_and_resume_writes_it(tmp_path, home, monkeypatch, caplog):
    """ENOSPC injected into the final write: the error says where the state is kept; --resume then
    writes the file without another pass over the database."""
    from laionknn.exact import gold as gold_module

    X, Q = _data(n=1200)
    db, q = write_vectors(tmp_path / "db.h5", X, "emb"), write_vectors(tmp_path / "q.h5", Q, "emb")
    ref = gold_standard(db, q, 10, out=tmp_path / "ref.h5", block_rows=100)
    out = tmp_path / "gold.h5"
    real = gold_module.write_gold_standard

    def full_disk(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(out.with_name(f".tmp-{os.getpid()}-gold.h5")))

    monkeypatch.setattr(gold_module, "write_gold_standard", full_disk)
    with pytest.raises(OutputError, match=r"disk full writing .*gold\.h5.*kept in .*--resume"):
        gold_standard(db, q, 10, out=out, block_rows=100, checkpoint_every=3600)
    ck = checkpoint_path(out)
    with np.load(ck) as z:
        assert json.loads(str(z["header"]))["next_row"] == 1200  # the whole pass is saved
    monkeypatch.setattr(gold_module, "write_gold_standard", real)
    caplog.set_level("INFO")
    caplog.clear()
    gold_standard(db, q, 10, out=out, block_rows=100, resume=True)
    assert out.read_bytes() == Path(ref).read_bytes()
    assert any("at row 1200 of 1200" in r.getMessage() for r in caplog.records)
    assert not ckpt.exists(ck)


def test_scratch_folders_are_temp_named_and_cleaned(tmp_path, home):
    """Scratch folders of the new writers (an index travelling between Dask workers, SVS's .fvecs copy,
    NGT's build folder, the runner's size measurement) are .tmp-<pid>-* folders of the index cache: gone
    after use, and those a killed process left are removed by the next writer there."""
    import pickle

    from laionknn import workspace
    from laionknn.distributed.search import ShardIndex, ShardSource
    from laionknn.fsutil import temp_dir
    from laionknn.indexes.registry import create, is_available

    cache = workspace.index_cache_dir()
    stale = cache / ".tmp-999999999-shard-transfer-0123456789ab"
    stale.mkdir()
    (stale / "index").write_bytes(b"x")
    _age(stale)
    with temp_dir(cache, "svs-build") as d:
        assert d.parent == cache and d.name.startswith(f".tmp-{os.getpid()}-svs-build-") and d.is_dir()
        assert not stale.exists()  # the next writer cleaned it
    assert not d.exists()
    backend = "hnswlib" if is_available("hnswlib") else None
    if backend is None:
        pytest.skip("hnswlib not installed")
    X, _ = _data()
    path = write_vectors(tmp_path / "db.h5", X, "emb")
    index = create(backend, "cosine", threads=1)
    source = ShardSource(str(path), "emb", 0, len(X), X.shape[1], X.dtype)
    index.build(source)
    holder = ShardIndex(0, backend, index, source, buildtime=0.0, cached=False, index_bytes=0)
    back = pickle.loads(pickle.dumps(holder))
    assert back.index.search(X[:3].astype(np.float32), 1).ids[:, 0].tolist() == [0, 1, 2]
    assert [p.name for p in cache.iterdir() if p.name.startswith(".tmp-")] == []
