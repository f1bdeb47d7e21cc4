"""Sample disk images built once per session, and a leak check after every test."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import copy_maybe_xz

from reseal.samples import build_linux_gpt, build_linux_mbr, build_qcow2, build_windows_gpt
from reseal.samples.builders import SampleImage, build_windows_mbr

FUSE_DAEMONS = ("ntfs-3g", "reseal.image.fatfuse", "qemu-storage-daemon")


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices and mounts")


def _decompress(src: Path, dst: Path) -> Path:
    copy_maybe_xz(src, dst)
    return dst


@pytest.fixture(scope="session", autouse=True)
def reseal_tempdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """reseal's work directories (mount points, FUSE exports) go below the test's base temp,
    so the leak check can tell this session's loops and mounts from anyone else's."""
    work = tmp_path_factory.getbasetemp() / "work"
    work.mkdir(exist_ok=True)
    old = tempfile.tempdir
    old_env = os.environ.get("RESEAL_WORK_DIR")
    tempfile.tempdir = str(work)
    os.environ["RESEAL_WORK_DIR"] = str(work)
    yield work
    tempfile.tempdir = old
    if old_env is None:
        os.environ.pop("RESEAL_WORK_DIR", None)
    else:
        os.environ["RESEAL_WORK_DIR"] = old_env


@pytest.fixture(scope="session")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_root()
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def win_hives(shared_dir: Path, images_dir: Path) -> dict[str, Path]:
    """SYSTEM (regipy, WKS-WIN732BITA) + SAM/SECURITY (dfwinreg, STUDENT-PC8), copied out."""
    out = images_dir / "hives-gpt"
    out.mkdir()
    hives = shared_dir / "hives"
    return {
        "SYSTEM": _decompress(hives / "regipy" / "SYSTEM.xz", out / "SYSTEM"),
        "SAM": _decompress(hives / "dfwinreg" / "SAM", out / "SAM"),
        "SECURITY": _decompress(hives / "dfwinreg" / "SECURITY", out / "SECURITY"),
    }


@pytest.fixture(scope="session")
def win7_hives(shared_dir: Path, images_dir: Path) -> dict[str, Path]:
    """SYSTEM_2 (SENSEI, AMD64) + Win7-EZ SAM/SECURITY (2JQQWP1)."""
    out = images_dir / "hives-mbr"
    out.mkdir()
    hives = shared_dir / "hives"
    museum = hives / "dfir-artifact-museum" / "Win7-EZ"
    return {
        "SYSTEM": _decompress(hives / "regipy" / "SYSTEM_2.xz", out / "SYSTEM"),
        "SAM": _decompress(museum / "SAM", out / "SAM"),
        "SECURITY": _decompress(museum / "SECURITY", out / "SECURITY"),
    }


@pytest.fixture(scope="session")
def windows_gpt(images_dir: Path, win_hives: dict[str, Path]) -> SampleImage:
    return build_windows_gpt(images_dir / "windows-gpt.img", win_hives)


@pytest.fixture(scope="session")
def windows_mbr(images_dir: Path, win7_hives: dict[str, Path]) -> SampleImage:
    return build_windows_mbr(images_dir / "windows-mbr.img", win7_hives)


@pytest.fixture(scope="session")
def linux_gpt(images_dir: Path) -> SampleImage:
    return build_linux_gpt(images_dir / "linux-gpt.img")


@pytest.fixture(scope="session")
def linux_mbr(images_dir: Path) -> SampleImage:
    return build_linux_mbr(images_dir / "linux-mbr.img")


@pytest.fixture(scope="session")
def linux_qcow2(images_dir: Path, linux_gpt: SampleImage) -> SampleImage:
    return build_qcow2(linux_gpt, images_dir / "linux-gpt.qcow2")


@pytest.fixture(scope="session")
def windows_qcow2(images_dir: Path, windows_gpt: SampleImage) -> SampleImage:
    return build_qcow2(windows_gpt, images_dir / "windows-gpt.qcow2")


def leftovers(under: Path) -> list[str]:
    """Loop devices backed by files below `under`, reseal mounts, and FUSE daemons of ours."""
    found = []
    loops = subprocess.run(["losetup", "-a", "--noheadings", "-O", "NAME,BACK-FILE"],
                           capture_output=True, text=True).stdout
    for line in loops.splitlines():
        if str(under) in line:
            found.append(f"loop: {line.strip()}")
    for table in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
        with open(table) as handle:
            for line in handle:
                mountpoint = line.split()[4]
                if str(under) in mountpoint:
                    found.append(f"mount: {mountpoint}")
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if any(d in cmdline for d in FUSE_DAEMONS) and (ppid == me or str(under) in cmdline):
            found.append(f"process: {entry.name} {cmdline.strip()}")
    return found


@pytest.fixture(autouse=True)
def no_leaks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    base = tmp_path_factory.getbasetemp()
    assert leftovers(base) == []
