"""Mount one partition: a loop device over its byte range, then the right driver.

ext2/3/4, xfs, btrfs: the kernel. NTFS: ntfs-3g with `norecover`, refused when hibernated or
not shut down cleanly (unless allowed), and checked to really be read-write when asked.
FAT (the EFI system partition): reseal.image.fatfuse (pyfatfs), since this kernel has no vfat.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reseal.errors import Refused, ResealError
from reseal.image.attach import (
    FuseDaemon,
    FuseStartError,
    LoopDevice,
    attach_loop,
    mount_options_of,
    run,
    start_fuse,
    unmount,
)
from reseal.image.fsprobe import ntfs_state

HIBERNATION_MAGICS = (b"hibr", b"HIBR")
SAFE_OPTIONS = "nodev,nosuid,noexec"
KERNEL_RO_OPTIONS = {"ext2": "ro,noload", "ext3": "ro,noload", "ext4": "ro,noload",
                     "xfs": "ro,norecovery", "btrfs": "ro"}
HOW_TO_CLEAN = ("boot Windows and shut it down fully (shutdown /s /t 0, fast start-up off), or "
                "pass --allow-unclean-ntfs to open it anyway")


@dataclass(frozen=True)
class MountRequest:
    backing: Path  # raw disk (image file, FUSE export or block device)
    offset: int
    size: int
    fstype: str
    mountpoint: Path
    writable: bool
    allow_unclean_ntfs: bool
    where: str  # for messages: "disk.img partition 3"
    workdir: Path


@dataclass
class MountedVolume:
    device: str
    read_only: bool
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def mount_volume(request: MountRequest) -> Iterator[MountedVolume]:
    loop = attach_loop(request.backing, request.offset, request.size, not request.writable)
    try:
        if request.fstype == "ntfs":
            with _mount_ntfs(request, loop) as mounted:
                yield mounted
        elif request.fstype == "vfat":
            with _mount_fat(request, loop) as mounted:
                yield mounted
        elif request.fstype in KERNEL_RO_OPTIONS:
            with _mount_kernel(request, loop) as mounted:
                yield mounted
        else:
            raise ResealError(f"{request.where}: no driver for file system {request.fstype!r}")
    finally:
        loop.close()


def is_kernel_mounted(fstype: str) -> bool:
    """File systems the kernel mounts (and which can be unmounted and mounted again freely)."""
    return fstype in KERNEL_RO_OPTIONS


def mount_kernel_fs(request: MountRequest, device: str) -> None:
    """Mount `device` at the request's mount point with the kernel driver; raise on failure."""
    fstype = "ext4" if request.fstype.startswith("ext") else request.fstype
    mode = "rw" if request.writable else KERNEL_RO_OPTIONS[request.fstype]
    proc = run(["mount", "-t", fstype, "-o", f"{mode},{SAFE_OPTIONS}", device,
                str(request.mountpoint)], check=False)
    if proc.returncode != 0:
        raise ResealError(
            f"{request.where}: cannot mount the {request.fstype} file system: "
            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or proc.returncode}"
        )


@contextlib.contextmanager
def _mount_kernel(request: MountRequest, loop: LoopDevice) -> Iterator[MountedVolume]:
    mount_kernel_fs(request, loop.path)
    try:
        yield MountedVolume(device=loop.path, read_only=not request.writable)
    finally:
        unmount(request.mountpoint)


@contextlib.contextmanager
def _mount_fat(request: MountRequest, loop: LoopDevice) -> Iterator[MountedVolume]:
    """FAT through reseal's pyfatfs FUSE server (the kernel here has no vfat)."""
    argv = [sys.executable, "-m", "reseal.image.fatfuse", loop.path, str(request.mountpoint)]
    if request.writable:
        argv.append("--rw")
    daemon = start_fuse(argv, request.mountpoint, request.workdir / f"fat-{loop.path[5:]}.log")
    try:
        yield MountedVolume(device=loop.path, read_only=not request.writable)
    finally:
        daemon.stop()


@contextlib.contextmanager
def _mount_ntfs(request: MountRequest, loop: LoopDevice) -> Iterator[MountedVolume]:
    notes: list[str] = []

    def read(offset: int, length: int) -> bytes:
        with open(loop.path, "rb") as device:
            device.seek(offset)
            return device.read(length)

    state = ntfs_state(read, request.size, request.where)
    if state.dirty or not state.log_clean:
        why = "marked dirty" if state.dirty else "its $LogFile is not clean"
        if not request.allow_unclean_ntfs:
            raise Refused(f"{request.where}: NTFS was not shut down cleanly ({why}); {HOW_TO_CLEAN}")
        notes.append(f"NTFS was not shut down cleanly ({why}); opened because it was allowed")
    daemon = _start_ntfs3g(request, loop, request.writable, notes)
    try:
        options = mount_options_of(request.mountpoint) or []
        read_only = "ro" in options
        hibernated = _is_hibernated(request.mountpoint)
        if hibernated and not request.allow_unclean_ntfs:
            raise Refused(f"{request.where}: Windows is hibernated on this NTFS volume; {HOW_TO_CLEAN}")
        if hibernated:
            notes.append("Windows is hibernated on this volume; opened because it was allowed")
        if request.writable and read_only:
            if not request.allow_unclean_ntfs:
                raise Refused(
                    f"{request.where}: ntfs-3g mounted the volume read-only (unsafe state); "
                    + HOW_TO_CLEAN
                )
            notes.append("ntfs-3g would only mount it read-only; nothing can be written to it")
        yield MountedVolume(device=loop.path, read_only=read_only, notes=notes)
    finally:
        daemon.stop()


def _start_ntfs3g(request: MountRequest, loop: LoopDevice, writable: bool,
                  notes: list[str]) -> FuseDaemon:
    options = ["norecover", "no_detach", "nodev", "nosuid", "noexec"]
    if not writable:
        options.append("ro")
    argv = ["ntfs-3g", "-o", ",".join(options), loop.path, str(request.mountpoint)]
    log = request.workdir / f"ntfs-3g-{loop.path[5:]}.log"
    try:
        return start_fuse(argv, request.mountpoint, log)
    except FuseStartError as exc:
        text = exc.output.lower()
        unsafe = "hibernat" in text or "unclean" in text or "scheduled for check" in text
        if unsafe and not request.allow_unclean_ntfs:
            raise Refused(
                f"{request.where}: ntfs-3g refuses the volume ({exc}); {HOW_TO_CLEAN}"
            ) from None
        if unsafe and writable:
            notes.append(f"ntfs-3g refused a read-write mount ({exc}); mounted read-only")
            return _start_ntfs3g(request, loop, False, notes)
        raise


def _is_hibernated(mountpoint: Path) -> bool:
    try:
        names = [n for n in mountpoint.iterdir() if n.name.lower() == "hiberfil.sys"]
    except OSError:
        return False
    for name in names:
        if name.is_symlink() or not name.is_file():
            continue
        with contextlib.suppress(OSError), open(name, "rb") as handle:
            if handle.read(4) in HIBERNATION_MAGICS:
                return True
    return False
