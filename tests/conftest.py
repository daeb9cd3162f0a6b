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


@pytest.fixture(params=["native", "numpy"])
def native_mode(request, monkeypatch):
    """Each test once with the compiled module laionknn._native and once with it disabled
    (LAIONKNN_NATIVE=off); skipped in the first case where the module is not built."""
    import importlib.util

    from laionknn import native

    if request.param == "native":
        if importlib.util.find_spec("laionknn._native") is None:
            pytest.skip("laionknn._native is not built here (make native, or the editable install)")
        monkeypatch.delenv(native.OFF_ENV, raising=False)
    else:
        monkeypatch.setenv(native.OFF_ENV, "off")
    monkeypatch.delenv(native.KERNEL_ENV, raising=False)
    native.reset()
    yield request.param
    native.reset()
