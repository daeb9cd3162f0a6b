"""Checkpoints of the exact engine: the merged candidate state after every finished row range.

A checkpoint is one ``.npz`` file (``lo``, ``hi``, ``ids`` of :class:`~laionknn.exact.merge.Candidates`
for all queries, plus a JSON header) written to a temporary name and moved into place with
``os.replace`` (faiss ``big_batch_search`` style), so a kill at any instant leaves either the previous
or the new checkpoint, never a partial one. The header holds a *fingerprint* of the inputs and
parameters; resuming from a checkpoint whose fingerprint differs raises :class:`CheckpointError`.
The checkpoint it replaces is kept as ``NAME.prev`` (a rename, no copy): when the newest one is
damaged (truncated by a full disk, a copy, a crash of the file system), :func:`load_latest` says
which file and resumes from the previous one, or starts over when neither can be read.
Rows ``[0, next_row)`` are done; because the merge is associative, resuming with other block sizes
gives the same result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from laionknn.errors import CheckpointError
from laionknn.exact.merge import Candidates
from laionknn.fsutil import temp_path

log = logging.getLogger(__name__)

FORMAT = "laionknn-exact-checkpoint-1"


def file_identity(path: "str | os.PathLike[str]") -> dict:
    """Path, size and modification time of a file, plus a hash of its first MiB (the HDF5 header)."""
    p = Path(path).resolve()
    st = p.stat()
    with open(p, "rb") as f:
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()[:16]
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_sha256": head}


def array_identity(a: np.ndarray) -> dict:
    """Shape, dtype and a content hash of an in-memory array."""
    a = np.ascontiguousarray(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": hashlib.sha256(a.view(np.uint8)).hexdigest()[:32]}


def save(path: "str | os.PathLike[str]", state: Candidates, fingerprint: dict, next_row: int) -> Path:
    """Write the state atomically (temporary file beside ``path``, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    header = json.dumps({"format": FORMAT, "fingerprint": fingerprint, "next_row": int(next_row)}, sort_keys=True)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, lo=state.lo, hi=state.hi, ids=state.ids, header=np.array(header))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        from laionknn.fsutil import discard, explain_os_error

        discard(tmp)  # the previous checkpoint stays as it was
        raise CheckpointError(f"cannot write the checkpoint: {explain_os_error(exc, tmp)}") from None
    if path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)
    return path


def previous_path(path: "str | os.PathLike[str]") -> Path:
    """Where the checkpoint before ``path``'s current one is kept."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def exists(path: "str | os.PathLike[str]") -> bool:
    return Path(path).exists() or previous_path(path).exists()


def remove(path: "str | os.PathLike[str]") -> None:
    """Delete the checkpoint and the one before it (the job finished, or starts over)."""
    Path(path).unlink(missing_ok=True)
    previous_path(path).unlink(missing_ok=True)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} (checkpoint: {a!r}, now: {b!r})")
    return out


def load(path: "str | os.PathLike[str]", fingerprint: dict) -> tuple[Candidates, int]:
    """Read a checkpoint written for exactly ``fingerprint``; returns ``(state, next_row)``.

    Raises :class:`CheckpointError` when the file is damaged or belongs to other inputs/parameters.
    """
    path = Path(path)
    state, header = _read(path)
    diffs = _differences(header.get("fingerprint", {}), json.loads(json.dumps(fingerprint)))
    if diffs:
        raise CheckpointError(f"{path}: checkpoint was written for other inputs or parameters: "
                              f"{'; '.join(diffs[:4])}; delete it, or rerun without --resume to start over")
    return state, int(header["next_row"])


class DamagedCheckpoint(CheckpointError):
    """A checkpoint file that cannot be read (truncated, not a checkpoint)."""


def _read(path: Path) -> tuple[Candidates, dict]:
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            state = Candidates(z["lo"], z["hi"], z["ids"])
            int(header["next_row"])
    except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error, OSError, KeyError...
        raise DamagedCheckpoint(f"{path}: checkpoint cannot be read ({type(exc).__name__}: {exc}); delete it and "
                                f"run without --resume") from None
    if header.get("format") != FORMAT:
        raise DamagedCheckpoint(f"{path}: not an exact-engine checkpoint (format {header.get('format')!r}, expected "
                                f"{FORMAT!r}); delete it and run without --resume")
    if not (state.lo.shape == state.hi.shape == state.ids.shape):
        raise DamagedCheckpoint(f"{path}: checkpoint arrays disagree in shape; delete it and run without --resume")
    return state, header


def load_latest(path: "str | os.PathLike[str]", fingerprint: dict) -> tuple[Candidates, int] | None:
    """The newest readable checkpoint of ``path`` (itself, else the one before it) for exactly
    ``fingerprint``; ``None`` when neither can be read (the caller starts over). Each damaged file
    is named in a warning and removed. A readable checkpoint of other inputs raises."""
    for candidate in (Path(path), previous_path(path)):
        if not candidate.exists():
            continue
        try:
            return load(candidate, fingerprint)
        except DamagedCheckpoint as exc:
            log.warning("%s; %s", exc.args[0].split("; delete it")[0],
                        "trying the checkpoint before it" if candidate == Path(path) else "starting over")
            candidate.unlink(missing_ok=True)
    return None

