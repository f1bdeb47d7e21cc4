"""Mount one partition: a loop device over its byte range, then the right driver, read-only
until the first write to it is due.

ext2/3/4, xfs, btrfs: the kernel. NTFS: ntfs-3g with `norecover`, refused when hibernated or
not shut down cleanly (unless allowed), and checked to really be read-write when asked.
FAT (the EFI system partition): reseal.image.fatfuse (pyfatfs), since this kernel has no vfat.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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
    unmount_strict,
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
    writable: bool  # may be mounted read-write later (its loop device is read-write)
    allow_unclean_ntfs: bool
    where: str  # for messages: "disk.img partition 3"
    workdir: Path


class VolumeMount:
    """One partition on its own loop device, mounted at `request.mountpoint`.

    It is mounted read-only first, whatever the run means to do: a run that is refused, or
    that has nothing to change on this volume, leaves every byte of it as it was (a
    read-write mount alone changes an ext4 mount count and journal, NTFS metadata and a FAT
    FSInfo sector). `mount(writable=True)` again when the first write to it is due.
    """

    def __init__(self, request: MountRequest, loop: LoopDevice) -> None:
        self.request = request
        self.loop = loop
        self.notes: list[str] = []
        self.mounted = False
        self.writable = False  # mounted read-write now
        self._daemon: FuseDaemon | None = None
        self._checked = False  # the first mount's checks (NTFS state, hibernation) are done
        # an NTFS volume in an unsafe state opened because it was allowed: ntfs-3g only ever
        # mounts it read-only, so it is known from the start that nothing can be written
        self.stays_read_only = False

    @property
    def device(self) -> str:
        return self.loop.path

    @property
    def kernel(self) -> bool:
        return is_kernel_mounted(self.request.fstype)

    def mount(self, writable: bool) -> None:
        request = self.request
        if writable and (not request.writable or self.stays_read_only):
            raise ResealError(f"{request.where}: mounted read-only; nothing can be written "
                              "to it")
        if request.fstype == "ntfs":
            self._mount_ntfs(writable)
        elif request.fstype == "vfat":
            self._daemon = _start_fat(request, self.loop, writable)
        elif request.fstype in KERNEL_RO_OPTIONS:
            mount_kernel_fs(request, self.loop.path, writable=writable)
        else:
            raise ResealError(f"{request.where}: no driver for file system {request.fstype!r}")
        self.mounted = True
        self.writable = writable

    def unmount(self) -> None:
        """Unmount now, or raise: the mount point must never be left to a lazy unmount while
        the same file system is mounted again (two writers on one device)."""
        if self._daemon is not None:
            unmount_strict(self.request.mountpoint)
            self._daemon.stop()
            self._daemon = None
        else:
            unmount_strict(self.request.mountpoint)
        self.mounted = False
        self.writable = False

    def release(self) -> None:
        """Unmount on every exit path (never raises)."""
        if self._daemon is not None:
            self._daemon.stop()
            self._daemon = None
        else:
            unmount(self.request.mountpoint)
        self.mounted = False

    def _mount_ntfs(self, writable: bool) -> None:
        request = self.request
        first = not self._checked
        unclean = first and self._unclean_ntfs()
        notes: list[str] = []
        self._daemon = _start_ntfs3g(request, self.loop, writable, notes)
        self.notes.extend(n for n in notes if n not in self.notes)
        options = mount_options_of(request.mountpoint) or []
        if first:
            hibernated = _is_hibernated(request.mountpoint)
            if hibernated and not request.allow_unclean_ntfs:
                self.release()
                raise Refused(f"{request.where}: Windows is hibernated on this NTFS volume; "
                              f"{HOW_TO_CLEAN}")
            if hibernated:
                self.notes.append("Windows is hibernated on this volume; opened because it was "
                                  "allowed")
            if (hibernated or unclean) and request.writable:
                self.stays_read_only = True
                self.notes.append("ntfs-3g would only mount it read-only; nothing can be "
                                  "written to it")
            self._checked = True
        if writable and "ro" in options:
            self.release()
            raise ResealError(f"{request.where}: ntfs-3g mounted the volume read-only "
                              f"(unsafe state); nothing can be written to it; {HOW_TO_CLEAN}")

    def _unclean_ntfs(self) -> bool:
        """Refuse an NTFS volume not shut down cleanly unless allowed; True when it is so."""
        request = self.request

        def read(offset: int, length: int) -> bytes:
            with open(self.loop.path, "rb") as device:
                device.seek(offset)
                return device.read(length)

        state = ntfs_state(read, request.size, request.where)
        if state.dirty or not state.log_clean:
            why = "marked dirty" if state.dirty else "its $LogFile is not clean"
            if not request.allow_unclean_ntfs:
                raise Refused(f"{request.where}: NTFS was not shut down cleanly ({why}); "
                              f"{HOW_TO_CLEAN}")
            self.notes.append(f"NTFS was not shut down cleanly ({why}); opened because it was "
                              "allowed")
            return True
        return False


@contextlib.contextmanager
def mount_volume(request: MountRequest) -> Iterator[VolumeMount]:
    """Attach the partition (read-write when the request may write) and mount it read-only."""
    loop = attach_loop(request.backing, request.offset, request.size, not request.writable)
    volume = VolumeMount(request, loop)
    try:
        volume.mount(writable=False)
        yield volume
    finally:
        volume.release()
        loop.close()


def is_kernel_mounted(fstype: str) -> bool:
    """File systems the kernel mounts (and which can be unmounted and mounted again freely)."""
    return fstype in KERNEL_RO_OPTIONS


def mount_kernel_fs(request: MountRequest, device: str, *, writable: bool) -> None:
    """Mount `device` at the request's mount point with the kernel driver; raise on failure."""
    fstype = "ext4" if request.fstype.startswith("ext") else request.fstype
    mode = "rw" if writable else KERNEL_RO_OPTIONS[request.fstype]
    proc = run(["mount", "-t", fstype, "-o", f"{mode},{SAFE_OPTIONS}", device,
                str(request.mountpoint)], check=False)
    if proc.returncode != 0:
        raise ResealError(
            f"{request.where}: cannot mount the {request.fstype} file system: "
            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or proc.returncode}"
        )


def _start_fat(request: MountRequest, loop: LoopDevice, writable: bool) -> FuseDaemon:
    """FAT through reseal's pyfatfs FUSE server (the kernel here has no vfat)."""
    argv = [sys.executable, "-m", "reseal.image.fatfuse", loop.path, str(request.mountpoint)]
    if writable:
        argv.append("--rw")
    return start_fuse(argv, request.mountpoint, request.workdir / f"fat-{loop.path[5:]}.log")


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
