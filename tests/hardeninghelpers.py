"""Shared helpers of the hardening audit tests (tests/test_hardening_*.py).

``cli(argv)`` runs laionknn in-process and returns exit code, stdout and stderr; ``assert_clean_error``
states the house rule for bad input: exit 2, ONE line on stderr starting with ``error:``, no traceback.
``cli_subprocess`` runs it in a child process (needed for kills, segfault checks and fresh imports).
``Server`` is a real HTTP server on 127.0.0.1 whose paths answer with a chosen behaviour.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from test_catalog_download import write_catalog  # noqa: F401  (a user catalog TSV; re-exported)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def cli(argv, capsys) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    from laionknn.cli.main import main

    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_subprocess(*args, env_extra: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"LAIONKNN_RETRIES": "1", "LAIONKNN_BACKOFF": "0.001", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "laionknn", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def assert_clean_error(code: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one non-empty line on stderr, starting with 'error:', no traceback; each
    needle (case-insensitive) appears in it. Returns the line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}, stderr: {err!r}"
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {err!r}"
    assert "Traceback" not in err
    assert lines[0].startswith("error: "), lines[0]
    for n in needles:
        assert n.lower() in lines[0].lower(), f"{n!r} not in {lines[0]!r}"
    return lines[0]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def small_vectors(n: int = 200, dim: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


class Server:
    """``routes[path] = (behaviour, payload)``; behaviours: 'file' (payload bytes, with
    Content-Length), 'stream' (payload bytes without Content-Length), 'nolength' (payload bytes
    without Content-Length, then 8 times as many zero bytes), 'redirect' (payload: the Location), 'trickle' (one byte per
    0.2 s, forever). Each request's path is logged in ``requests``."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, object]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                behaviour, payload = server.routes.get(self.path, ("missing", None))
                try:
                    if behaviour == "missing":
                        self.send_error(404)
                    elif behaviour == "redirect":
                        self.send_response(302)
                        self.send_header("Location", str(payload))
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    elif behaviour == "file":
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                    elif behaviour == "stream":  # the exact bytes, no Content-Length, then close
                        self.send_response(200)
                        self.end_headers()
                        self.wfile.write(payload)
                    elif behaviour == "nolength":
                        self.send_response(200)
                        self.end_headers()
                        self.wfile.write(payload)
                        for _ in range(8):
                            self.wfile.write(b"\0" * len(payload))
                    elif behaviour == "trickle":
                        self.send_response(200)
                        self.end_headers()
                        for _ in range(10_000):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.2)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Listener:
    """A bare TCP listener on 127.0.0.1 that records whether anyone connected (the target of a
    redirect that must not be followed)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except (TimeoutError, socket.timeout, OSError):
            return False
        conn.close()
        return True

    def close(self) -> None:
        self.sock.close()


# --- a real small disk: a tmpfs mounted in a private mount namespace --------------------------------
def _unshare_prefix() -> list[str]:
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]


def small_disk_works() -> bool:
    """Whether this machine can mount a private tmpfs (root, or unprivileged user namespaces)."""
    import shutil
    import tempfile

    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        try:
            r = subprocess.run([*_unshare_prefix(), "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {d}"],
                               capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return r.returncode == 0


def run_on_small_disk(mount: Path, size_mb: float, script: str, *, env_extra: dict | None = None,
                      timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) with a ``size_mb`` tmpfs mounted on ``mount`` (a private mount namespace:
    the mount vanishes with the process, so the script also lists what it left). ``$LK`` runs
    laionknn, ``$PY`` this Python; ``$D`` is the mount point."""
    import shlex

    mount.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"LK": f"{shlex.quote(sys.executable)} -m laionknn --quiet", "PY": shlex.quote(sys.executable),
                "D": str(mount), **(env_extra or {})})
    kib = int(size_mb * 1024)
    full = f"mount -t tmpfs -o size={kib}k tmpfs {shlex.quote(str(mount))} || exit 97\n{script}"
    return subprocess.run([*_unshare_prefix(), "sh", "-c", full], capture_output=True, text=True, env=env,
                          timeout=timeout)


LIST_FILES = 'echo "--- files"; find "$D" -type f -printf "%P %s\\n" | sort; echo "--- end"'


def listed_files(stdout: str) -> dict[str, int]:
    """The ``LIST_FILES`` section of a small-disk run: relative path -> bytes."""
    block = stdout.split("--- files\n", 1)[1].split("--- end", 1)[0]
    return {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in block.splitlines() if line.strip()}
