"""Shared test fixtures."""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared/fixtures`, read in place; tests skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"real fixtures not available: {SHARED} is absent")
    return SHARED


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (images are large)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def copy_shared_hive(src: Path, dst_dir: Path, name: str | None = None) -> Path:
    """Copy a hive (decompressing .xz) and its logs beside it into dst_dir; returns the copy."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    base = src.name[:-3] if src.name.endswith(".xz") else src.name
    out = dst_dir / (name or base)
    copy_maybe_xz(src, out)
    for sibling in src.parent.iterdir():
        sib = sibling.name[:-3] if sibling.name.endswith(".xz") else sibling.name
        for suffix in (".LOG", ".LOG1", ".LOG2"):
            if sib.lower() == (base + suffix).lower():
                copy_maybe_xz(sibling, dst_dir / ((name or base) + suffix))
    return out


def copy_maybe_xz(src: Path, dst: Path) -> None:
    """Copy one file of ../shared (decompressing .xz) to `dst`, writable by the tests."""
    if src.name.endswith(".xz"):
        with lzma.open(src) as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    else:
        shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


@pytest.fixture
def is_root() -> bool:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices and mounts")
    return True
