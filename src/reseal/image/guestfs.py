"""Safe access to a mounted guest file system.

Every path is a guest path ("/etc/hostname") resolved the way the guest would resolve it:
an absolute symlink points into the image root, never into the host. A path or link that
tries to climb above the root with ".." is refused (UnsafePath), as is a symlink loop.
Writes go through `fileio.atomic_write` and are recorded in the run's undo journal first;
in dry-run mode they are only reported.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from reseal.errors import Refused, ResealError, UnsafePath
from reseal.fileio import TEMP_PREFIX, atomic_copy, atomic_write, fsync_directory, path_xattr
from reseal.journal import MAX_RECORDED_BYTES, Journal, special_file

MAX_SYMLINK_HOPS = 40
LITTER_PREFIXES = (TEMP_PREFIX, ".fuse_hidden")
# How much reseal reads of one guest file, by kind: an image decides its files' sizes, so a
# crafted 12 MB grub.cfg or a 2 GiB "key" must not cost gigabytes and minutes.
READ_LIMIT = 256 << 20  # any file (registry hives are the largest reseal reads)
TEXT_LIMIT = 1 << 20  # a configuration text (grub.cfg, fstab, NetworkManager, ...)
LARGE_TEXT_LIMIT = 16 << 20  # a text that may legitimately be long: /etc/hosts block lists
SMALL_LIMIT = 64 << 10  # a one-line identity file or a key: hostname, machine-id, ssh keys


@dataclass(frozen=True)
class FileChange:
    """A write, creation or removal of one file, as reported in a dry run and in the report."""

    volume: str
    path: str
    action: str  # "write", "create", "remove", "mkdir", "rmdir", "xattr", "rename"
    old_size: int | None
    new_size: int | None


ChangeListener = Callable[[FileChange], None]
# Called with the host path before anything under it is written: the disk opener mounts the
# volume that holds it read-write at that moment (volumes are mounted read-only until then).
WriteHook = Callable[[Path], None]


class GuestFS:
    """A guest file system mounted (or simply present) at `root` on the host."""

    def __init__(
        self,
        root: Path,
        *,
        key: str = "root",
        read_only: bool = False,
        journal: Journal | None = None,
        dry_run: bool = False,
        listener: ChangeListener | None = None,
        before_write: WriteHook | None = None,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self.key = key
        self.read_only = read_only
        self.journal = journal
        self.dry_run = dry_run
        self.listener = listener
        self.before_write = before_write

    # ----------------------------------------------------------------- resolution
    def resolve(self, guest_path: str | PurePosixPath, *, follow_last: bool = True) -> Path:
        """Host path for `guest_path`; every symlink resolved inside the root."""
        parts = _split(str(guest_path))
        resolved: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if not resolved:
                    raise UnsafePath(
                        f"{guest_path}: path climbs above the image root; refusing to follow it"
                    )
                resolved.pop()
                continue
            host = self.root.joinpath(*resolved, name)
            is_last = not parts
            try:
                st = os.lstat(host)
            except (FileNotFoundError, NotADirectoryError):
                resolved.append(name)
                continue
            if stat.S_ISLNK(st.st_mode) and (follow_last or not is_last):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise UnsafePath(f"{guest_path}: too many levels of symbolic links in the image")
                target = os.readlink(host)
                link_guest = "/" + "/".join([*resolved, name])
                if target.startswith("/"):
                    resolved = []
                    new_parts = _split(target)
                else:
                    new_parts = _split(target)
                    # a relative link that climbs above the root is hostile: refuse, do not clamp
                    depth = len(resolved)
                    for part in new_parts:
                        if part == "..":
                            depth -= 1
                            if depth < 0:
                                raise UnsafePath(
                                    f"{link_guest}: link to {target!r} leaves the image root; "
                                    "refusing to follow it"
                                )
                        else:
                            depth += 1
                if target.startswith("/") and _climbs_above_root(new_parts):
                    raise UnsafePath(
                        f"{link_guest}: link to {target!r} leaves the image root; "
                        "refusing to follow it"
                    )
                parts = new_parts + parts
                continue
            resolved.append(name)
        host = self.root.joinpath(*resolved)
        return host

    # ----------------------------------------------------------------- reading
    def exists(self, path: str) -> bool:
        return os.path.lexists(self.resolve(path))

    def is_file(self, path: str) -> bool:
        return self.resolve(path).is_file()

    def is_dir(self, path: str) -> bool:
        return self.resolve(path).is_dir()

    def is_symlink(self, path: str) -> bool:
        return self.resolve(path, follow_last=False).is_symlink()

    def readlink(self, path: str) -> str:
        return os.readlink(self.resolve(path, follow_last=False))

    def read_bytes(self, path: str, *, limit: int = READ_LIMIT) -> bytes:
        """A regular file's bytes. Anything else is refused before it is opened: a device
        node would be a host device, a FIFO blocks. Larger than `limit`: refused."""
        host = self.resolve(path)
        st = os.lstat(host)
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
            raise special_file(path, self.key, st.st_mode)
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_CLOEXEC)
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                raise Refused(f"{path}: changed while reseal read it; refused")
            if opened.st_size > limit:
                raise too_large(path, opened.st_size, limit)
            chunks = []
            total = 0
            while chunk := os.read(fd, 1 << 20):
                total += len(chunk)
                if total > limit:
                    raise Refused(f"{path}: more than the {limit} bytes reseal reads of such a "
                                  "file; refused")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def read_text(self, path: str, encoding: str = "utf-8", *, limit: int = TEXT_LIMIT) -> str:
        return self.read_bytes(path, limit=limit).decode(encoding, errors="surrogateescape")

    def listdir(self, path: str) -> list[str]:
        host = self.resolve(path)
        try:
            return sorted(os.listdir(host))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def find_child(self, path: str, name: str) -> str | None:
        """Case-insensitive lookup of `name` in directory `path` (Windows paths)."""
        lowered = name.lower()
        for entry in self.listdir(path):
            if entry.lower() == lowered:
                return _join(path, entry)
        return None

    def find_path(self, path: str) -> str | None:
        """Resolve a Windows-style path case-insensitively, one component at a time."""
        current = "/"
        for part in _split(path.replace("\\", "/")):
            found = self.find_child(current, part)
            if found is None:
                return None
            current = found
        return current

    def walk(self, path: str = "/") -> Iterator[tuple[str, list[str], list[str]]]:
        """Like os.walk over guest paths, top-down (callers may prune `dirs`), but iterative,
        so any depth of nesting costs no recursion. Never descends into a symlink (so never
        leaves the root); a link to a directory is listed with the directories, as os.walk
        does, judged inside the image rather than on the host."""
        top = self.resolve(path)
        base = len(str(self.root))
        pending = [str(top)]
        while pending:
            dirpath = pending.pop()
            try:
                with os.scandir(dirpath) as listing:
                    entries = list(listing)
            except OSError:
                continue  # unreadable (or a path too long for the kernel): like os.walk
            guest = dirpath[base:] or "/"
            dirs: list[str] = []
            files: list[str] = []
            links: set[str] = set()
            for entry in entries:
                try:
                    if entry.is_symlink():
                        links.add(entry.name)
                        is_dir = self._link_is_dir(_join(guest, entry.name))
                    else:
                        is_dir = entry.is_dir(follow_symlinks=False)
                except (OSError, ResealError):
                    is_dir = False
                (dirs if is_dir else files).append(entry.name)
            yield guest, dirs, files
            pending.extend(os.path.join(dirpath, name) for name in reversed(dirs)
                           if name not in links)

    def _link_is_dir(self, guest_path: str) -> bool:
        """Where a link leads, as the guest sees it (never a host path)."""
        return self.resolve(guest_path).is_dir()

    def check_plain(self, path: str, *, limit: int | None = None) -> None:
        """Refuse (before anything is written) a device node, FIFO or socket where a file is
        expected (reading one would reach a host device or block), and a regular file
        larger than `limit`, the most reseal reads of such a file."""
        try:
            st = os.lstat(self.resolve(path))
        except (FileNotFoundError, NotADirectoryError):
            return
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise special_file(path, self.key, st.st_mode)
        if limit is not None and stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise too_large(path, st.st_size, limit)

    def stat(self, path: str) -> os.stat_result:
        return os.stat(self.resolve(path), follow_symlinks=False)

    # ----------------------------------------------------------------- writing
    def _check_writable(self, path: str) -> None:
        if self.read_only and not self.dry_run:
            raise ResealError(f"{path}: the file system {self.key} is mounted read-only")

    def _notify(self, change: FileChange) -> None:
        if self.listener is not None:
            self.listener(change)

    def _prepare_write(self, host: Path) -> None:
        """The last step before `host` changes: its volume becomes writable."""
        if self.before_write is not None:
            self.before_write(host)

    def write_bytes(self, path: str, data: bytes | memoryview, *, mode: int | None = None) -> None:
        """Replace (or create) a file atomically, recording its old content for undo."""
        self._check_writable(path)
        host = self.resolve(path)
        old_size: int | None = None
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(host)
            if stat.S_ISDIR(st.st_mode):
                raise ResealError(f"{path}: is a directory in the image, expected a file")
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                raise special_file(path, self.key, st.st_mode)
            old_size = st.st_size
        guest = self.guest_path_of(host)
        self._notify(
            FileChange(self.key, guest, "write" if old_size is not None else "create",
                       old_size, len(data))
        )
        if self.dry_run:
            return
        if not host.parent.is_dir():
            raise ResealError(f"{path}: its directory does not exist in the image")
        self._prepare_write(host)
        if self.journal is not None:
            self.journal.record(self.key, guest, host)
        atomic_write(host, data, mode=mode)

    def write_text(self, path: str, text: str, *, mode: int | None = None) -> None:
        self.write_bytes(path, text.encode("utf-8", errors="surrogateescape"), mode=mode)

    def remove(self, path: str) -> bool:
        """Remove a file (or a symlink itself); True when something was removed."""
        self._check_writable(path)
        host = self.resolve(path, follow_last=False)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            raise ResealError(f"{path}: is a directory; reseal removes files only")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise special_file(path, self.key, st.st_mode)
        guest = self.guest_path_of(host)
        self._notify(FileChange(self.key, guest, "remove", st.st_size, None))
        if self.dry_run:
            return True
        self._prepare_write(host)
        if self.journal is not None:
            self.journal.record(self.key, guest, host)
        os.unlink(host)
        fsync_directory(host.parent)
        return True

    def remove_tree(self, path: str) -> int:
        """Remove `path` and everything below it (all recorded for undo); returns how many
        files were removed. Symlinks are removed, never followed."""
        removed = 0
        walked = list(self.walk(path))
        for dirpath, dirs, files in walked:
            for name in files + [d for d in dirs if self.is_symlink(_join(dirpath, d))]:
                if self.remove(_join(dirpath, name)):
                    removed += 1
        for dirpath, _dirs, _files in reversed(walked):
            self.rmdir(dirpath)
        return removed

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        self._check_writable(path)
        host = self.resolve(path)
        if host.is_dir():
            return
        parent = self.guest_path_of(host.parent)
        if not host.parent.is_dir():
            self.mkdir(parent, mode)
        guest = self.guest_path_of(host)
        self._notify(FileChange(self.key, guest, "mkdir", None, None))
        if self.dry_run:
            return
        self._prepare_write(host)
        if self.journal is not None:
            self.journal.record_created_dir(self.key, guest)
        os.mkdir(host, mode)

    def rmdir(self, path: str) -> bool:
        """Remove an empty directory; True when it was removed. Undo recreates it."""
        self._check_writable(path)
        host = self.resolve(path, follow_last=False)
        if host.is_symlink() or not host.is_dir():
            return False
        if not self.dry_run and any(host.iterdir()):
            raise ResealError(f"{path}: directory is not empty; remove its files first")
        guest = self.guest_path_of(host)
        self._notify(FileChange(self.key, guest, "rmdir", None, None))
        if self.dry_run:
            return True
        self._prepare_write(host)
        if self.journal is not None:
            self.journal.record_removed_dir(self.key, guest, stat.S_IMODE(os.lstat(host).st_mode))
        os.rmdir(host)
        fsync_directory(host.parent)
        return True

    def rename(self, path: str, new_name: str) -> str:
        """Rename a file or directory within its directory (journaled: undo renames it back);
        returns the new guest path. Refuses a name that exists or leaves the directory."""
        self._check_writable(path)
        if not new_name or "/" in new_name or new_name in (".", ".."):
            raise ResealError(f"{path}: {new_name!r} is not a file name")
        host = self.resolve(path, follow_last=False)
        target = host.parent / new_name
        if not os.path.lexists(host):
            raise ResealError(f"{path}: does not exist in the image")
        if os.path.lexists(target):
            raise ResealError(f"{path}: cannot rename to {new_name!r}, which exists already")
        guest = self.guest_path_of(host)
        new_guest = self.guest_path_of(target)
        self._notify(FileChange(self.key, guest, "rename", None, None))
        if self.dry_run:
            return new_guest
        self._prepare_write(host)
        if self.journal is not None:
            self.journal.record_rename(self.key, guest, new_guest)
        os.rename(host, target)
        fsync_directory(host.parent)
        return new_guest

    def undo_rename(self, new_guest: str, old_guest: str) -> None:
        """Undo helper: give a renamed entry its old name back."""
        host = self.resolve(new_guest, follow_last=False)
        self._prepare_write(host)
        os.rename(host, self.resolve(old_guest, follow_last=False))

    def symlink(self, path: str, target: str) -> None:
        """Create (or replace) a symlink inside the image; the link text is not resolved."""
        self._check_writable(path)
        host = self.resolve(path, follow_last=False)
        guest = self.guest_path_of(host)
        self._notify(FileChange(self.key, guest, "create", None, None))
        if self.dry_run:
            return
        self._prepare_write(host)
        if self.journal is not None:
            self.journal.record(self.key, guest, host)
        tmp = host.parent / f".reseal-tmp-link-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, host)

    def replace_with(self, source: str, path: str) -> None:
        """Move a file over `path` in one step (rename(2) in one directory), so that `path`
        holds either its old file or the new one at every moment; both are journaled."""
        self._check_writable(path)
        src = self.resolve(source, follow_last=False)
        host = self.resolve(path, follow_last=False)
        if src.parent != host.parent:
            raise ResealError(f"{source} -> {path}: reseal renames within one directory only")
        src_st = os.lstat(src)
        old_size = None
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(host)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                raise special_file(path, self.key, st.st_mode)
            old_size = st.st_size
        guest_src, guest = self.guest_path_of(src), self.guest_path_of(host)
        self._notify(FileChange(self.key, guest, "write" if old_size is not None else "create",
                                old_size, src_st.st_size))
        if self.dry_run:
            return
        self._prepare_write(host)
        if self.journal is not None:
            self.journal.record(self.key, guest_src, src)
            self.journal.record(self.key, guest, host)
        os.replace(src, host)
        fsync_directory(host.parent)

    def set_xattr(self, path: str, name: str, value: bytes) -> None:
        """Set an extended attribute of `path` itself (never through a link), recording its
        old value for undo. ntfs-3g exposes NTFS security descriptors as system.ntfs_acl."""
        self._check_writable(path)
        host = self.resolve(path, follow_last=False)
        guest = self.guest_path_of(host)
        old = path_xattr(host, name)
        self._notify(FileChange(self.key, guest, "xattr", len(old), len(value)))
        if self.dry_run:
            return
        self._prepare_write(host)
        if self.journal is not None:
            self.journal.record_xattr(self.key, guest, name, old)
        os.setxattr(host, name, value, follow_symlinks=False)

    def restore_xattr(self, guest_path: str, name: str, value: bytes) -> None:
        """Undo helper: put an extended attribute's old value back."""
        host = self.resolve(guest_path, follow_last=False)
        self._prepare_write(host)
        os.setxattr(host, name, value, follow_symlinks=False)

    def copy_in(self, host_source: Path, path: str, *, mode: int | None = None) -> None:
        """Copy a host file into the image (through the same atomic, journaled write)."""
        self.write_bytes(path, Path(host_source).read_bytes(), mode=mode)

    def guest_path_of(self, host: Path) -> str:
        rel = os.path.relpath(host, self.root)
        if rel == ".":
            return "/"
        if rel.startswith(".."):
            raise UnsafePath(f"{host}: not inside the image root {self.root}")
        return "/" + rel.replace(os.sep, "/")

    def restore_from_journal(self, guest_path: str, data: bytes | None, mode: int | None,
                             uid: int | None, gid: int | None) -> None:
        """Undo helper: put back old bytes (or remove a file the run created)."""
        host = self.resolve(guest_path, follow_last=False)
        if data is None and not os.path.lexists(host):
            return
        self._prepare_write(host)
        if data is None:
            self._remove_created(host)
            return
        atomic_write(host, data, mode=mode)
        _chown(host, uid, gid)

    def restore_copy(self, guest_path: str, blob: Path, mode: int | None, uid: int | None,
                     gid: int | None) -> None:
        """Undo helper: put a recorded file back from its journal blob, holes kept."""
        host = self.resolve(guest_path, follow_last=False)
        self._prepare_write(host)
        atomic_copy(host, blob, mode=mode, limit=MAX_RECORDED_BYTES)
        _chown(host, uid, gid)

    def restore_symlink(self, guest_path: str, target: str, uid: int | None,
                        gid: int | None) -> None:
        """Undo helper: put a symbolic link back (its text, never resolved), replacing
        whatever the run left at its place."""
        host = self.resolve(guest_path, follow_last=False)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(host).st_mode):
                raise ResealError(f"{guest_path}: a directory is where the journal recorded a "
                                  "link; not replaced")
        self._prepare_write(host)
        tmp = host.parent / f".reseal-tmp-link-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        _chown(tmp, uid, gid)
        os.replace(tmp, host)
        fsync_directory(host.parent)

    def restore_removed_dir(self, guest_path: str, mode: int) -> None:
        """Undo helper: make again a directory the run removed."""
        host = self.resolve(guest_path, follow_last=False)
        if host.is_dir():
            return
        self._prepare_write(host)
        os.makedirs(host, mode=mode, exist_ok=True)

    def remove_created_dir(self, guest_path: str) -> bool:
        """Undo helper: remove a directory the run made, if it is empty again."""
        host = self.resolve(guest_path, follow_last=False)
        if host.is_symlink() or not host.is_dir() or any(host.iterdir()):
            return False
        self._prepare_write(host)
        try:
            os.rmdir(host)
        except OSError:
            return False
        return True

    def remove_litter(self, guest_dir: str) -> list[str]:
        """Undo helper: remove what a killed run can leave in a directory it wrote to: its
        temporary files (`.reseal-tmp-*`) and the FUSE servers' `.fuse_hidden*` files of
        files it replaced while they were open. Returns the guest paths removed."""
        try:
            host_dir = self.resolve(guest_dir)
            names = [n for n in os.listdir(host_dir) if n.startswith(LITTER_PREFIXES)]
        except (OSError, ResealError):
            return []
        removed = []
        for name in names:
            host = host_dir / name
            if os.path.isdir(host) and not os.path.islink(host):
                continue
            self._prepare_write(host)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(host)
                removed.append(_join(guest_dir, name))
        return removed

    @staticmethod
    def _remove_created(host: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            if host.is_dir() and not host.is_symlink():
                shutil.rmtree(host)
            else:
                os.unlink(host)


def _chown(host: Path, uid: int | None, gid: int | None) -> None:
    if uid is not None and gid is not None:
        with contextlib.suppress(OSError):
            os.chown(host, uid, gid, follow_symlinks=False)


def too_large(path: str, size: int, limit: int) -> Refused:
    return Refused(f"{path}: {size} bytes in the image, more than the {limit} bytes reseal "
                   "reads of such a file; refused")


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _climbs_above_root(parts: list[str]) -> bool:
    depth = 0
    for part in parts:
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            return True
    return False


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name if directory != "/" else "/" + name
