"""Checkpoints of the exact engine: the merged candidate state after every finished row range.

A checkpoint is one ``.npz`` file (``lo``, ``hi``, ``ids`` of :class:`~laionknn.exact.merge.Candidates`
for all queries, plus a JSON header) written to a temporary name and moved into place with
``os.replace`` (faiss ``big_batch_search`` style), so a kill at any instant leaves either the previous
or the new checkpoint, never a partial one. The header holds a *fingerprint* of the inputs and
parameters; resuming from a checkpoint whose fingerprint differs raises :class:`CheckpointError`.
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
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    header = json.dumps({"format": FORMAT, "fingerprint": fingerprint, "next_row": int(next_row)}, sort_keys=True)
    with open(tmp, "wb") as f:
        np.savez(f, lo=state.lo, hi=state.hi, ids=state.ids, header=np.array(header))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


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
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            state = Candidates(z["lo"], z["hi"], z["ids"])
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: checkpoint cannot be read ({exc}); delete it and run without --resume") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an exact-engine checkpoint (format {header.get('format')!r}, expected "
                              f"{FORMAT!r}); delete it and run without --resume")
    diffs = _differences(header.get("fingerprint", {}), json.loads(json.dumps(fingerprint)))
    if diffs:
        raise CheckpointError(f"{path}: checkpoint was written for other inputs or parameters: "
                              f"{'; '.join(diffs[:4])}; delete it, or rerun without --resume to start over")
    return state, int(header["next_row"])
