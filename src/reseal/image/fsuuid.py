"""Change a file system's UUID with the host's own tools, on an unmounted block device.

ext2/3/4: `tune2fs -U` (with metadata_csum it rewrites every checksum, and it insists on a
freshly checked file system, so `e2fsck -f -p` runs first; preen mode fixes only what is safe
to fix unattended and stops otherwise). xfs: `xfs_admin -U` (v5 file systems keep the old
UUID as meta_uuid, as the kernel expects). btrfs: `btrfstune -U`, which rewrites the fsid in
all metadata (not `-M`, which GRUB before 2.12 cannot read). swap: `swaplabel -U`.
Every tool comes from the host's PATH, never from the image.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from reseal.errors import ResealError
from reseal.image.attach import run

EXT = ("ext2", "ext3", "ext4")
TOOLS = {**{fstype: ("e2fsck", "tune2fs") for fstype in EXT}, "xfs": ("xfs_admin",),
         "btrfs": ("btrfstune",), "swap": ("swaplabel",)}
UUID_CAPABLE = tuple(TOOLS)
TOOL_PACKAGES = {"tune2fs": "e2fsprogs", "e2fsck": "e2fsprogs", "xfs_admin": "xfsprogs",
                 "btrfstune": "btrfs-progs", "swaplabel": "util-linux"}


@dataclass(frozen=True)
class UuidChange:
    device: str  # host block device (a loop device while the image is open)
    fstype: str
    uuid: str
    where: str  # for messages: "disk.img partition 2"
    csum_seed: bool = False  # ext4: add metadata_csum_seed instead of rewriting checksums
    # ext: tune2fs saves every block it overwrites here first (e2undo reverses an interrupted
    # checksum rewrite, which tune2fs itself cannot resume)
    undo_file: Path | None = None


def missing_tools(fstype: str) -> list[str]:
    return [f"{tool} ({TOOL_PACKAGES[tool]})" for tool in TOOLS.get(fstype, ())
            if shutil.which(tool) is None]


def set_fs_uuid(change: UuidChange) -> None:
    """Give the (unmounted) file system on `change.device` the UUID `change.uuid`."""
    if change.fstype not in UUID_CAPABLE:
        raise ResealError(f"{change.where}: no tool to change the UUID of {change.fstype!r}")
    missing = missing_tools(change.fstype)
    if missing:
        raise ResealError(f"{change.where}: {', '.join(missing)} not installed on this host")
    if change.fstype in EXT:
        _run(["e2fsck", "-f", "-p", change.device], change, "e2fsck found problems it will "
             "not fix unattended; check the file system (e2fsck -f) and run again",
             ok_codes=(0, 1))
        extra = ["-O", "metadata_csum_seed"] if change.csum_seed else []
        if change.undo_file is not None:
            change.undo_file.unlink(missing_ok=True)
            extra += ["-z", str(change.undo_file)]
        _run(["tune2fs", *extra, "-U", change.uuid, change.device], change, "tune2fs refused")
    elif change.fstype == "xfs":
        _run(["xfs_admin", "-U", change.uuid, change.device], change, "xfs_admin refused "
             "(a dirty log needs the file system mounted once, or xfs_repair)")
    elif change.fstype == "btrfs":
        _run(["btrfstune", "-f", "-U", change.uuid, change.device], change, "btrfstune refused")
    else:
        _run(["swaplabel", "-U", change.uuid, change.device], change, "swaplabel refused")


def _run(argv: list[str], change: UuidChange, meaning: str, ok_codes: tuple[int, ...] = (0,)
         ) -> None:
    done = run(argv, check=False, timeout=600)
    if done.returncode not in ok_codes:
        detail = " ".join((done.stderr or done.stdout).split())[:240]
        raise ResealError(f"{change.where} ({change.fstype}): {meaning}: {argv[0]} exit "
                          f"{done.returncode}: {detail}")
