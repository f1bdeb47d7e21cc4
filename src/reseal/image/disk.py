"""Open a disk image file or block device as a `Target`.

container (raw | qemu FUSE export) -> reseal's partition parser -> one autoclear loop device
per partition -> a mount per known file system (kernel, ntfs-3g, pyfatfs FUSE) -> GuestFS -> systems.
Everything runs in a private mount namespace and is released in reverse order on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from reseal.errors import BadInput, CorruptData, ResealError
from reseal.image.attach import (
    FuseStartError,
    attach_loop,
    enter_private_mount_namespace,
    mount_options_of,
    refuse_if_in_use,
    run,
    unmount,
    unmount_strict,
)
from reseal.image.container import QEMU_FORMATS, detect_format, qemu_raw_export
from reseal.image.detect import detect_systems
from reseal.image.fsprobe import ReadFn, probe
from reseal.image.fstab import parse_fstab
from reseal.image.guestfs import GuestFS
from reseal.image.lvm import LvmLayout, scan_lvm
from reseal.image.model import DiskLayout, LinuxSystem, Partition, Volume
from reseal.image.partitions import read_layout
from reseal.image.parttypes import NEVER_MOUNTED
from reseal.image.target import OpenOptions, Target
from reseal.image.volumes import MountRequest, is_kernel_mounted, mount_kernel_fs, mount_volume

SKIPPED_TYPES = NEVER_MOUNTED  # never hold a file system worth mounting
# fstab mount points bound below the root: boot files, and the trees where identity and
# hygiene operations work (separate logical volumes in many LVM layouts)
BIND_MOUNT_POINTS = ("/boot", "/boot/efi", "/efi", "/var", "/var/lib", "/var/log",
                     "/var/log/audit", "/var/tmp", "/tmp", "/home")
LVM_MEMBER = "LVM2_member"
LV_TABLE = "lvm"


@contextlib.contextmanager
def open_disk(path: Path, options: OpenOptions) -> Iterator[Target]:
    """Open a raw/virtual disk image or a block device; release everything on exit."""
    path = Path(os.path.abspath(path))
    kind = detect_format(path)
    if kind == "raw" and path.stat().st_size == 0:
        raise BadInput(f"{path}: the file is empty; expected a disk image")
    refuse_if_in_use(path)
    enter_private_mount_namespace()
    workdir = Path(tempfile.mkdtemp(prefix="reseal-"))
    try:
        with contextlib.ExitStack() as stack:
            raw_path = path
            if kind in QEMU_FORMATS:
                raw_path = stack.enter_context(
                    qemu_raw_export(path, kind, options.writable and not options.dry_run, workdir,
                                    options.allowed_backing)
                )
            target = Target(source=path, kind=kind, options=options, raw_path=raw_path)
            mounts = MountTable(target)
            target.offline_switch = mounts.offline
            stream = stack.enter_context(open(raw_path, "rb"))
            size = _size_of(stream)
            target.layout = read_layout(stream, size, str(path))
            volumes = _volumes(target.layout, stream, size)
            target.lvm = _scan_lvm(stream, volumes, path)
            volumes += _logical_volumes(target, stream)
            for volume in volumes:
                target.volumes.append(volume)
                _mount(stack, target, volume, workdir, mounts)
            target.systems = detect_systems([v for v in target.volumes if v.fs is not None])
            for system in target.linux:
                _mount_fstab_volumes(stack, target, system, mounts)
            yield target
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _size_of(stream: BinaryIO) -> int:
    stream.seek(0, os.SEEK_END)
    return stream.tell()


def _volumes(layout: DiskLayout, stream: BinaryIO, disk_size: int) -> list[Volume]:
    if layout.table == "none":
        whole = Partition(index=0, start=0, size=disk_size, type_id="", table="none")
        info = probe(_reader(stream, 0), disk_size)
        return [Volume(key="disk", fstype=info.fstype, label=info.label, uuid=info.uuid,
                       partition=whole)]
    volumes = []
    for part in layout.partitions:
        info = probe(_reader(stream, part.start), part.size)
        volumes.append(Volume(key=f"p{part.index}", fstype=info.fstype, label=info.label,
                              uuid=info.uuid, partition=part))
    return volumes


def _scan_lvm(stream: BinaryIO, volumes: list[Volume], path: Path) -> LvmLayout:
    """Read the LVM metadata of every volume no file system claimed; mark the PVs."""
    candidates = [(v.key, v.partition.start, v.partition.size) for v in volumes
                  if not v.fstype and v.partition is not None]
    layout = scan_lvm(_reader(stream, 0), candidates, str(path))
    for pv in layout.physical_volumes:
        for volume in volumes:
            if volume.key == pv.volume:
                volume.fstype, volume.uuid = LVM_MEMBER, pv.label.uuid
    return layout


def _logical_volumes(target: Target, stream: BinaryIO) -> list[Volume]:
    """One volume per linear logical volume, at its byte range on the disk; the LVs reseal
    cannot attach without device-mapper are named in the target's warnings, with the reason."""
    assert target.lvm is not None
    target.warnings.extend(f"LVM: {problem}" for problem in target.lvm.problems)
    volumes = []
    for group in target.lvm.groups:
        if group.problem:
            target.warnings.append(f"LVM volume group {group.name}: {group.problem}")
        for place in group.placements:
            if place.reason:
                target.warnings.append(f"LVM {place.vg}/{place.lv.name}: not opened: "
                                       f"{place.reason}")
                continue
            part = Partition(index=0, start=place.start, size=place.size, type_id=LV_TABLE,
                             table=LV_TABLE, name=f"{place.vg}/{place.lv.name}")
            info = probe(_reader(stream, place.start), place.size)
            volumes.append(Volume(key=place.mapper_name, fstype=info.fstype, label=info.label,
                                  uuid=info.uuid, partition=part))
    return volumes


