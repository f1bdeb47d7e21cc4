"""Crash-safe file replacement: temporary file, fsync, rename, fsync the directory.

A kill at any moment leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (10 ms at start-up)
if TYPE_CHECKING:
    from typing import Any

TEMP_PREFIX = ".reseal-tmp-"
# Attributes that carry NTFS ACLs and attributes through ntfs-3g; not always listed by listxattr.
_EXPLICIT_XATTRS = ("system.ntfs_acl", "system.ntfs_attrib_be")


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fgetxattr.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.fgetxattr.restype = ctypes.c_ssize_t
_libc.lgetxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.lgetxattr.restype = ctypes.c_ssize_t


def _sized_xattr(call: Any, target: int | bytes, name: str, where: str) -> bytes:
    """Read an xattr with a buffer of the size the file system announces first.

    ntfs-3g answers EIO (not ERANGE) to a buffer that is too small, which defeats
    os.getxattr's growing buffer for NTFS descriptors over 128 bytes.
    """
    encoded = name.encode()
    size = call(target, encoded, None, 0)
    if size < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), where)
    buffer = ctypes.create_string_buffer(max(size, 1))
    got = call(target, encoded, buffer, size)
    if got < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), where)
    return buffer.raw[:got]


def fd_xattr(fd: int, name: str) -> bytes:
    return _sized_xattr(_libc.fgetxattr, fd, name, f"fd {fd}")


def path_xattr(path: Path, name: str) -> bytes:
    """An xattr of `path` itself (a symlink is not followed)."""
    return _sized_xattr(_libc.lgetxattr, os.fsencode(path), name, str(path))


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some FUSE file systems do not implement fsync on directories
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def _copy_metadata(src_fd: int, dst_fd: int) -> None:
    st = os.fstat(src_fd)
    with contextlib.suppress(OSError):
        os.fchown(dst_fd, st.st_uid, st.st_gid)
    with contextlib.suppress(OSError):
        os.fchmod(dst_fd, st.st_mode & 0o7777)
    names: list[str] = []
    with contextlib.suppress(OSError):
        names = os.listxattr(src_fd)
    for name in [*names, *[n for n in _EXPLICIT_XATTRS if n not in names]]:
        try:
            value = fd_xattr(src_fd, name)
        except OSError:
            continue
        with contextlib.suppress(OSError):
            os.setxattr(dst_fd, name, value)


def atomic_write(path: Path, data: bytes | memoryview, *, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically, keeping mode, owner and xattrs of the old file.

    `path` must already be a safe host path (no symlink as last component).
    """
    directory = path.parent
    tmp = directory / f"{TEMP_PREFIX}{os.urandom(6).hex()}"
    old_fd: int | None = None
    try:
        old_fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        old_fd = None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        old_fd = None  # `path` is a symlink: the rename replaces the link, never its target
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if old_fd is not None:
                _copy_metadata(old_fd, fd)
            if mode is not None:
                os.fchmod(fd, mode)
            elif old_fd is None:
                os.fchmod(fd, 0o644)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        if old_fd is not None:
            os.close(old_fd)


def private_write(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (reports and journals may hold old identities)."""
    atomic_write(path, data, mode=0o600)
