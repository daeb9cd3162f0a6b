"""Atomic outputs: write to a temporary file beside the target, then ``os.replace``.

A reader never sees a half-written file under the final name. A temporary file is named
``.tmp-<pid>-<final name>``; a kill or a full disk can leave one behind, and because the pid is in
the name no later run would overwrite it. So every writer takes its temporary name from
:func:`temp_path`, which first removes the stale ones in that folder: those of processes that no
longer exist, untouched for :data:`STALE_AFTER` seconds (a live writer on another machine sharing the
folder keeps its file fresh). Files of live processes are never touched, so cleaning is safe while
another run is writing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from pathlib import Path
from typing import Iterator

from laionknn.errors import CatalogError, DiskFullError, one_line

log = logging.getLogger(__name__)


#: seconds a dead process's temporary file must have been left untouched before it is removed
STALE_AFTER = 60.0
_TMP_PID = re.compile(r"^\.tmp-(\d+)-")


def temp_path(target: "str | os.PathLike[str]") -> Path:
    """``.tmp-<pid>-<name>`` beside ``target``, after removing the folder's stale temporary files."""
    target = Path(target)
    clean_stale_temps(target.parent)
    return target.with_name(f".tmp-{os.getpid()}-{target.name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(folder: "str | os.PathLike[str]", *, older_than: float | None = None) -> list[Path]:
    """Remove ``.tmp-<pid>-*`` files and folders in ``folder`` whose process is gone and that were
    not modified for ``older_than`` seconds (default :data:`STALE_AFTER`). Returns what was removed."""
    import shutil
    import time

    older_than = STALE_AFTER if older_than is None else older_than
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TMP_PID.match(entry.name)
        if not m or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < older_than:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue  # gone already (another run cleaned it), or not ours to remove
        removed.append(Path(entry.path))
        log.info("removed %s, left by process %s that no longer runs", entry.path, m.group(1))
    return removed


def make_temp_dir(folder: "str | os.PathLike[str]", purpose: str) -> Path:
    """A new, empty ``.tmp-<pid>-<purpose>-<random>`` folder in ``folder`` (created), after removing the
    folder's stale temporary files: scratch space that a killed run leaves under a name the next
    writer recognises and cleans. The random part keeps concurrent users in one process apart."""
    import uuid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = temp_path(folder / f"{purpose}-{uuid.uuid4().hex[:12]}")
    path.mkdir()
    return path


@contextlib.contextmanager
def temp_dir(folder: "str | os.PathLike[str]", purpose: str) -> Iterator[Path]:
    """:func:`make_temp_dir` for the block; removed afterwards, whatever happens."""
    import shutil

    path = make_temp_dir(folder, purpose)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: "str | os.PathLike[str]") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``target``.

    On an exception the temporary file is removed and the target is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        discard(tmp)
        if isinstance(exc, OSError) and os_error_errno(exc) == errno.ENOSPC:
            raise DiskFullError(explain_os_error(exc, tmp)) from None
        raise


def discard(tmp: "str | os.PathLike[str]") -> None:
    """Remove a temporary file, emptying it first: a library that still holds it open (h5py after
    a failed write on a full disk) then finds room for its last metadata write at exit instead of
    failing again, which crashed the interpreter (exit 139)."""
    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    with contextlib.suppress(OSError):  # already gone, or its folder never existed
        os.unlink(tmp)


def check_writable(folder: "str | os.PathLike[str]", what: str) -> None:
    """Raise :class:`OutputError` unless a file can be created in ``folder`` (created if missing):
    checked before long work, so a read-only or full output folder fails in seconds, not after it."""
    from laionknn.errors import OutputError

    folder = Path(folder)
    probe = folder / f".tmp-{os.getpid()}-write-probe"  # the folder may not exist yet: no cleaning here
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"0")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        discard(probe)
        raise OutputError(f"{what}: cannot write into {folder}: {explain_os_error(exc, folder)}") from None
    discard(probe)


def check_free_space(folder: "str | os.PathLike[str]", need: int, what: str) -> None:
    """Raise :class:`DiskFullError` before a long write of about ``need`` bytes into ``folder`` when
    the disk has less free space than that."""
    import shutil

    folder = _existing_parent(Path(folder)) or Path(".")
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DiskFullError(f"{what} needs about {_bytes(need)} but only {_bytes(free)} is free in {folder}; free "
                            f"some space or write to another folder (--out)")


