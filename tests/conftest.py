"""Shared fixtures: one smoke-profile data home, prepared once per test session, and private copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home holding `synthetic-smoke-7f` and `synthetic-smoke-9f` (seed 0), built in-process."""
    from bench.data.prepare import prepare

    data_dir = tmp_path_factory.mktemp("smoke-data")
    prepare(source="synthetic", frames=(7, 9), profile="smoke", data_dir=data_dir, seed=0, workers=1)
    return data_dir


@pytest.fixture
def data(smoke_data: Path, tmp_path: Path) -> Path:
    """A private data home holding a copy of the smoke 7-frame set, for tests that edit or damage it."""
    home = tmp_path / "data"
    home.mkdir()
    shutil.copytree(smoke_data / "synthetic-smoke-7f", home / "synthetic-smoke-7f")
    return home
