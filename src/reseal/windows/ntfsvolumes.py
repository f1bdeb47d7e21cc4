"""The NTFS volumes that belong to one Windows installation of a target.

A Windows machine's files live on its system volume and on every other local NTFS partition of
the disk (data volumes, "System Reserved", recovery). A volume that holds another Windows
installation belongs to that one. Each comes with a short label for reports.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass

from reseal.fileio import path_xattr
from reseal.image.guestfs import GuestFS
from reseal.image.model import Volume, WindowsSystem
from reseal.image.target import Target

ACL_XATTR = "system.ntfs_acl"


@dataclass(frozen=True)
class MachineVolume:
    volume: Volume
    fs: GuestFS
    is_system: bool

    @property
    def label(self) -> str:
        name = self.volume.label or ("system volume" if self.is_system else "data volume")
        return f"{self.volume.key} ({name})"


WINDOWS_FILE_SYSTEMS = ("ntfs", "vfat", "exfat")


def machine_volumes(target: Target, system: WindowsSystem, *, ntfs_only: bool = True
                    ) -> list[MachineVolume]:
    """The system volume first, then each other mounted volume no other system holds: NTFS
    only, or (`ntfs_only=False`) the file systems Windows uses (a Linux root of a dual-boot
    disk is never one of them)."""
    others = {id(s.volume) for s in target.systems if s is not system}
    kinds = ("ntfs",) if ntfs_only else WINDOWS_FILE_SYSTEMS
    found = [MachineVolume(system.volume, system.fs, True)]
    for volume in target.volumes:
        if volume is system.volume or id(volume) in others or volume.fs is None:
            continue
        if volume.fstype not in kinds:
            continue
        found.append(MachineVolume(volume, volume.fs, False))
    return found


def walk_entries(fs: GuestFS) -> Iterator[str]:
    """Every file and directory of a volume (guest paths), links never followed."""
    for directory, dirnames, filenames in fs.walk("/"):
        base = directory.rstrip("/")
        for name in [*dirnames, *filenames]:
            yield f"{base}/{name}"


def read_acl(fs: GuestFS, guest: str) -> bytes | None:
    """The NTFS security descriptor of `guest` (None: a link, or no descriptor exposed)."""
    host = fs.resolve(guest, follow_last=False)
    if os.path.islink(host):
        return None
    try:
        return path_xattr(host, ACL_XATTR)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.EOPNOTSUPP, errno.ENOENT):
            return None
        raise
