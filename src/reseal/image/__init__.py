"""The image layer: open a directory, raw disk or virtual disk as one `Target`.

container (file, block device, qcow2 via FUSE) -> partitions (reseal's own MBR/GPT parser)
-> volumes (loop devices, ntfs-3g, kernel mounts, FAT) -> systems (Windows, Linux).
"""

from reseal.image.guestfs import FileChange, GuestFS
from reseal.image.model import (
    DiskLayout,
    LinuxSystem,
    OSFamily,
    Partition,
    System,
    Volume,
    WindowsSystem,
)

__all__ = [
    "DiskLayout",
    "FileChange",
    "GuestFS",
    "LinuxSystem",
    "OSFamily",
    "Partition",
    "System",
    "Volume",
    "WindowsSystem",
]
