"""The one downloader against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from laionknn.catalog import download as dl
from laionknn.catalog.download import RetryPolicy, mirror_url
from laionknn.catalog.ensure import ensure, verify
from laionknn.catalog.manifest import COLUMNS, resolve
from laionknn.errors import ChecksumError, DownloadError, FormatError
from laionknn.io import write_vectors

FAST = RetryPolicy(retries=3, backoff=0.001, max_backoff=0.01, timeout=5)


class FaultServer:
    """Serves ``files`` (path -> bytes) with Range support; ``faults[path]`` is a list of faults
    consumed one per request: 'drop' (half the body, then close), '500', '404', 'norange' (answer
    200 with the whole body to a ranged request), 'wrong' (same length, other bytes)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                fault = server.faults.get(self.path, [])
                fault = fault.pop(0) if fault else None
                if fault in ("500", "404") or self.path not in server.files:
                    self.send_error(int(fault or 404))
                    return
                body = server.files[self.path]
                if fault == "wrong":
                    body = bytes(255 - b for b in body)
                if fault == "garbage":  # not HTTP at all
                    self.wfile.write(b"SSH-2.0-nonsense\r\n\r\n")
                    self.close_connection = True
                    return
                start = 0
                if rng and fault != "norange":
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                rest = memoryview(body)[start:]  # no copy: the memory test traces this thread too
                if fault == "drop":
                    self.wfile.write(rest[: len(rest) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(rest)
                except (BrokenPipeError, ConnectionResetError):  # the client refused the file early
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def ranged(self, path: str) -> list[str | None]:
        return [r for p, r in self.requests if p == path]


@pytest.fixture
def server():
    s = FaultServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(dl, "CHUNK", 16 * 1024)


def h5_bytes(tmp_path: Path, rows: int = 1000, seed: int = 0) -> bytes:
    """A real official-layout pca96 file (float32 (rows, 96)) as bytes (~ rows * 384 bytes)."""
    x = np.random.default_rng(seed).standard_normal((rows, 96)).astype(np.float32)
    p = write_vectors(tmp_path / f"src-{rows}-{seed}.h5", x, "pca96")
    return p.read_bytes()


def write_catalog(path: Path, rows: list[dict]) -> Path:
    lines = ["\t".join(COLUMNS)]
    for r in rows:
        base = {"file": "", "role": "database", "family": "pca96v2", "subset": "1000", "h5_keys": "pca96",
                "dtype_shape_as_h5py_sees_it": "float32 (n,96)", "md5": "", "listed_size": "",
                "listed_in": "test", "urls": ""}
        base.update(r)
        lines.append("\t".join(base[c] for c in COLUMNS))
    path.write_text("\n".join(lines) + "\n")
    return path


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def published(tmp_path, server):
    """One file served at /d/test-pca96-n=1000.h5 and a user catalog entry for it (exact size)."""
    data = h5_bytes(tmp_path)
    server.files["/d/test-pca96-n=1000.h5"] = data
    cat = write_catalog(tmp_path / "cat.tsv", [{"file": "test-pca96-n=1000.h5", "md5": md5(data),
                                                "listed_size": str(len(data)),
                                                "urls": server.base + "/d/test-pca96-n=1000.h5"}])
    return data, resolve("test-pca96-n=1000", [str(cat)])


def test_plain_fetch_installs_verified_file(published, server, home):
    data, rec = published
    path = ensure(rec, policy=FAST, quiet=True)
    assert path == home / "data" / "test-pca96-n=1000.h5"
    assert path.read_bytes() == data
    assert not path.with_name(path.name + ".part").exists()
    assert verify(rec).status == "ok"
    # present now: checked cheaply, not downloaded again
    assert ensure(rec, policy=FAST, quiet=True) == path
    assert len(server.requests) == 1


def test_dropped_connection_resumes_within_the_run(published, server):
    data, rec = published
    server.faults["/d/test-pca96-n=1000.h5"] = ["drop"]
    path = ensure(rec, policy=FAST, quiet=True)
    assert md5(path.read_bytes()) == md5(data)
    ranges = server.ranged("/d/test-pca96-n=1000.h5")
    assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 2}-"


def test_dropped_connection_resumes_on_rerun_rederiving_md5(published, server, home):
    data, rec = published
    server.faults["/d/test-pca96-n=1000.h5"] = ["drop", "drop"]
    with pytest.raises(DownloadError, match="is kept and the next fetch resumes it"):
        ensure(rec, policy=RetryPolicy(retries=0, backoff=0), quiet=True)
    part = home / "data" / "test-pca96-n=1000.h5.part"
    assert part.read_bytes() == data[: len(data) // 2]
    assert not (home / "data" / "test-pca96-n=1000.h5").exists()
    assert verify(rec).status == "missing" and "resumable" in verify(rec).detail
    # second run, second drop, then success: two resumed requests, right md5 in the end
    path = ensure(rec, policy=FAST, quiet=True)
    assert path.read_bytes() == data
    ranges = server.ranged("/d/test-pca96-n=1000.h5")
    half = len(data) // 2
    assert ranges == [None, f"bytes={half}-", f"bytes={half + (len(data) - half) // 2}-"]


def test_500_then_success(published, server):
    data, rec = published
    server.faults["/d/test-pca96-n=1000.h5"] = ["500", "500"]
    path = ensure(rec, policy=FAST, quiet=True)
    assert path.read_bytes() == data
    assert len(server.ranged("/d/test-pca96-n=1000.h5")) == 3


def test_500_forever_gives_up_after_retries(published, server):
    _, rec = published
    server.faults["/d/test-pca96-n=1000.h5"] = ["500"] * 10
    with pytest.raises(DownloadError, match=r"HTTP 500.*gave up after 3 attempts"):
        ensure(rec, policy=RetryPolicy(retries=2, backoff=0.001), quiet=True)
    assert len(server.ranged("/d/test-pca96-n=1000.h5")) == 3


def test_server_ignoring_range_restarts_from_zero(published, server):
    data, rec = published
    server.faults["/d/test-pca96-n=1000.h5"] = ["drop", "norange"]
    path = ensure(rec, policy=FAST, quiet=True)
    assert path.read_bytes() == data  # not the first half twice
    assert server.ranged("/d/test-pca96-n=1000.h5")[1] == f"bytes={len(data) // 2}-"


def test_wrong_content_is_refused_and_not_left_looking_complete(published, server, home):
    data, rec = published
    server.faults["/d/test-pca96-n=1000.h5"] = ["wrong"]
    with pytest.raises(ChecksumError) as err:
        ensure(rec, policy=FAST, quiet=True)
    msg = str(err.value)
    assert f"expected {md5(data)}" in msg
    assert f"found {md5(bytes(255 - b for b in data))}" in msg
    assert ".bad" in msg
    final = home / "data" / "test-pca96-n=1000.h5"
    assert not final.exists() and not final.with_name(final.name + ".part").exists()
    assert final.with_name(final.name + ".bad").exists()
    # a fresh attempt downloads from zero and cleans the .bad up
    path = ensure(rec, policy=FAST, quiet=True)
    assert path.read_bytes() == data and not final.with_name(final.name + ".bad").exists()
    assert server.ranged("/d/test-pca96-n=1000.h5")[-1] is None


def test_404_on_first_url_falls_back_to_second(tmp_path, server):
    data = h5_bytes(tmp_path)
    server.files["/good/f-pca96.h5"] = data
    cat = write_catalog(tmp_path / "c.tsv", [{"file": "f-pca96.h5", "md5": md5(data), "listed_size": "1M",
                                              "urls": f"{server.base}/gone/f-pca96.h5;{server.base}/good/f-pca96.h5"}])
    rec = resolve("f-pca96", [str(cat)])
    path = ensure(rec, policy=FAST, quiet=True)
    assert path.read_bytes() == data
    assert [p for p, _ in server.requests] == ["/gone/f-pca96.h5", "/good/f-pca96.h5"]  # 404 is not retried


@pytest.mark.parametrize("listed", ["exact", "approx"])
def test_content_length_disagreeing_with_catalog(tmp_path, server, listed):
    data = h5_bytes(tmp_path)
    server.files["/d/f.h5"] = data
    size = str(len(data) + 1) if listed == "exact" else "3M"
    cat = write_catalog(tmp_path / "c.tsv", [{"file": "f.h5", "md5": md5(data), "listed_size": size,
                                              "urls": f"{server.base}/d/f.h5"}])
    rec = resolve("f", [str(cat)])
    with pytest.raises(DownloadError, match=rf"server announces .*\({len(data)} bytes\), the catalog lists"):
        ensure(rec, policy=FAST, quiet=True)
    assert len(server.requests) == 1  # not retried: the server is consistent, the file is the wrong one
    assert not list((Path(os.environ["LAIONKNN_HOME"]) / "data").glob("f.h5*"))


def test_rounded_listed_size_is_approximate(tmp_path, server):
    data = h5_bytes(tmp_path)  # ~ 1.0 MiB (one 1 MiB HDF5 chunk)
    server.files["/d/f.h5"] = data
    cat = write_catalog(tmp_path / "c.tsv", [{"file": "f.h5", "md5": md5(data), "listed_size": "1M",
                                              "urls": f"{server.base}/d/f.h5"}])
    assert ensure(resolve("f", [str(cat)]), policy=FAST, quiet=True).read_bytes() == data


def test_mirror_replaces_scheme_host_and_directory(tmp_path, server, monkeypatch):
    assert mirror_url("https://a.org/x/y/f=1.h5", "http://m:8/lai/") == "http://m:8/lai/f=1.h5"
    assert mirror_url("https://a.org/f.h5", "/srv/m") == "file:///srv/m/f.h5"
    data = h5_bytes(tmp_path)
    server.files["/mirror/f.h5"] = data
    cat = write_catalog(tmp_path / "c.tsv", [{"file": "f.h5", "md5": md5(data),
                                              "urls": "http://unreachable.invalid/orig/f.h5"}])
    rec = resolve("f", [str(cat)])
    assert ensure(rec, mirror=server.base + "/mirror", policy=FAST, quiet=True, dest=tmp_path / "a").read_bytes() == data
    monkeypatch.setenv("LAIONKNN_MIRROR", server.base + "/mirror/")
    assert ensure(rec, policy=FAST, quiet=True, dest=tmp_path / "b").read_bytes() == data
    # a local folder works as a mirror too (file:// URLs)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "f.h5").write_bytes(data)
    assert ensure(rec, mirror=str(tmp_path / "local"), policy=FAST, quiet=True,
                  dest=tmp_path / "c").read_bytes() == data


def test_complete_part_is_promoted_after_416(published, server, home):
    data, rec = published
    part = home / "data" / "test-pca96-n=1000.h5.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)  # a previous run got every byte but died before the rename
    assert ensure(rec, policy=FAST, quiet=True).read_bytes() == data
    assert server.ranged("/d/test-pca96-n=1000.h5") == [f"bytes={len(data)}-"]


def test_downloaded_file_with_wrong_layout_is_not_installed(tmp_path, server, home):
    data = h5_bytes(tmp_path)  # pca96 float32, but the entry promises 32 columns
    server.files["/d/f.h5"] = data
    cat = write_catalog(tmp_path / "c.tsv", [{"file": "f.h5", "md5": md5(data), "family": "pca32v2",
                                              "h5_keys": "pca32", "dtype_shape_as_h5py_sees_it": "float32 (n,32)",
                                              "urls": f"{server.base}/d/f.h5"}])
    with pytest.raises(FormatError, match=r"missing dataset\(s\) pca32 \(found: pca96\).*moved to .*f\.h5\.bad"):
        ensure(resolve("f", [str(cat)]), policy=FAST, quiet=True)
    assert not (home / "data" / "f.h5").exists()


def test_verify_reports_ok_mismatch_missing(published, home):
    data, rec = published
    assert verify(rec).status == "missing"
    ensure(rec, policy=FAST, quiet=True)
    assert verify(rec).status == "ok"
    path = home / "data" / "test-pca96-n=1000.h5"
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    path.write_bytes(bytes(flipped))
    res = verify(rec)
    assert res.status == "mismatch"
    assert res.md5 == md5(bytes(flipped)) and md5(data) in res.detail


def test_md5_of_file_is_chunked(tmp_path):
    data = os.urandom(100_001)
    (tmp_path / "x").write_bytes(data)
    assert dl.md5_of_file(tmp_path / "x", chunk=4096) == md5(data)


def test_synthetic_records_are_materialised_not_downloaded(monkeypatch, tmp_path):
    import types

    calls = []

    def materialize(record):
        calls.append(record.name)
        p = tmp_path / record.filename
        write_vectors(p, np.ones((3, 768), np.float16), "emb")
        return p

    monkeypatch.setitem(sys.modules, "laionknn.synthetic", types.SimpleNamespace(materialize=materialize))
    import laionknn

    monkeypatch.setattr(laionknn, "synthetic", sys.modules["laionknn.synthetic"], raising=False)
    rec = resolve("synthetic-clip768v2-n=100K-seed=3")
    assert ensure(rec) == tmp_path / rec.filename
    assert calls == ["synthetic-clip768v2-n=100K-seed=3"]


def test_record_without_url_and_full_disk(tmp_path, server, monkeypatch):
    with pytest.raises(DownloadError, match=r"laion2B-en-clip768v2-n=3M.h5: the catalog gives no URL"):
        ensure(resolve("laion2B-en-clip768v2-n=3M"), quiet=True)
    data = h5_bytes(tmp_path)
    server.files["/d/f.h5"] = data
    cat = write_catalog(tmp_path / "c.tsv", [{"file": "f.h5", "md5": md5(data), "listed_size": "15GB",
                                              "urls": f"{server.base}/d/f.h5"}])
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100 * 2**30, 90 * 2**30, 10 * 2**30))
    with pytest.raises(DownloadError, match=r"f.h5: needs about .* more on .*, only 10.0 GiB .* free"):
        ensure(resolve("f", [str(cat)]), quiet=True)
    assert server.requests == []


