"""What an opened target holds: disk layout, volumes, and the operating systems found."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from reseal.image.guestfs import GuestFS


class OSFamily(enum.StrEnum):
    WINDOWS = "windows"
    LINUX = "linux"


@dataclass(frozen=True)
class Partition:
    """One entry of the partition table, as reseal parsed it (offsets in bytes)."""

    index: int  # 1-based, as Linux numbers them (logical MBR partitions start at 5)
    start: int
    size: int
    type_id: str  # GPT type GUID (lower case) or MBR type as "0x07"
    table: str  # "gpt" or "mbr"
    name: str = ""  # GPT partition name
    guid: str = ""  # GPT unique partition GUID (lower case)
    bootable: bool = False


@dataclass(frozen=True)
class DiskLayout:
    table: str  # "gpt", "mbr" or "none"
    sector_size: int
    size: int
    partitions: tuple[Partition, ...]
    disk_guid: str = ""  # GPT disk GUID
    mbr_signature: int | None = None  # 32-bit MBR disk signature


@dataclass
class Volume:
    """A file system found on the target (a partition, a whole raw disk, or a directory)."""

    key: str  # "root" for a directory target, "p1", "p2"... for partitions
    fstype: str  # "ntfs", "ext4", "xfs", "btrfs", "vfat", "swap", "dir", "" when unknown
    label: str = ""
    uuid: str = ""
    partition: Partition | None = None
    device: str = ""  # host block device while attached (e.g. /dev/loop3p2)
    fs: GuestFS | None = None  # set when mounted
    read_only: bool = True
    notes: list[str] = field(default_factory=list)


@dataclass
class WindowsSystem:
    """A Windows installation: the volume holding it and where its system root is."""

    volume: Volume
    system_root: str  # guest path, e.g. "/Windows" (case as found on disk)

    @property
    def fs(self) -> GuestFS:
        assert self.volume.fs is not None
        return self.volume.fs

    def hive_path(self, name: str) -> str | None:
        """Guest path of SYSTEM, SOFTWARE, SAM, SECURITY, DRIVERS, DEFAULT (case-insensitive)."""
        return self.fs.find_path(f"{self.system_root}/System32/config/{name}")


@dataclass
class LinuxSystem:
    """A Linux installation: its root file system (other fstab mounts are mounted below it)."""

    volume: Volume
    extra_volumes: dict[str, Volume] = field(default_factory=dict)  # mount point -> volume

    @property
    def fs(self) -> GuestFS:
        assert self.volume.fs is not None
        return self.volume.fs


System = WindowsSystem | LinuxSystem
