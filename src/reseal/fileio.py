"""Crash-safe file replacement: temporary file, fsync, rename, fsync the directory.

A kill at any moment leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from reseal.errors import Refused

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

    def fill(fd: int) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    _atomic_replace(path, fill, mode)


def atomic_copy(path: Path, source: Path, *, mode: int | None = None,
                limit: int | None = None) -> None:
    """Replace `path` with a copy of the regular file `source`, holes kept (a sparse file
    stays sparse), atomically, like `atomic_write`."""
    src = open_regular(source, what="copy source")
    try:
        size = os.fstat(src).st_size
        _atomic_replace(path, lambda fd: copy_sparse(src, fd, size, limit=limit,
                                                     where=str(source)), mode)
    finally:
        os.close(src)


def _atomic_replace(path: Path, fill: Callable[[int], object], mode: int | None) -> None:
    directory = path.parent
    tmp = directory / f"{TEMP_PREFIX}{os.urandom(6).hex()}"
    old_fd: int | None = None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        # never open anything else: a device node would be the host's device, a FIFO blocks
        old_fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        if not stat.S_ISREG(os.fstat(old_fd).st_mode):
            os.close(old_fd)
            old_fd = None
    elif st is not None and not stat.S_ISLNK(st.st_mode):
        raise Refused(f"{path}: {describe_mode(st.st_mode)}, not a regular file; refusing to "
                      "replace it")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if old_fd is not None:
                _copy_metadata(old_fd, fd)
            if mode is not None:
                os.fchmod(fd, mode)
            elif old_fd is None:
                os.fchmod(fd, 0o644)
            fill(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        if old_fd is not None:
            # A FUSE server (ntfs-3g, the FAT server) keeps a file replaced while it is open
            # as `.fuse_hidden*` until it is closed: a kill in between would leave it behind.
            os.close(old_fd)
            old_fd = None
        os.replace(tmp, path)
        fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        if old_fd is not None:
            os.close(old_fd)


def describe_mode(mode: int) -> str:
    """'a FIFO', 'a character device', ... for messages."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "a special file"


def open_regular(path: Path, *, what: str = "file", follow: bool = False) -> int:
    """Open `path` for reading only if it is a regular file: never a device node (that would
    reach a host device), a FIFO (that blocks) or a socket; a symlink only when `follow`."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(f"{path}: the {what} is a symbolic link; refused") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Refused(f"{path}: the {what} is {describe_mode(st.st_mode)}, not a regular file; "
                      "refused")
    return fd


def copy_sparse(src: int, dst: int, size: int, *, limit: int | None = None,
                where: str = "") -> int:
    """Copy the first `size` bytes of `src` to `dst` at the same offsets, data segments only
    (SEEK_DATA/SEEK_HOLE), so holes stay holes; returns the data bytes copied. More than
    `limit` data bytes is refused before they are all written."""
    copied = 0
    offset = 0
    while offset < size:
        try:
            data = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break  # only a hole is left
            data = offset  # no SEEK_DATA here: all of it is data
        try:
            hole = min(os.lseek(src, data, os.SEEK_HOLE), size)
        except OSError:
            hole = size
        position = data
        while position < hole:
            chunk = os.pread(src, min(1 << 20, hole - position), position)
            if not chunk:
                break
            copied += len(chunk)
            if limit is not None and copied > limit:
                raise Refused(f"{where}: holds more than {limit} bytes of data, more than "
                              "reseal keeps of one file; refused")
            view = memoryview(chunk)
            while view:
                written = os.pwrite(dst, view, position)
                view = view[written:]
                position += written
        offset = hole if hole > offset else size  # never loop on a zero-length segment
    os.ftruncate(dst, size)
    return copied


def private_dirs(path: Path) -> None:
    """Create `path` and its missing parents mode 0700 whatever the umask, and make sure
    `path` itself is a real directory (not a link) of ours, mode 0700."""
    missing = []
    current = Path(os.path.abspath(path))
    while not os.path.lexists(current):
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
            os.chmod(directory, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise Refused(f"{path}: not a directory of this user (a link or someone else's); "
                      "refusing to keep reports or journals there")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def private_write(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (reports and journals may hold old identities)."""
    atomic_write(path, data, mode=0o600)