def _reader(stream: BinaryIO, base: int) -> ReadFn:
    def read(offset: int, length: int) -> bytes:
        stream.seek(base + offset)
        data = stream.read(length)
        if len(data) != length:
            raise CorruptData(f"short read at byte {base + offset}: the image is truncated")
        return data

    return read


@dataclass
class MountTable:
    """What `open_disk` mounted, so that volumes can be taken offline and brought back."""

    target: Target
    requests: dict[str, MountRequest] = field(default_factory=dict)  # kernel mounts by volume
    binds: dict[Path, Path] = field(default_factory=dict)  # bind point -> source, mount order

    def bind(self, source: Path, host_dir: Path) -> None:
        run(["mount", "--bind", str(source), str(host_dir)])
        self.binds[host_dir] = source

    @contextlib.contextmanager
    def offline(self, volumes: Sequence[Volume]) -> Iterator[None]:
        for volume in volumes:
            if volume.fs is not None and volume.key not in self.requests:
                raise ResealError(f"{volume.key}: a {volume.fstype} volume mounted through FUSE "
                                  "cannot be taken offline")
            if volume.fs is None and volume.partition is None:
                raise ResealError(f"{volume.key}: no partition to attach")
        if self.target.options.dry_run:
            yield
            return
        unmounted: list[Volume] = []
        loops = []
        try:
            for host_dir in reversed(self.binds):
                unmount_strict(host_dir)
            for volume in volumes:
                if volume.fs is not None:
                    unmount_strict(self.requests[volume.key].mountpoint)
                    unmounted.append(volume)
                elif volume.partition is not None and self.target.raw_path is not None:
                    loop = attach_loop(self.target.raw_path, volume.partition.start,
                                       volume.partition.size, read_only=False)
                    loops.append(loop)
                    volume.device = loop.path
            yield
        finally:
            for loop in loops:
                loop.close()
            for volume in volumes:
                if volume.fs is None:
                    volume.device = ""
            for volume in unmounted:  # a failure here must stop the run: see _remount
                _remount(self.requests[volume.key], volume)
            for host_dir, source in self.binds.items():
                if mount_options_of(host_dir) is None:
                    self.bind(source, host_dir)


def _remount(request: MountRequest, volume: Volume) -> None:
    """Mount a volume back where it was; if that fails the run must not go on writing into
    the empty mount point (that would be the host's temporary directory)."""
    try:
        mount_kernel_fs(request, volume.device)
    except ResealError as exc:
        raise ResealError(f"{exc}; it was unmounted to change it and could not be mounted "
                          "again; the run stopped here") from None


