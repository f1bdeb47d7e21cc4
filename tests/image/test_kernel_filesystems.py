"""xfs and btrfs partitions go through the kernel on loop devices, read-only or read-write."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from reseal.image.target import OpenOptions, open_target

MIB = 1 << 20


def _mkfs_at(image: Path, offset: int, size: int, argv: list[str]) -> None:
    device = subprocess.run(["losetup", "--find", "--show", "-o", str(offset), "--sizelimit",
                             str(size), str(image)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        subprocess.run([*argv, device], capture_output=True, check=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


@pytest.fixture
def xfs_btrfs_disk(tmp_path: Path) -> tuple[Path, str, str]:
    image = tmp_path / "kernelfs.img"
    with open(image, "wb") as handle:
        handle.truncate(480 * MIB)
    subprocess.run(["sfdisk", "-q", str(image)], check=True, text=True, input=(
        "label: gpt\nstart=2048, size=614400, type=linux\nstart=616448, size=360448, type=linux\n"
    ))
    xfs_uuid, btrfs_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    _mkfs_at(image, 1 * MIB, 300 * MIB, ["mkfs.xfs", "-q", "-f", "-L", "xdata", "-m",
                                          f"uuid={xfs_uuid}"])
    _mkfs_at(image, 301 * MIB, 176 * MIB,
             ["mkfs.btrfs", "-q", "-f", "-L", "bdata", "-U", btrfs_uuid])
    return image, xfs_uuid, btrfs_uuid


@pytest.mark.usefixtures("is_root")
def test_xfs_and_btrfs(xfs_btrfs_disk: tuple[Path, str, str]) -> None:
    image, xfs_uuid, btrfs_uuid = xfs_btrfs_disk
    with open_target(image, OpenOptions(writable=True)) as target:
        xfs, btrfs = target.volume("p1"), target.volume("p2")
        assert (xfs.fstype, xfs.label, xfs.uuid) == ("xfs", "xdata", xfs_uuid)
        assert (btrfs.fstype, btrfs.label, btrfs.uuid) == ("btrfs", "bdata", btrfs_uuid)
        for volume in (xfs, btrfs):
            assert volume.fs is not None and not volume.read_only
            volume.fs.write_text("/marker", f"{volume.fstype}\n")
    with open_target(image) as target:
        for key, fstype in (("p1", "xfs"), ("p2", "btrfs")):
            fs = target.volume(key).fs
            assert fs is not None and fs.read_text("/marker") == f"{fstype}\n"
            assert target.volume(key).read_only