def test_concurrent_fetch_of_one_file_is_refused(published, home):
    import fcntl

    _, rec = published
    (home / "data").mkdir(exist_ok=True)
    with open(home / "data" / "test-pca96-n=1000.h5.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(DownloadError, match="another process is downloading it now"):
            ensure(rec, policy=FAST, quiet=True)
    assert ensure(rec, policy=FAST, quiet=True).exists()


def test_memory_stays_constant_for_a_large_file(tmp_path, server, monkeypatch):
    import tracemalloc

    data = np.random.default_rng(1).integers(0, 256, 24 * 2**20, dtype=np.uint8).tobytes()
    server.files["/d/big.bin"] = data
    cat = write_catalog(tmp_path / "c.tsv", [{"file": "big.bin", "md5": md5(data), "listed_size": "24M",
                                              "urls": f"{server.base}/d/big.bin"}])
    rec = resolve("big.bin", [str(cat)])  # not .h5: no layout check, only size and md5
    server.faults["/d/big.bin"] = ["drop"]  # the resume re-derives the md5 of 12 MiB from disk
    tracemalloc.start()
    try:
        path = ensure(rec, policy=FAST, quiet=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert md5(path.read_bytes()) == md5(data)
    assert peak < 4 * 2**20, f"peak traced memory {peak} bytes for a 24 MiB download"


def test_garbage_response_is_retried_not_a_crash(published, server):
    data, rec = published
    server.faults["/d/test-pca96-n=1000.h5"] = ["garbage"]
    assert ensure(rec, policy=FAST, quiet=True).read_bytes() == data


# --- CLI ---------------------------------------------------------------------------------------
def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"LAIONKNN_RETRIES": "1", "LAIONKNN_BACKOFF": "0.001", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "laionknn", "--quiet", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_fetch_verify_and_errors(tmp_path, server, home):
    data = h5_bytes(tmp_path)
    server.files["/d/f.h5"] = data
    cat = write_catalog(tmp_path / "c.tsv", [
        {"file": "f.h5", "md5": md5(data), "urls": f"{server.base}/d/f.h5"},
        {"file": "g.h5", "md5": md5(data), "urls": f"{server.base}/d/missing.h5"},
        {"file": "h.h5", "md5": "0" * 32, "urls": f"{server.base}/d/f.h5"}])
    ok = run_cli("--catalog", str(cat), "datasets", "fetch", "f")
    assert ok.returncode == 0, ok.stderr
    assert (home / "data" / "f.h5").read_bytes() == data and "f.h5  ok" in ok.stdout

    elsewhere = run_cli("--catalog", str(cat), "datasets", "fetch", "f", "--dest", str(tmp_path / "x"))
    assert elsewhere.returncode == 0 and (tmp_path / "x" / "f.h5").read_bytes() == data

    gone = run_cli("--catalog", str(cat), "datasets", "fetch", "g.h5")
    assert gone.returncode == 2
    assert gone.stderr.count("\n") == 1 and gone.stderr.startswith("error: g.h5: could not download")
    assert "HTTP 404" in gone.stderr

    corrupt = run_cli("--catalog", str(cat), "datasets", "fetch", "h")
    assert corrupt.returncode == 2 and corrupt.stderr.count("\n") == 1
    assert f"expected {'0' * 32}, found {md5(data)}" in corrupt.stderr

    unknown = run_cli("datasets", "fetch", "laion2B-en-clip768v2-n=300")
    assert unknown.returncode == 2 and "did you mean" in unknown.stderr and unknown.stderr.count("\n") == 1

    v = run_cli("--catalog", str(cat), "datasets", "verify", "f", "g")
    assert v.returncode == 1  # g is missing
    assert "ok" in v.stdout and "missing" in v.stdout
    (home / "data" / "f.h5").write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    v = run_cli("--catalog", str(cat), "datasets", "verify")
    assert v.returncode == 1 and "mismatch" in v.stdout and "f.h5" in v.stdout