def _mount(stack: contextlib.ExitStack, target: Target, volume: Volume, workdir: Path,
           mounts: MountTable) -> None:
    part = volume.partition
    assert part is not None and target.raw_path is not None
    if part.type_id in SKIPPED_TYPES or volume.fstype in ("", "swap", LVM_MEMBER):
        return
    options = target.options
    request = MountRequest(
        backing=target.raw_path,
        offset=part.start,
        size=part.size,
        fstype=volume.fstype,
        mountpoint=workdir / volume.key,
        writable=options.writable and not options.dry_run,
        allow_unclean_ntfs=options.allow_unclean_ntfs,
        where=(f"{target.source} LV {part.name}" if part.table == LV_TABLE else
               f"{target.source} partition {part.index}" if part.index else str(target.source)),
        workdir=workdir,
    )
    request.mountpoint.mkdir()
    try:
        mounted = stack.enter_context(mount_volume(request))
    except FuseStartError as exc:
        if volume.fstype != "vfat":
            raise
        # an unreadable ESP should not hide the system next to it: say so and go on
        volume.notes.append(f"not mounted: {exc}")
        target.warnings.append(f"{volume.key}: FAT volume not mounted: {exc}")
        return
    volume.device = mounted.device
    volume.read_only = mounted.read_only
    if is_kernel_mounted(volume.fstype):
        mounts.requests[volume.key] = request
    volume.notes.extend(mounted.notes)
    target.warnings.extend(f"{volume.key}: {note}" for note in mounted.notes)
    volume.fs = GuestFS(
        request.mountpoint,
        key=volume.key,
        read_only=not options.writable or mounted.read_only and not options.dry_run,
        journal=options.journal,
        dry_run=options.dry_run,
        listener=options.listener,
    )


def _mount_fstab_volumes(stack: contextlib.ExitStack, target: Target, system: LinuxSystem,
                         mounts: MountTable) -> None:
    """Bind the image's /boot and /boot/efi volumes below its root, as fstab says."""
    fs = system.fs
    try:
        text = fs.read_text("/etc/fstab")
    except (OSError, ResealError):
        return
    entries = sorted(parse_fstab(text), key=lambda e: e.mountpoint.count("/"))
    for entry in entries:
        if entry.mountpoint not in BIND_MOUNT_POINTS:
            continue
        volume = _volume_for_spec(target, entry.spec)
        if volume is None or volume.fs is None or volume is system.volume:
            continue
        try:
            host_dir = fs.resolve(entry.mountpoint)
        except ResealError as exc:
            target.warnings.append(f"fstab {entry.mountpoint}: {exc}")
            continue
        if host_dir.is_symlink() or not host_dir.is_dir():
            target.warnings.append(
                f"fstab {entry.mountpoint}: no such directory in the image; not mounted"
            )
            continue
        mounts.bind(volume.fs.root, host_dir)
        stack.callback(unmount, host_dir)
        system.extra_volumes[entry.mountpoint] = volume


def _volume_for_spec(target: Target, spec: str) -> Volume | None:
    key, _, value = spec.partition("=")
    if spec.startswith("/dev/disk/by-uuid/"):
        key, value = "UUID", spec.rsplit("/", 1)[1]
    elif spec.startswith("/dev/disk/by-label/"):
        key, value = "LABEL", spec.rsplit("/", 1)[1]
    elif spec.startswith("/dev/disk/by-partuuid/"):
        key, value = "PARTUUID", spec.rsplit("/", 1)[1]
    logical = _logical_volume_for_spec(target, spec)
    if logical is not None:
        return logical
    for volume in target.volumes:
        part = volume.partition
        if key == "UUID" and volume.uuid and volume.uuid.lower() == value.lower():
            return volume
        if key == "LABEL" and volume.label and volume.label == value:
            return volume
        if key == "PARTUUID" and part is not None and part.guid and part.guid == value.lower():
            return volume
    return None


def _logical_volume_for_spec(target: Target, spec: str) -> Volume | None:
    """/dev/mapper/VG-LV, /dev/VG/LV and the udev by-id names of a logical volume."""
    for volume in target.volumes:
        part = volume.partition
        if part is None or part.table != LV_TABLE:
            continue
        vg, lv = part.name.split("/", 1)
        if spec in (f"/dev/mapper/{volume.key}", f"/dev/{vg}/{lv}",
                    f"/dev/disk/by-id/dm-name-{volume.key}"):
            return volume
    return None


def rescan_lvm(target: Target) -> LvmLayout:
    """Read the LVM metadata of the target's PVs again (after reseal rewrote it)."""
    assert target.raw_path is not None
    candidates = [(v.key, v.partition.start, v.partition.size) for v in target.volumes
                  if v.fstype == LVM_MEMBER and v.partition is not None]
    with open(target.raw_path, "rb") as stream:
        layout = scan_lvm(_reader(stream, 0), candidates, str(target.source))
    for pv in layout.physical_volumes:
        target.volume(pv.volume).uuid = pv.label.uuid
    target.lvm = layout
    return layout
