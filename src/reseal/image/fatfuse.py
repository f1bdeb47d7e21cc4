"""A small FUSE server for FAT volumes (the EFI system partition) on top of pyfatfs.

This kernel has no vfat, and Debian's fusefat misreads root directories that start with a
volume label and drops long-name case; pyfatfs reads and writes VFAT long names. Run in the
foreground as `python -m reseal.image.fatfuse DEVICE MOUNTPOINT [--rw]`; single-threaded, so
pyfatfs is never entered twice. FAT has no owners or modes: chmod/chown are accepted no-ops.
Renames are copy-then-delete (pyfatfs has no in-place rename).
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import stat
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import mfusepy as fuse
from fs.errors import (
    DirectoryExpected,
    DirectoryNotEmpty,
    FileExpected,
    FSError,
    ResourceNotFound,
)
from pyfatfs._exceptions import PyFATException
from pyfatfs.PyFatFS import PyFatFS

MAX_FILE_BYTES = 1 << 30
NT_LOWER_BASE = 0x08
NT_LOWER_EXT = 0x10
WRITE_OPERATIONS = frozenset({"create", "write", "truncate", "unlink", "mkdir", "rmdir", "rename"})
F = TypeVar("F", bound=Callable[..., Any])


def _errno_of(exc: Exception) -> int:
    if isinstance(exc, PyFATException | OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return exc.errno
    if isinstance(exc, ResourceNotFound):
        return errno.ENOENT
    if isinstance(exc, DirectoryNotEmpty):
        return errno.ENOTEMPTY
    if isinstance(exc, FileExpected):
        return errno.EISDIR
    if isinstance(exc, DirectoryExpected):
        return errno.ENOTDIR
    return errno.EIO


def _display_name(entry: Any) -> str:
    """The name as Windows shows it: the long name, else the 8.3 name with its NT case flags."""
    if entry.lfn_entry is not None:
        return str(entry)
    name = entry.get_short_name()
    base, dot, ext = name.partition(".")
    if entry.ntres & NT_LOWER_BASE:
        base = base.lower()
    if entry.ntres & NT_LOWER_EXT:
        ext = ext.lower()
    return base + dot + ext


def _fuse_errors(method: F) -> F:
    """Turn pyfatfs and PyFilesystem errors into errno for the kernel; refuse writes when ro."""

    @functools.wraps(method)
    def wrapper(self: FatOperations, path: str, *args: Any) -> Any:
        if self.read_only and method.__name__ in WRITE_OPERATIONS:
            raise fuse.FuseOSError(errno.EROFS)
        try:
            return method(self, self._real(path), *args)
        except fuse.FuseOSError:
            raise
        except (FSError, PyFATException, OSError) as exc:
            raise fuse.FuseOSError(_errno_of(exc)) from exc

    return wrapper  # type: ignore[return-value]


class FatOperations(fuse.Operations):  # type: ignore[misc]
    use_ns = True  # utimens gets nanoseconds (ignored: FAT times are not kept)

    def __init__(self, fatfs: PyFatFS, read_only: bool) -> None:
        self.fatfs = fatfs
        self.read_only = read_only
        self.mounted_at = time.time()

    def _entries(self, directory: str) -> dict[str, tuple[str, str]]:
        """lower-case display name -> (pyfatfs name, display name) for a directory."""
        dirs, files, _ = self.fatfs._get_dir_entry(directory).get_entries()
        return {_display_name(e).lower(): (str(e), _display_name(e)) for e in dirs + files}

    def _real(self, path: str) -> str:
        """FAT names are case-insensitive: map each component to the name pyfatfs knows."""
        real = ""
        for part in [p for p in path.split("/") if p]:
            try:
                found = self._entries(real or "/").get(part.lower())
            except (FSError, PyFATException):
                found = None
            real += "/" + (found[0] if found else part)
        return real or "/"

    # ------------------------------------------------------------------ reading
    @_fuse_errors
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        info = self.fatfs.getinfo(path, namespaces=["details"])
        modified = info.modified.timestamp() if info.modified else self.mounted_at
        if info.is_dir:
            mode, nlink, size = stat.S_IFDIR | 0o755, 2, 0
        else:
            mode, nlink, size = stat.S_IFREG | 0o644, 1, info.size
        return {"st_mode": mode, "st_nlink": nlink, "st_size": size, "st_mtime": modified,
                "st_ctime": modified, "st_atime": modified, "st_uid": 0, "st_gid": 0}

    @_fuse_errors
    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *(display for _real, display in self._entries(path).values())]

    @_fuse_errors
    def open(self, path: str, flags: int) -> int:
        if self.fatfs.getinfo(path).is_dir:
            raise fuse.FuseOSError(errno.EISDIR)
        return 0

    @_fuse_errors
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self.fatfs.openbin(path, "r") as handle:
            handle.seek(offset)
            return bytes(handle.read(size) or b"")

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 512, "f_frsize": 512, "f_namemax": 255}

    # ------------------------------------------------------------------ writing
    def _rewrite(self, path: str, data: bytes) -> None:
        with self.fatfs.openbin(path, "w") as handle:
            handle.write(data)

    def _content(self, path: str) -> bytes:
        with self.fatfs.openbin(path, "r") as handle:
            return bytes(handle.read() or b"")

    @_fuse_errors
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self.fatfs.create(path, wipe=True)
        return 0

    @_fuse_errors
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        if offset + len(data) > MAX_FILE_BYTES:
            raise fuse.FuseOSError(errno.EFBIG)
        with self.fatfs.openbin(path, "r+") as handle:
            size = self.fatfs.getsize(path)
            if offset > size:
                handle.seek(size)
                handle.write(bytes(offset - size))
            handle.seek(offset)
            handle.write(data)
        return len(data)

    @_fuse_errors
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if length > MAX_FILE_BYTES:
            raise fuse.FuseOSError(errno.EFBIG)
        content = self._content(path)
        self._rewrite(path, content[:length].ljust(length, b"\x00"))
        return 0

    @_fuse_errors
    def unlink(self, path: str) -> int:
        self.fatfs.remove(path)
        return 0

    @_fuse_errors
    def mkdir(self, path: str, mode: int) -> int:
        self.fatfs.makedir(path)
        return 0

    @_fuse_errors
    def rmdir(self, path: str) -> int:
        self.fatfs.removedir(path)
        return 0

    @_fuse_errors
    def rename(self, old: str, new: str) -> int:
        new = self._real(new)
        if self.fatfs.getinfo(old).is_dir:
            raise fuse.FuseOSError(errno.EXDEV)  # directories: not needed, not supported
        data = self._content(old)
        if self.fatfs.exists(new):
            if self.fatfs.getinfo(new).is_dir:
                raise fuse.FuseOSError(errno.EISDIR)
            self._rewrite(new, data)
        else:
            self.fatfs.create(new)
            self._rewrite(new, data)
        self.fatfs.remove(old)
        return 0

    @_fuse_errors
    def chmod(self, path: str, mode: int) -> int:
        self.fatfs.getinfo(path)
        return 0

    @_fuse_errors
    def chown(self, path: str, uid: int, gid: int) -> int:
        self.fatfs.getinfo(path)
        return 0

    @_fuse_errors
    def utimens(self, path: str, times: Any = None) -> int:
        return 0

    @_fuse_errors
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self.fatfs.fs.flush_fat()
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self.fatfs.fs.flush_fat()
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        return 0


FSINFO_LEAD = 0x41615252
FSINFO_STRUCT = 0x61417272


def refresh_fsinfo(device: str) -> None:
    """Recount the free clusters into the FAT32 FSInfo sector (pyfatfs leaves it stale, and
    fsck.fat then reports a wrong free-cluster summary)."""
    with open(device, "r+b") as disk:
        boot = disk.read(512)
        bytes_per_sector, per_cluster, reserved, fats = struct.unpack_from("<HBHB", boot, 11)
        total16, fat16 = struct.unpack_from("<H", boot, 19)[0], struct.unpack_from("<H", boot, 22)[0]
        total32, fat32, _flags, _version, _root, fsinfo_sector = struct.unpack_from(
            "<4xIIHHIH", boot, 28)
        if fat16 or boot[82:87] != b"FAT32" or not per_cluster or not fsinfo_sector:
            return  # FAT12/16 have no FSInfo
        total = total16 or total32
        clusters = (total - reserved - fats * fat32) // per_cluster
        disk.seek(reserved * bytes_per_sector)
        table = disk.read(min(fat32 * bytes_per_sector, 4 * (clusters + 2)))
        entries = struct.unpack_from(f"<{len(table) // 4}I", table)
        free = [n for n in range(2, len(entries)) if entries[n] & 0x0FFFFFFF == 0]
        disk.seek(fsinfo_sector * bytes_per_sector)
        info = bytearray(disk.read(512))
        if struct.unpack_from("<I", info, 0)[0] != FSINFO_LEAD or struct.unpack_from(
                "<I", info, 484)[0] != FSINFO_STRUCT:
            return
        struct.pack_into("<II", info, 488, len(free), free[0] if free else 0xFFFFFFFF)
        disk.seek(fsinfo_sector * bytes_per_sector)
        disk.write(info)
        disk.flush()
        os.fsync(disk.fileno())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reseal.image.fatfuse")
    parser.add_argument("device")
    parser.add_argument("mountpoint")
    parser.add_argument("--rw", action="store_true")
    args = parser.parse_args(argv)
    fatfs = PyFatFS(args.device, read_only=not args.rw, preserve_case=True)
    try:
        fuse.FUSE(FatOperations(fatfs, not args.rw), args.mountpoint, foreground=True,
                  nothreads=True, ro=not args.rw, fsname="reseal-fat", subtype="fat",
                  nodev=True, nosuid=True, noexec=True)
    finally:
        fatfs.close()
        if args.rw:
            refresh_fsinfo(args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
