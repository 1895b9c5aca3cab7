"""Shared fixtures: one smoke-profile data home, prepared once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home holding `synthetic-smoke-7f` and `synthetic-smoke-9f` (seed 0), built in-process."""
    from bench.data.prepare import prepare

    data_dir = tmp_path_factory.mktemp("smoke-data")
    prepare(source="synthetic", frames=(7, 9), profile="smoke", data_dir=data_dir, seed=0, workers=1)
    return data_dir
