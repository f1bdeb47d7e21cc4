"""Fixtures for driver staging: real SYSTEM hives in directory targets, packages built from
the real INF files with placeholder binaries."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import copy_shared_hive

from reseal.drivers.inf import load_inf

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "drivers"
PLACEHOLDER = b"PLACEHOLDER binary written by reseal tests; not a driver.\n"

# name -> (fixture file under hives/regipy, Windows label)
HIVES = {
    "win7": "SYSTEM.xz",  # Windows 7 x86, CriticalDeviceDatabase, ControlSet001+002
    "win81": "SYSTEM_2.xz",  # Windows 8.1 amd64 (DriverDatabase 6.3, inbox build 9600)
    "win10": "SYSTEM_WIN_10_1709.xz",  # Windows 10 amd64, DriverDatabase, clean copy
    "win10b": "SYSTEM_B.xz",  # Windows 10 amd64, DriverDatabase, with logs
}


@dataclass
class Image:
    root: Path
    pristine: Path  # the SYSTEM hive as copied in, before reseal touched it

    @property
    def config(self) -> Path:
        return self.root / "Windows" / "System32" / "config"

    @property
    def system(self) -> Path:
        return self.config / "SYSTEM"

    @property
    def drivers(self) -> Path:
        return self.config / "DRIVERS"


@pytest.fixture(scope="session")
def hive_cache(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each real SYSTEM hive decompressed once per session (with its logs beside it)."""
    out: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("hives")
    for name, file_name in HIVES.items():
        src = shared_dir / "hives" / "regipy" / file_name
        if not src.exists():
            pytest.skip(f"{src} is absent")
        out[name] = copy_shared_hive(src, base / name, "SYSTEM")
    return out


@pytest.fixture
def make_image(hive_cache: dict[str, Path], tmp_path: Path):  # type: ignore[no-untyped-def]
    """make_image("win10") -> a directory target holding a copy of that SYSTEM hive."""

    def build(name: str) -> Image:
        root = tmp_path / f"img-{name}"
        config = root / "Windows" / "System32" / "config"
        config.mkdir(parents=True)
        (root / "Windows" / "INF").mkdir()
        (root / "Windows" / "System32" / "drivers").mkdir()
        for item in hive_cache[name].parent.iterdir():
            shutil.copyfile(item, config / item.name)
        return Image(root, hive_cache[name])

    return build


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file below root (relative path -> digest)."""
    digests = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def stamp(text: str, arch: str) -> str:
    """What stampinf does to the templates' placeholders (enough for tests)."""
    return (text.replace("$ARCH$", arch).replace("$KMDFVERSION$", "1.15")
            .replace("$KMDFCOINSTALLERVERSION$", "01011"))


def package_from_inf(source: Path, dest: Path, *, arch: str | None = None,
                     text: str | None = None) -> Path:
    """Copy an INF into `dest` (stamped for `arch` when given) and write a placeholder file
    for its catalog(s) and every file its install sections copy. Returns the INF path."""
    dest.mkdir(parents=True, exist_ok=True)
    inf_path = dest / (source.stem + ".inf")
    if text is not None:
        inf_path.write_text(text)
    elif arch is not None:
        inf_path.write_bytes(stamp(source.read_text(), arch).encode())
    else:
        shutil.copyfile(source, inf_path)
    inf = load_inf(inf_path)
    for name in inf.version().catalog_files.values():
        if name:
            (dest / name).write_bytes(PLACEHOLDER + b"catalog " + name.encode() + b"\n")
    for section_name in list(inf.sections):
        for key, fields, _n in inf.entries(section_name):
            if key is None or key.lower() != "copyfiles":
                continue
            for item in fields:
                if not item or item.startswith("@") or not inf.has_section(item):
                    continue
                for entry in inf.copy_files_section(item):
                    for arch_name in ("", "x86", "amd64", "arm64", "ia64"):
                        found = inf.source_files(arch_name).get(entry.source.lower())
                        disks = inf.source_disk_paths(arch_name)
                        subdir = ""
                        if found is not None:
                            disk = disks.get(found.disk_id, ("", 0))[0].strip("\\")
                            subdir = "\\".join(p for p in (disk, found.subdir.strip("\\")) if p)
                        target = dest.joinpath(*[p for p in subdir.split("\\") if p],
                                               entry.source)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(PLACEHOLDER + entry.source.encode() + b"\n")
    return inf_path
