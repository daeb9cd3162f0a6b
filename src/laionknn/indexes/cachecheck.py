"""Integrity of the index cache: what a save wrote is recorded, and checked before a load.

Libraries save indexes with their own writers and do not all report a failed write: hnswlib wrote
4.1 of 6.4 MB of an index on a full disk without raising, and that truncated index then broke every
later search of the configuration. So a cache entry is trusted only when

- after the save, the disk still had room (a save that filled the disk is treated as failed), and
- at load time, every file has the size recorded in ``meta.json`` at save time (``files``: relative
  path -> bytes); a missing, truncated or unreadable entry is removed and the index rebuilt.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

#: a save that leaves less free space than this on the cache disk is assumed to have been cut short
MIN_FREE_AFTER_SAVE = 1 << 20


def file_sizes(folder: Path) -> dict[str, int]:
    """``relative path -> bytes`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def save_problem(folder: Path) -> str | None:
    """Why a just-saved index under ``folder`` cannot be trusted (``None`` when it can)."""
    if not any(p.is_file() for p in folder.rglob("*")):
        return "the save wrote no file"
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_AFTER_SAVE:
        return f"the disk was full after the save ({free} bytes free), the files may be cut short"
    return None


def entry_problem(entry: Path) -> str | None:
    """Why the cache entry ``entry`` (``meta.json`` + ``index/``) cannot be loaded (``None`` when it
    can): unreadable ``meta.json``, or a file missing or of another size than recorded at save time.
    Entries written before sizes were recorded are accepted as they are."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        float(meta["buildtime"]), int(meta["index_bytes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"meta.json is damaged ({type(exc).__name__})"
    recorded = meta.get("files")
    if recorded is None:
        return None
    index = entry / "index"
    for rel, size in recorded.items():
        path = index / rel
        if not path.is_file():
            return f"{path.name} is missing"
        if path.stat().st_size != int(size):
            return f"{path.name} has {path.stat().st_size} bytes, {size} were saved (truncated?)"
    return None


def discard_entry(entry: Path, why: str) -> None:
    # one message for both ways an entry fails: its size check (entry_problem) or the library's load
    log.warning("index cache %s does not load back: %s; removing it and building again", entry, why)
    shutil.rmtree(entry, ignore_errors=True)
