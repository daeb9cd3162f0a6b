"""Audit part 9: one line, always, with advice that is true: file-system errors name the final file
(not the temporary one) and say what to do; a second concurrent `prepare subsets` is told to wait,
not to pass --restart (which would wreck the running job); a junk file under a catalog file's final
name is told to be deleted first, since fetch keeps a present file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardeninghelpers import SRC, Server, assert_clean_error, cli, md5, write_catalog
from laionknn.errors import LockedError, one_line
from laionknn.fsutil import exclusive_lock, explain_os_error, final_name
from laionknn.io import write_vectors


def test_os_errors_name_the_final_file_and_say_what_to_do(tmp_path):
    tmp = tmp_path / f".tmp-{os.getpid()}-gold.h5"
    line = explain_os_error(OSError(errno.ENOSPC, "No space left on device", str(tmp)))
    assert f"disk full writing {tmp_path / 'gold.h5'}" in line and "free in" in line and "free some space" in line
    assert ".tmp-" not in line
    assert "make the folder writable" in explain_os_error(PermissionError(errno.EACCES, "Permission denied", str(tmp)))
    assert "read-only file system" in explain_os_error(OSError(errno.EROFS, "Read-only file system", str(tmp)))
    h5 = OSError("Can't write data (file write failed: time = Wed\n, filename = 'x', errno = 28, error message = "
                 "'No space left on device')")
    assert explain_os_error(h5).startswith("disk full")
    assert final_name(tmp_path / ".partial-laion2B-en-clip768v2-n=10M.h5").name == "laion2B-en-clip768v2-n=10M.h5"
    assert one_line("a\n  b\n\nc") == "a b c"


def test_cli_prints_a_file_system_error_in_one_line(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("x")
    monkeypatch.setenv("LAIONKNN_HOME", str(blocker))
    code, _, err = cli(["--quiet", "synth", "--size", "1K", "--queries", "10"], capsys)
    assert_clean_error(code, err, str(blocker), "is a file, not a folder")


def test_library_messages_with_newlines_are_printed_on_one_line(capsys, monkeypatch):
    from laionknn import synthetic
    from laionknn.errors import FormatError

    def broken(*a, **kw):
        raise FormatError("x.h5: not readable (file write failed: time = Wed\n, filename = 'x.h5')")

    monkeypatch.setattr(synthetic, "materialize", broken)
    code, _, err = cli(["--quiet", "synth", "--size", "1K", "--queries", "10"], capsys)
    assert_clean_error(code, err, "time = Wed , filename")


def test_second_concurrent_prepare_subsets_is_told_to_wait(tmp_path, capsys):
    from test_prepare_subsets import make_parts

    from laionknn.prepare import prepare_subsets
    from laionknn.prepare.subsets import LOCK_NAME

    parts = tmp_path / "parts"
    make_parts(parts, [200, 200], seed=2)
    out = tmp_path / "out"
    out.mkdir()
    work_file = out / ".laionknn-prepare" / "state.json"
    work_file.parent.mkdir()
    work_file.write_text("{}")  # stands for the running job's checkpoint
    with exclusive_lock(out / LOCK_NAME, "held by the test"):  # the 'running job'
        with pytest.raises(LockedError, match=rf"by pid {os.getpid()}.*wait for it.*do not pass --restart"):
            prepare_subsets(parts, out, "a=1,b=2", restart=True)
        code, _, err = cli(["prepare", "subsets", "--parts", parts, "--out", out, "--subsets", "a=1,b=2", "--restart"],
                           capsys)
        assert_clean_error(code, err, "another `laionknn prepare subsets` is writing", "do not pass --restart")
    assert work_file.read_text() == "{}"  # --restart did not wreck the running job's checkpoint
    assert not (out / LOCK_NAME).exists()


def test_lock_held_by_another_process_and_released_when_it_is_killed(tmp_path):
    lock = tmp_path / "x.lock"
    code = ("import sys, time; from laionknn.fsutil import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1], 'busy'):\n    print('held', flush=True); time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-c", code, str(lock)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"by pid {p.pid}"):
            with exclusive_lock(lock, "busy{holder}"):
                pass
    finally:
        p.kill()
        p.wait()
    with exclusive_lock(lock, "busy"):  # a killed holder never blocks the next run
        pass


def test_junk_under_the_final_name_is_told_to_be_deleted_first(tmp_path, home, capsys):
    x = np.random.default_rng(0).standard_normal((50, 96)).astype(np.float32)
    data = write_vectors(tmp_path / "src.h5", x, "pca96").read_bytes()
    with Server() as srv:
        srv.routes["/f.h5"] = ("file", data)
        cat = write_catalog(tmp_path / "c.tsv", [{"file": "f.h5", "subset": "50", "md5": md5(data),
                                                  "listed_size": str(len(data)), "urls": srv.base + "/f.h5"}])
        junk = home / "data" / "f.h5"
        junk.parent.mkdir(parents=True, exist_ok=True)
        junk.write_bytes(b"<html>not found</html>")
        code, _, err = cli(["--quiet", "--catalog", cat, "datasets", "fetch", "f"], capsys)
        assert_clean_error(code, err, str(junk), "delete it", "fetch")
        junk.unlink()  # what the message says
        code, out, err = cli(["--quiet", "--catalog", cat, "datasets", "fetch", "f"], capsys)
        assert code == 0, err
    assert junk.read_bytes() == data
