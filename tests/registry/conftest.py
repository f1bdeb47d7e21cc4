"""Fixtures for registry tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# helper modules of this folder (oracles, hivetools) are imported by name
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def hives_dir(shared_dir: Path) -> Path:
    path = shared_dir / "hives"
    if not path.is_dir():
        pytest.skip(f"real hives not available: {path} is absent")
    return path
