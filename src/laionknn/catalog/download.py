"""The one downloader: resumable, verified, atomic HTTP(S)/file downloads with the stdlib only.

``download(urls, target, md5s=..., size=...)`` streams the first URL that works into
``target.name + '.part'`` beside ``target``, in chunks, updating an md5 as the bytes arrive (constant
memory, whatever the file size). After any interruption it resumes with an HTTP ``Range`` request;
the md5 of the bytes already in the ``.part`` is re-derived by reading that file in chunks. A server
that ignores ``Range`` (answers 200 to a ranged request) restarts the file cleanly from zero.
Transient failures (dropped connections, timeouts, 5xx, 408, 429) are retried with exponential
back-off; permanent ones (other 4xx, a size that disagrees with the catalog, a wrong md5) move on to
the next URL. The announced size is compared with the catalog's (exactly when the catalog gives a
byte count, within :data:`SIZE_TOLERANCE` when it gives a rounded figure such as ``77MB``). Only a file
whose md5 is one of the catalog's is renamed onto ``target`` (``os.replace``); a file whose md5 does
not match is renamed to ``.bad`` so that nothing under the final name, or a ``.part`` that a later
run would resume, looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from laionknn.errors import ChecksumError, DownloadError

log = logging.getLogger(__name__)

#: relative slack allowed between a rounded listed size ("77MB", "1.3G") and the real byte count;
#: the official lists round to two digits and mix 10^3 and 2^10 units (up to ~7% apart).
SIZE_TOLERANCE = 0.12
#: absolute slack (HDF5 headers) added to the relative tolerance for small files.
SIZE_SLACK = 64 * 1024
CHUNK = 1 << 20
USER_AGENT = "laionknn-downloader"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one URL: ``retries`` extra attempts after the first, sleeping
    ``backoff * 2**i`` seconds (capped at ``max_backoff``) before attempt ``i + 1``.

    ``timeout``: seconds one connect or read may wait (idle timeout). ``min_rate`` bytes/s over
    ``rate_window`` seconds: a server trickling slower than that (never idle, so never timing out)
    fails the attempt (transient; the ``.part`` is kept). ``max_time``: seconds one attempt may
    take in all (``None``: no limit; a 147 GB file takes hours)."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 60.0
    min_rate: float = 1024.0
    rate_window: float = 60.0
    max_time: float | None = None

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """Defaults, overridden by ``$LAIONKNN_RETRIES``, ``$LAIONKNN_BACKOFF``, ``$LAIONKNN_TIMEOUT``."""
        from laionknn.validation import check_float, check_int

        env = os.environ
        max_time = env.get("LAIONKNN_MAX_TIME")
        return cls(retries=check_int(env.get("LAIONKNN_RETRIES", cls.retries), "$LAIONKNN_RETRIES", min=0, max=100),
                   backoff=check_float(env.get("LAIONKNN_BACKOFF", cls.backoff), "$LAIONKNN_BACKOFF", min=0),
                   timeout=check_float(env.get("LAIONKNN_TIMEOUT", cls.timeout), "$LAIONKNN_TIMEOUT", min=0,
                                       min_exclusive=True),
                   min_rate=check_float(env.get("LAIONKNN_MIN_RATE", cls.min_rate), "$LAIONKNN_MIN_RATE", min=0),
                   rate_window=check_float(env.get("LAIONKNN_RATE_WINDOW", cls.rate_window), "$LAIONKNN_RATE_WINDOW",
                                           min=0, min_exclusive=True),
                   max_time=None if not max_time else check_float(max_time, "$LAIONKNN_MAX_TIME", min=0,
                                                                  min_exclusive=True))

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2 ** attempt))


class _Transient(Exception):
    """Worth retrying the same URL (after back-off)."""


class _Permanent(Exception):
    """Give up on this URL, try the next one."""


# --- URLs --------------------------------------------------------------------------------------
def mirror_url(url: str, mirror: str) -> str:
    """Replace scheme, host and directory of ``url`` by ``mirror``, keeping the file name.

    ``mirror`` is a URL base (``https://host/dir``) or a local folder (``/srv/laion``, made a
    ``file://`` URL). ``mirror_url('https://a.org/x/f.h5', 'http://m/lai/') == 'http://m/lai/f.h5'``.
    """
    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    if not name:
        raise DownloadError(f"cannot mirror {url!r}: it has no file name")
    if "://" not in mirror:
        mirror = Path(mirror).expanduser().resolve().as_uri()
    return mirror.rstrip("/") + "/" + urllib.parse.quote(urllib.parse.unquote(name), safe="=+-_.,~")


def candidate_urls(urls: "list[str] | tuple[str, ...]", mirror: str | None = None) -> list[str]:
    """The URLs to try, in order: the record's, or their mirrored versions (duplicates dropped)."""
    out: list[str] = []
    for u in urls:
        u = mirror_url(u, mirror) if mirror else u
        if u not in out:
            out.append(u)
    return out


# --- sizes -------------------------------------------------------------------------------------
def size_agrees(actual: int, listed: int | None, exact: bool) -> bool:
    """Whether ``actual`` bytes agree with the catalog's ``listed`` size (``None`` agrees always)."""
    if listed is None:
        return True
    if exact:
        return actual == listed
    return abs(actual - listed) <= SIZE_TOLERANCE * listed + SIZE_SLACK


def describe_size(n: int | None, exact: bool = True) -> str:
    if n is None:
        return "unknown size"
    approx = "" if exact else "about "
    for unit, div in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= div:
            return f"{approx}{n / div:.1f} {unit} ({n} bytes)"
    return f"{approx}{n} bytes"


# --- md5 ---------------------------------------------------------------------------------------
def md5_of_file(path: "str | os.PathLike[str]", *, chunk: int = CHUNK, bar=None) -> str:
    """md5 hex digest of a file read in ``chunk``-byte pieces (constant memory)."""
    h = hashlib.md5()
    _hash_into(h, Path(path), chunk, bar)
    return h.hexdigest()


def _hash_into(h, path: Path, chunk: int, bar=None) -> int:
    n = 0
    with open(path, "rb") as f:
        while True:
            buf = f.read(chunk)
            if not buf:
                return n
            h.update(buf)
            n += len(buf)
            if bar is not None:
                bar.update(n)


# --- one attempt -------------------------------------------------------------------------------
@dataclass
class _State:
    """What is known about the ``.part``: its length and the md5 of those bytes."""

    part: Path
    hasher: "hashlib._Hash"
    length: int

    @classmethod
    def load(cls, part: Path, bar=None) -> "_State":
        h = hashlib.md5()
        n = _hash_into(h, part, CHUNK, bar) if part.exists() else 0
        if n:
            log.info("resuming %s from byte %d (md5 of the existing part re-derived)", part.name, n)
        return cls(part, h, n)

    def sync(self) -> None:
        """Re-derive the state if the ``.part`` changed behind our back (another attempt, a crash)."""
        actual = self.part.stat().st_size if self.part.exists() else 0
        if actual != self.length:
            fresh = _State.load(self.part)
            self.hasher, self.length = fresh.hasher, fresh.length

    def reset(self) -> None:
        self.part.unlink(missing_ok=True)
        self.hasher, self.length = hashlib.md5(), 0


def _total_from_content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); 'bytes */1000' -> (None, 1000)."""
    if not value or not value.startswith("bytes"):
        return None, None
    spec = value[5:].strip()
    rng, _, total = spec.partition("/")
    start = None if rng.strip() == "*" else int(rng.split("-")[0])
    return start, (None if total.strip() in ("", "*") else int(total))


#: schemes a catalog URL may use (``file`` for local mirrors); a redirect may only lead to http(s).
URL_SCHEMES = ("http", "https", "file")
REDIRECT_SCHEMES = ("http", "https")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be downloaded from (``None`` when it can): no scheme, an unsupported
    scheme, or an http(s) URL without a host."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme:
        return "it has no scheme (expected http://, https:// or file://)"
    if parts.scheme.lower() not in URL_SCHEMES:
        return f"its scheme {parts.scheme}:// is not supported (expected http://, https:// or file://)"
    if parts.scheme.lower() in REDIRECT_SCHEMES and not parts.netloc:
        return "it has no host"
    return None


class _RedirectRefused(urllib.error.URLError):
    pass


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: urllib's default also follows ``ftp://``, which would let a
    server send the client to any other protocol."""

    def http_error_302(self, req, fp, code, msg, headers):
        newurl = headers.get("location") or headers.get("uri")
        if newurl is not None:
            scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl)).scheme.lower()
            if scheme not in REDIRECT_SCHEMES:
                fp.close()
                raise _RedirectRefused(f"redirect to {newurl!r} refused: only http(s) redirects are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    problem = url_problem(url)
    if problem is not None:
        raise _Permanent(f"cannot download from it: {problem}")
    req = urllib.request.Request(url, headers=headers)
    try:
        return _OPENER.open(req, timeout=timeout)
    except _RedirectRefused as exc:
        raise _Permanent(str(exc.reason)) from None
    except urllib.error.HTTPError as exc:
        code = exc.code
        if code == 416:
            return exc  # handled by the caller: the part may already be complete
        exc.close()
        if code >= 500 or code in (408, 429):
            raise _Transient(f"HTTP {code} {exc.reason}") from None
        raise _Permanent(f"HTTP {code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, FileNotFoundError) or (isinstance(reason, str) and "No such file" in reason):
            raise _Permanent(f"not found ({reason})") from None
        if isinstance(reason, socket.gaierror) and reason.errno != socket.EAI_AGAIN:
            raise _Permanent(f"unknown host ({reason.strerror or reason})") from None  # retrying cannot help
        if isinstance(reason, str) and reason.startswith("unknown url type"):
            raise _Permanent(reason) from None
        raise _Transient(f"cannot connect: {reason}") from None


class _Pace:
    """Watches one attempt: a rate below ``min_rate`` over ``rate_window`` seconds, or more than
    ``max_time`` seconds in all, fails it."""

    def __init__(self, policy: "RetryPolicy") -> None:
        self.policy = policy
        self.t0 = self.mark_t = time.monotonic()
        self.mark_n = 0

    def check(self, n: int) -> None:
        now, p = time.monotonic(), self.policy
        if p.max_time is not None and now - self.t0 > p.max_time:
            raise _Transient(f"attempt took longer than {p.max_time:g} s ($LAIONKNN_MAX_TIME)")
        if now - self.mark_t >= p.rate_window:
            rate = (n - self.mark_n) / (now - self.mark_t)
            if rate < p.min_rate:
                raise _Transient(f"server too slow: {rate:.0f} bytes/s over {now - self.mark_t:.1f} s, below "
                                 f"{p.min_rate:g} bytes/s ($LAIONKNN_MIN_RATE)")
            self.mark_t, self.mark_n = now, n


def _limit(listed: int | None, exact: bool) -> int | None:
    """Most bytes a file of the catalog's ``listed`` size may have (``None``: no limit known)."""
    if listed is None:
        return None
    return listed if exact else int(listed * (1 + SIZE_TOLERANCE)) + SIZE_SLACK


def _attempt(url: str, st: _State, listed: int | None, exact: bool, policy: "RetryPolicy", bar, name: str) -> int:
    """Bring ``st.part`` to the full length from ``url``; returns the total length in bytes."""
    timeout = policy.timeout
    st.sync()
    if exact and listed is not None and st.length > listed:
        log.warning("%s: %s is longer than the catalog size; starting again", name, st.part.name)
        st.reset()
    start = st.length
    resp = _open(url, start, timeout)
    with resp:
        code = getattr(resp, "status", None) or getattr(resp, "code", None) or 200
        if code == 416:  # nothing left after `start`: complete if the server's total is our length
            _, total = _total_from_content_range(resp.headers.get("Content-Range"))
            if total is not None and total == start:
                return start
            st.reset()
            raise _Transient(f"server refused range from byte {start} (total {total}); restarting from zero")
        clen = resp.headers.get("Content-Length")
        clen = int(clen) if clen is not None and clen.strip().isdigit() else None
        if code == 206:
            got_start, total = _total_from_content_range(resp.headers.get("Content-Range"))
            if got_start != start:
                st.reset()
                raise _Transient(f"server sent a range from byte {got_start}, asked for {start}; restarting")
            if total is None and clen is not None:
                total = start + clen
        else:
            if start:
                log.warning("%s: %s ignores Range requests; restarting from zero", name, urllib.parse.urlsplit(url).netloc or url)
                st.reset()
                start = 0
            total = clen
        if total is not None and not size_agrees(total, listed, exact):
            raise _Permanent(f"server announces {describe_size(total)}, the catalog lists "
                             f"{describe_size(listed, exact)}")
        bar.update(start)
        mode = "ab" if start else "wb"
        st.part.parent.mkdir(parents=True, exist_ok=True)
        limit, pace = _limit(listed, exact), _Pace(policy)
        read = getattr(resp, "read1", resp.read)  # read1: return what arrived, so the pace is checked often
        with open(st.part, mode) as out:
            while True:
                try:
                    buf = read(CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                    out.flush()
                    raise _Transient(f"connection lost after {st.length} bytes: {exc.__class__.__name__}") from None
                if not buf:
                    break
                if limit is not None and st.length + len(buf) > limit:
                    st.reset()
                    raise _Permanent(f"server sent more than the catalog's {describe_size(listed, exact)} "
                                     f"(no Content-Length); the bytes were discarded")
                out.write(buf)
                st.hasher.update(buf)
                st.length += len(buf)
                bar.update(st.length)
                pace.check(st.length - start)
    if total is not None and st.length != total:
        raise _Transient(f"connection closed after {st.length} of {total} bytes")
    return st.length


# --- the downloader ----------------------------------------------------------------------------
@contextlib.contextmanager
def _exclusive(target: Path, name: str):
    """Hold ``target.lock`` (an advisory ``flock``) so that two processes never append to one ``.part``."""
    from laionknn.fsutil import exclusive_lock

    lock = target.with_name(target.name + ".lock")
    with exclusive_lock(lock, f"{name}: another process is downloading it now ({lock} is locked{{holder}}); wait "
                              f"for it to finish, or stop it and fetch again", DownloadError):
        yield


def _check_space(target: Path, name: str, size: int | None, exact: bool, have: int) -> None:
    """Refuse to start when the disk obviously cannot hold the rest of the file."""
    if size is None:
        return
    need = (size if exact else int(size * (1 - SIZE_TOLERANCE))) - have
    free = shutil.disk_usage(target.parent).free
    if need > free:
        raise DownloadError(f"{name}: needs {describe_size(need, exact)} more on {target.parent}, only "
                            f"{describe_size(free)} free; free some space or fetch with --dest elsewhere")


def download(urls: "list[str] | tuple[str, ...]", target: "str | os.PathLike[str]", *, md5s=(),
             size: int | None = None, size_exact: bool = False, policy: RetryPolicy | None = None,
             name: str | None = None, progress: bool = True) -> Path:
    """Download the first working URL of ``urls`` onto ``target`` and verify it.

    ``md5s``: accepted md5 hex digests (empty: not checked, a warning is logged). ``size``: the
    catalog's size in bytes, exact when ``size_exact`` else approximate. Raises
    :class:`ChecksumError` when the content had the wrong md5 (the file is moved to ``.bad``),
    :class:`DownloadError` when no URL gave a complete file. Memory use is constant.
    """
    target = Path(target)
    name = name or target.name
    policy = policy or RetryPolicy.from_env()
    md5s = tuple(m.lower() for m in md5s)
    if not urls:
        raise DownloadError(f"{name}: the catalog gives no URL to download it from; add one with a user "
                            f"catalog (--catalog) or copy the file to {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target, name):
        return _download(list(urls), target, md5s, size, size_exact, policy, name, progress)


def _download(urls: list[str], target: Path, md5s: tuple[str, ...], size: int | None, size_exact: bool,
              policy: RetryPolicy, name: str, progress: bool) -> Path:
    from laionknn.progress import progress_bar

    part = target.with_name(target.name + ".part")
    bad = target.with_name(target.name + ".bad")
    failures: list[str] = []
    checksum_failure: str | None = None
    have = part.stat().st_size if part.exists() else 0
    _check_space(target, name, size, size_exact, have)
    if have and progress:
        with progress_bar("md5 of the .part", have, bytes_mode=True) as bar:
            st = _State.load(part, bar)
    else:
        st = _State.load(part)
    desc = name if len(name) <= 40 else name[:37] + "..."
    for url in urls:
        with (progress_bar(desc, size, bytes_mode=True) if progress else _null_bar()) as bar:
            attempt = 0
            while True:
                try:
                    _attempt(url, st, size, size_exact, policy, bar, name)
                    break
                except _Permanent as exc:
                    failures.append(f"{url}: {exc}")
                    log.info("%s: %s: %s; trying the next URL", name, url, exc)
                    attempt = -1
                    break
                except _Transient as exc:
                    if attempt >= policy.retries:
                        failures.append(f"{url}: {exc} (gave up after {attempt + 1} attempt{'s' if attempt else ''})")
                        log.info("%s: %s: %s; giving up on this URL", name, url, exc)
                        attempt = -1
                        break
                    delay = policy.delay(attempt)
                    log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", name, exc, delay,
                                attempt + 2, policy.retries + 1)
                    time.sleep(delay)
                    attempt += 1
        if attempt < 0:
            continue
        found = st.hasher.hexdigest()
        if md5s and found not in md5s:
            os.replace(part, bad)
            st.reset()
            checksum_failure = (f"{name}: md5 mismatch: expected {' or '.join(md5s)}, found {found} "
                                f"(downloaded from {url}); the file was not installed and was moved to {bad} "
                                f"(delete it); check the mirror or catalog")
            failures.append(f"{url}: md5 {found}")
            log.info("%s", checksum_failure)
            continue
        if not md5s:
            log.warning("%s: the catalog gives no md5; the download was not verified (md5 %s)", name, found)
        if not size_agrees(st.length, size, size_exact):
            os.replace(part, bad)
            st.reset()
            failures.append(f"{url}: {st.length} bytes, catalog lists {describe_size(size, size_exact)}")
            continue
        os.replace(part, target)
        bad.unlink(missing_ok=True)
        log.info("%s: downloaded %s from %s, md5 %s", name, describe_size(target.stat().st_size), url, found)
        return target
    if checksum_failure is not None:
        raise ChecksumError(checksum_failure)
    tried = "; ".join(failures)
    keep = f"; {part.name} ({st.length} bytes) is kept and the next fetch resumes it" if st.length else ""
    raise DownloadError(f"{name}: could not download from any of {len(urls)} URL(s): {tried}{keep}")


class _null_bar:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, completed: float) -> None:
        pass

    def advance(self, amount: float = 1) -> None:
        pass
