"""Every on-disk path derives from one root.

The root is ``$LAIONKNN_HOME`` or ``~/.cache/laionknn``. Below it:
``data/`` (catalog files, official and synthetic), ``gold/``, ``projections/``, ``indexes/`` (cache of
built indexes), ``runs/`` (result files and run records), ``checkpoints/``.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    root = os.environ.get("LAIONKNN_HOME")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "laionknn"


def _sub(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Where catalog files (downloaded or synthesised) live, under their catalog file names."""
    return _sub("data")


def data_path(filename: str) -> Path:
    return data_dir() / filename


def gold_dir() -> Path:
    return _sub("gold")


def projections_dir() -> Path:
    return _sub("projections")


def index_cache_dir() -> Path:
    return _sub("indexes")


def runs_dir() -> Path:
    return _sub("runs")


def checkpoints_dir() -> Path:
    return _sub("checkpoints")