@contextlib.contextmanager
def exclusive_lock(lock: "str | os.PathLike[str]", busy_message: str, error: type | None = None) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``lock`` (created; it holds the holder's pid) for the block.

    When another live process holds it, raises ``error`` (default :class:`LockedError`) with ``busy_message``, whose
    ``{holder}`` is replaced by `` by pid N``. The kernel drops the lock when its holder dies, so a
    killed job never blocks the next run (its lock file stays, unlocked, and is reused); a finished
    job removes the file. Not POSIX: no locking.
    """
    from laionknn.errors import LockedError

    error = error or LockedError
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise error(busy_message.replace("{holder}", f" by pid {holder}" if holder.isdigit() else "")) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # removed while still held: no lock file outlives its job
                lock.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- names that come from catalogs and file attributes -------------------------------------------
def plain_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain file name (``None`` when it is one).

    A plain name has no directory part: no ``/`` or ``\\``, not ``.`` or ``..``, not absolute, no
    NUL or other control character, no drive (``C:``). Catalog ``file`` columns must be plain names:
    a ``../x`` or ``/usr/lib/python3/site-packages/x.pth`` would otherwise be downloaded there.
    """
    if not name:
        return "it is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a NUL or control character"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if name in (".", ".."):
        return "it is a relative folder reference"
    if len(name) >= 2 and name[1] == ":":
        return "it starts with a drive letter"
    return None


def check_plain_name(name: str, what: str) -> str:
    """``name`` unchanged when it is a plain file name, else :class:`CatalogError` naming ``what``."""
    problem = plain_name_problem(name)
    if problem is not None:
        raise CatalogError(f"{what}: file name {name!r} is not a plain file name ({problem}); a catalog gives "
                           f"names like laion2B-en-clip768v2-n=300K.h5, never a path; fix the catalog")
    return name


def contained_path(folder: "str | os.PathLike[str]", name: str, what: str = "catalog entry") -> Path:
    """``folder / name`` for a plain ``name``, checked again after resolving ``folder``'s symbolic
    links: the result must lie directly inside it (raises :class:`CatalogError` otherwise). A final
    component that is itself a link (a user's own large file kept elsewhere) is allowed: it is only
    read, and downloads replace the link rather than write through it."""
    check_plain_name(name, what)
    folder = Path(folder).expanduser()
    real_folder = folder.resolve()
    real = real_folder / name
    if real.parent != real_folder or os.path.normpath(real) != str(real):
        raise CatalogError(f"{what}: {name!r} would resolve to {real}, outside {real_folder}; fix the catalog")
    return folder / name


# --- operating-system errors as one line with advice ---------------------------------------------
_TMP_NAME = re.compile(r"^\.(?:tmp|partial)-(?:\d+-)?(?P<final>.+)$")


def final_name(path: "str | os.PathLike[str]") -> Path:
    """The final file a temporary ``.tmp-<pid>-NAME`` (or ``.partial-NAME``) stands for."""
    path = Path(path)
    m = _TMP_NAME.match(path.name)
    return path.with_name(m.group("final")) if m else path


def os_error_errno(exc: BaseException) -> int | None:
    """``exc.errno``, or the ``errno = N`` h5py writes into its messages instead."""
    code = getattr(exc, "errno", None)
    if code:
        return code
    m = re.search(r"errno\s*=\s*(\d+)", str(exc))
    return int(m.group(1)) if m else None


def explain_os_error(exc: OSError, path: "str | os.PathLike[str] | None" = None) -> str:
    """One line for a file-system error: what failed, on which final file (never only a temporary
    name), and what to do (free space, permissions, another --out)."""
    raw = path if path is not None else (getattr(exc, "filename", None) or "")
    code = os_error_errno(exc)
    target = final_name(raw) if raw else None
    where = ""
    if target is not None:
        where = f" writing {target}" if target != Path(raw) else f" on {target}"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        folder = _existing_parent(target) if target is not None else None
        free = f" ({_free(folder)} free in {folder})" if folder is not None else ""
        return f"disk full{where}{free}; free some space or write to another folder (--out), then run again"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}; make the folder writable or choose another output folder (--out)"
    if code == errno.EROFS:
        return f"read-only file system{where}; choose an output folder on a writable disk (--out)"
    if code == errno.ENOENT:
        return f"no such file or folder: {raw}; check the path"
    if code == errno.EISDIR:
        return f"{raw} is a folder, a file was expected; give a file path"
    if code == errno.ENOTDIR:
        return f"a part of {raw} is a file, not a folder; check the path"
    detail = getattr(exc, "strerror", None) or one_line(exc)
    return f"{detail}{where}"


def _existing_parent(path: Path) -> Path | None:
    for p in [path, *path.parents]:
        if p.is_dir():
            return p
    return None


def _free(folder: Path) -> str:
    import shutil

    return _bytes(shutil.disk_usage(folder).free)


def _bytes(n: int) -> str:
    for unit, div in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} bytes"
