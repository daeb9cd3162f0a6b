"""Model files: plain ``.npz`` archives tagged with a ``kind``, written atomically, read without pickle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from laionknn.errors import FormatError
from laionknn.fsutil import atomic_path


def save_npz(path: "str | os.PathLike[str]", kind: str, **arrays) -> Path:
    """Write ``arrays`` plus ``kind`` to ``path`` (temp file + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, kind=np.array(kind), **arrays)
    return path


def load_npz(path: "str | os.PathLike[str]", kind: str, hint: str) -> dict:
    """Every array of a ``kind`` model file, as a dict; FormatError naming ``hint`` otherwise."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            found = str(z["kind"]) if "kind" in z.files else "none"
            if found != kind:
                raise FormatError(f"{path}: not a laionknn {kind} model (kind={found}); make one with `{hint}`")
            return {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError) as exc:
        raise FormatError(f"{path}: cannot read a {kind} model ({exc}); expected a .npz written by `{hint}`") from None
