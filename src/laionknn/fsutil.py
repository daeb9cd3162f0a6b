"""Atomic outputs: write to a temporary file beside the target, then ``os.replace``.

A reader never sees a half-written file under the final name, and a crash leaves at most a
``.tmp-*`` file that the next run overwrites.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from typing import Iterator

from laionknn.errors import CatalogError, one_line


@contextlib.contextmanager
def atomic_path(target: "str | os.PathLike[str]") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``target``.

    On an exception the temporary file is removed and the target is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


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
    raw = path if path is not None else (exc.filename or "")
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

    n = shutil.disk_usage(folder).free
    for unit, div in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} bytes"
