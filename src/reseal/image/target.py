"""`open_target`: one entry point for a directory, a raw disk image, a block device or a
virtual disk (qcow2, vmdk, vhdx, vhd). Operations see only the `Target` it yields."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from reseal.errors import BadInput, ResealError
from reseal.image.detect import detect_systems
from reseal.image.guestfs import ChangeListener, GuestFS
from reseal.image.lvm import LvmLayout
from reseal.image.model import DiskLayout, LinuxSystem, System, Volume, WindowsSystem
from reseal.journal import Journal


@dataclass
class OpenOptions:
    writable: bool = False
    dry_run: bool = False
    # NTFS that is hibernated or was not shut down cleanly is refused unless this is set;
    # even then it is mounted read-only unless `writable` and the user asked for it.
    allow_unclean_ntfs: bool = False
    journal: Journal | None = None
    listener: ChangeListener | None = None
    # backing files a qcow2/vmdk may use, each named by the user (--allow-backing); any other
    # file a container names is refused (see reseal.image.vdisk_header)
    allowed_backing: tuple[Path, ...] = ()


@dataclass
class Target:
    """An opened target. Valid only inside the `open_target` context."""

    source: Path
    kind: str  # "directory", "raw", "block", "qcow2", "vmdk", "vhdx", "vpc"
    options: OpenOptions
    layout: DiskLayout | None = None
    volumes: list[Volume] = field(default_factory=list)
    systems: list[System] = field(default_factory=list)
    raw_path: Path | None = None  # raw view of the whole disk while open
    warnings: list[str] = field(default_factory=list)
    lvm: LvmLayout | None = None  # LVM physical volumes, volume groups and where each LV is
    # set by the disk opener: takes volumes offline (see `offline`)
    offline_switch: Callable[[Sequence[Volume]], AbstractContextManager[None]] | None = None

    def offline(self, volumes: Sequence[Volume]) -> AbstractContextManager[None]:
        """Unmount `volumes` (and the bind mounts in the way) so that tools needing the bare
        file system can run on `volume.device`; everything is mounted back on exit, at the
        same places, so GuestFS objects stay valid. Unmounted volumes (swap) get a loop
        device for the duration."""
        if self.offline_switch is None:
            raise ResealError(f"{self.source}: a {self.kind} target has no block devices to "
                              "take offline; open the disk image instead")
        return self.offline_switch(volumes)

    @property
    def windows(self) -> list[WindowsSystem]:
        return [s for s in self.systems if isinstance(s, WindowsSystem)]

    @property
    def linux(self) -> list[LinuxSystem]:
        return [s for s in self.systems if isinstance(s, LinuxSystem)]

    def volume(self, key: str) -> Volume:
        for volume in self.volumes:
            if volume.key == key:
                return volume
        raise KeyError(key)


@contextlib.contextmanager
def open_target(source: str | Path, options: OpenOptions | None = None) -> Iterator[Target]:
    """Open `source`; every loop device, mount and FUSE process is released on exit."""
    options = options or OpenOptions()
    path = Path(source)
    if not path.exists():
        raise BadInput(f"{source}: no such file, block device or directory")
    if path.is_dir():
        yield _open_directory(path, options)
        return
    from reseal.image.disk import open_disk  # image files need the attach machinery

    with open_disk(path, options) as target:
        yield target


def _open_directory(path: Path, options: OpenOptions) -> Target:
    fs = GuestFS(
        path,
        key="root",
        read_only=not options.writable,
        journal=options.journal,
        dry_run=options.dry_run,
        listener=options.listener,
    )
    volume = Volume(key="root", fstype="dir", fs=fs, read_only=not options.writable)
    target = Target(source=path.resolve(), kind="directory", options=options, volumes=[volume])
    target.systems = detect_systems([volume])
    return target
