"""Fixtures of the data tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def raw(tiny_raw: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny raw world to damage."""
    return Path(shutil.copytree(tiny_raw, tmp_path / "raw"))
