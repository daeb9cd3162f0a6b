"""Audit part 8: downloader limits against a real faulty server on 127.0.0.1. Without a
Content-Length it stops at the catalog's size; a trickling server fails by rate or total time instead
of hanging; permanent errors (unknown host) are not retried."""

from __future__ import annotations

import socket
import time

import pytest

from hardeninghelpers import Server, md5
from laionknn.catalog.download import RetryPolicy, download
from laionknn.errors import DownloadError

DATA = bytes(range(256)) * 12  # 3072 bytes


def test_no_content_length_stops_at_the_exact_catalog_size(tmp_path):
    with Server() as srv:
        srv.routes["/f"] = ("nolength", DATA)
        t0 = time.monotonic()
        with pytest.raises(DownloadError, match=r"more than the catalog's 3\.0 KiB"):
            download([srv.base + "/f"], tmp_path / "f.bin", md5s=[md5(DATA)], size=len(DATA), size_exact=True,
                     policy=RetryPolicy(retries=3, backoff=0.001), progress=False)
        assert srv.requests == ["/f"]  # permanent: no retries of a server that sends too much
    assert time.monotonic() - t0 < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither file nor .part left


def test_no_content_length_with_an_approximate_size_stops_past_the_tolerance(tmp_path):
    big = DATA * 100  # 307 KB, listed as "about 100 KB": limit 112 KB + 64 KB slack
    with Server() as srv:
        srv.routes["/f"] = ("nolength", big)
        with pytest.raises(DownloadError, match="more than the catalog's"):
            download([srv.base + "/f"], tmp_path / "f.bin", size=100 * 1024, size_exact=False,
                     policy=RetryPolicy(retries=0), progress=False)


def test_no_content_length_with_the_right_bytes_succeeds(tmp_path):
    with Server() as srv:
        srv.routes["/f"] = ("stream", DATA)
        out = download([srv.base + "/f"], tmp_path / "f.bin", md5s=[md5(DATA)], size=len(DATA), size_exact=True,
                       policy=RetryPolicy(retries=0), progress=False)
    assert out.read_bytes() == DATA


@pytest.mark.parametrize("limits,needle", [
    ({"min_rate": 1000, "rate_window": 0.6}, r"too slow: \d+ bytes/s .*below 1000 bytes/s.*is kept"),
    ({"min_rate": 0, "max_time": 0.8}, r"longer than 0\.8 s.*is kept"),
])
def test_trickling_server_fails_by_rate_or_total_time_and_keeps_the_part(tmp_path, limits, needle):
    with Server() as srv:
        srv.routes["/f"] = ("trickle", None)
        t0 = time.monotonic()
        with pytest.raises(DownloadError, match=needle):
            download([srv.base + "/f"], tmp_path / "f.bin", size=len(DATA), size_exact=True,
                     policy=RetryPolicy(retries=0, timeout=5, **limits), progress=False)
        assert time.monotonic() - t0 < 5  # not the socket timeout, not forever
    assert (tmp_path / "f.bin.part").stat().st_size > 0 and not (tmp_path / "f.bin").exists()


def test_unknown_host_is_not_retried(tmp_path, monkeypatch):
    """DNS failure injected (no lookup may leave this machine): one attempt, no back-off sleeps."""
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="unknown host"):
        download(["http://no-such-host.invalid/f.h5"], tmp_path / "f.h5",
                 policy=RetryPolicy(retries=5, backoff=1.0), progress=False)
    assert time.monotonic() - t0 < 1.0  # was 6 attempts over about 31 s


def test_policy_from_env_validates(monkeypatch):
    from laionknn.errors import UsageError

    monkeypatch.setenv("LAIONKNN_MIN_RATE", "-1")
    with pytest.raises(UsageError, match=r"\$LAIONKNN_MIN_RATE must be at least 0"):
        RetryPolicy.from_env()
    monkeypatch.setenv("LAIONKNN_MIN_RATE", "10")
    monkeypatch.setenv("LAIONKNN_MAX_TIME", "30")
    monkeypatch.setenv("LAIONKNN_RETRIES", "many")
    with pytest.raises(UsageError, match=r"\$LAIONKNN_RETRIES must be an integer"):
        RetryPolicy.from_env()
    monkeypatch.setenv("LAIONKNN_RETRIES", "2")
    p = RetryPolicy.from_env()
    assert (p.retries, p.min_rate, p.max_time) == (2, 10.0, 30.0)
