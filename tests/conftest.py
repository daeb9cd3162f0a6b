"""Shared fixtures: every test gets its own workspace root and no progress bars."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _workspace(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("laionknn-home")
    monkeypatch.setenv("LAIONKNN_HOME", str(home))
    monkeypatch.setenv("LAIONKNN_QUIET", "1")
    monkeypatch.delenv("LAIONKNN_CATALOG", raising=False)
    monkeypatch.delenv("LAIONKNN_MIRROR", raising=False)
    from laionknn import progress

    monkeypatch.setattr(progress, "_QUIET", True)
    yield home


@pytest.fixture
def home(_workspace):
    return _workspace


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
