"""Undo journal: the old content of every file a run changes, recorded before the change.

Layout of a journal directory (mode 0700, it may hold old hives):
    entries.jsonl      one JSON object per change, appended and fsynced before the change
    blobs/NNNNNN       the old bytes of a file that existed (holes kept: a sparse file stays
                       sparse)
`reseal undo TARGET JOURNAL` replays the entries in reverse order.

What is recorded is the guest object itself, never what it points at: a symbolic link is
recorded as its link text (an absolute link in an image names a path of the image, and
opening it on the host would read a host file), a regular file as its bytes, opened with
O_NOFOLLOW|O_NONBLOCK and checked to be the same object. Device nodes, FIFOs and sockets are
refused: opening one reads a host device or blocks. A journal is root's data: one that
another user owns or could write is refused, and blob names are only the ones the journal
itself makes, so an edited entry cannot point undo at a host file.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from reseal.errors import CorruptData, Refused
from reseal.fileio import copy_sparse, describe_mode, fsync_directory, private_dirs

MAX_RECORDED_BYTES = 512 << 20  # data bytes of one file (hives included)
MAX_ENTRIES_BYTES = 64 << 20  # entries.jsonl of one run
BLOB_NAME = re.compile(r"[0-9]{6,12}")


@dataclass(frozen=True)
class JournalEntry:
    """One file change: which volume, which guest path, what it was before."""

    volume: str  # volume key: "root" for a directory target, "p1", "p2"... for partitions
    path: str  # guest path inside that volume, "/"-separated, absolute
    existed: bool
    blob: str | None  # file name under blobs/ holding the old bytes
    mode: int | None
    uid: int | None
    gid: int | None
    kind: str = "file"  # "file", "dir" (created by the run), "rmdir" (removed by the run)
    # "symlink" (a link the run replaced or removed; old_value holds its text, never what it
    # names), "xattr" (an extended attribute such as system.ntfs_acl changed; blob holds its
    # old value), "fs-uuid" (the volume's file-system UUID was changed; path holds the file
    # system type), "disk-bytes" (raw disk bytes outside any file system, e.g. LVM metadata
    # or a GPT header; path holds the byte offset on the disk, blob the old bytes) or "rename"
    # (path is the new name; old_value the path before the run)
    old_value: str | None = None  # fs-uuid: the old UUID; xattr: its name; symlink: link text;
    # rename: the old path


class Journal:
    """Append-only record of old file contents for one run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._recorded: set[tuple[str, str]] = set()
        self._entries_path = directory / "entries.jsonl"
        self._count = 0
        self._ready = False
        if self._entries_path.exists():
            for entry in read_entries(directory):
                self._recorded.add((entry.volume, entry.path))

    def _ensure(self) -> None:
        """Create the journal directory on first use, so a refused run leaves nothing behind."""
        if self._ready:
            return
        private_dirs(self.directory)
        private_dirs(self.directory / "blobs")
        self._count = sum(1 for _ in (self.directory / "blobs").iterdir())
        self._ready = True

    def record(self, volume: str, guest_path: str, host_path: Path) -> None:
        """Save what `host_path` itself holds now (a link as its text, never its target),
        unless this run already saved it. Device nodes, FIFOs and sockets are refused."""
        key = (volume, guest_path)
        if key in self._recorded:
            return
        try:
            st = os.lstat(host_path)
        except FileNotFoundError:
            self._ensure()
            entry = JournalEntry(volume, guest_path, False, None, None, None, None)
        else:
            if stat.S_ISDIR(st.st_mode):
                return  # directories themselves are never replaced, only their files
            if stat.S_ISLNK(st.st_mode):
                self._ensure()
                entry = JournalEntry(volume, guest_path, True, None, None, st.st_uid, st.st_gid,
                                     kind="symlink", old_value=os.readlink(host_path))
            elif stat.S_ISREG(st.st_mode):
                self._ensure()
                blob = self._save_file(guest_path, host_path, st)
                entry = JournalEntry(volume, guest_path, True, blob, stat.S_IMODE(st.st_mode),
                                     st.st_uid, st.st_gid)
            else:
                raise special_file(guest_path, volume, st.st_mode)
        self._append(entry)
        self._recorded.add(key)

    def _save_file(self, guest_path: str, host_path: Path, st: os.stat_result) -> str:
        """Copy a regular file's bytes, holes kept, bounded; the object opened must be the
        one that was checked (no link, no swap in between)."""
        fd = os.open(host_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_CLOEXEC)
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(
                    opened.st_mode):
                raise Refused(f"{guest_path}: changed while reseal recorded it; refused")
            return self._new_blob(lambda out: copy_sparse(
                fd, out, opened.st_size, limit=MAX_RECORDED_BYTES, where=guest_path))
        finally:
            os.close(fd)

    def _new_blob(self, fill: Callable[[int], object]) -> str:
        """Write old bytes to a new blob (fsynced before the entry naming it is appended)."""
        blob = f"{self._count:06d}"
        self._count += 1
        path = self.directory / "blobs" / blob
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            fill(fd)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        return blob

    def _save_blob(self, chunks: Iterable[bytes]) -> str:
        def fill(fd: int) -> None:
            for chunk in chunks:
                os.write(fd, chunk)

        return self._new_blob(fill)

    def record_xattr(self, volume: str, guest_path: str, name: str, old: bytes) -> None:
        """Save an extended attribute's value (an NTFS ACL) before it is first changed."""
        key = (volume, f"{guest_path}\0xattr:{name}")
        if key in self._recorded:
            return
        self._ensure()
        blob = self._save_blob([old])
        self._append(JournalEntry(volume, guest_path, True, blob, None, None, None, kind="xattr",
                                  old_value=name))
        self._recorded.add(key)

    def record_created_dir(self, volume: str, guest_path: str) -> None:
        key = (volume, guest_path + "/")
        if key in self._recorded:
            return
        self._append(JournalEntry(volume, guest_path, False, None, None, None, None, kind="dir"))
        self._recorded.add(key)

    def record_removed_dir(self, volume: str, guest_path: str, mode: int) -> None:
        self._append(JournalEntry(volume, guest_path, True, None, mode, None, None, kind="rmdir"))

    def record_rename(self, volume: str, old_path: str, new_path: str) -> None:
        """Before a file or directory is renamed: undo renames `new_path` back to `old_path`."""
        self._append(JournalEntry(volume, new_path, True, None, None, None, None, kind="rename",
                                  old_value=old_path))

    def record_fs_uuid(self, volume: str, fstype: str, old_uuid: str) -> None:
        """Before a file system gets a new UUID: undo sets `old_uuid` back."""
        self._append(JournalEntry(volume, fstype, True, None, None, None, None, kind="fs-uuid",
                                  old_value=old_uuid))

    def record_disk_bytes(self, offset: int, old: bytes) -> None:
        """Before raw disk bytes outside any file system change: undo writes `old` back."""
        self._ensure()
        blob = self._save_blob([old])
        self._append(JournalEntry("disk", str(offset), True, blob, None, None, None,
                                  kind="disk-bytes"))

    def _append(self, entry: JournalEntry) -> None:
        self._ensure()
        line = json.dumps(asdict(entry), sort_keys=True) + "\n"
        fd = os.open(self._entries_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(self.directory)

    def blob_path(self, entry: JournalEntry) -> Path:
        """The checked blob file of an entry (see `blob_path`)."""
        return blob_path(self.directory, entry)

    def blob_bytes(self, entry: JournalEntry) -> bytes:
        return read_blob(self.directory, entry)


def special_file(guest_path: str, volume: str, mode: int) -> Refused:
    return Refused(f"{guest_path} (volume {volume}): {describe_mode(mode)} in the image where a "
                   "file is expected; reseal neither reads nor replaces device nodes, FIFOs or "
                   "sockets; remove it from the image first")


def check_private(path: Path, st: os.stat_result, what: str) -> None:
    """A journal part must be root's (ours) and writable by nobody else."""
    if st.st_uid != os.geteuid():
        raise Refused(f"{path}: the journal {what} belongs to uid {st.st_uid}, not to this user; "
                      "refusing to trust it")
    if st.st_mode & 0o022:
        raise Refused(f"{path}: the journal {what} is writable by group or others (mode "
                      f"{stat.S_IMODE(st.st_mode):04o}); refusing to trust it")


def _checked(path: Path, what: str, directory: bool) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise CorruptData(f"{path}: the journal {what} is missing") from None
    wanted = stat.S_ISDIR if directory else stat.S_ISREG
    if not wanted(st.st_mode):
        raise Refused(f"{path}: the journal {what} is {describe_mode(st.st_mode)}; refusing to "
                      "trust it")
    check_private(path, st, what)


def blob_path(directory: Path, entry: JournalEntry) -> Path:
    """The blob file of `entry`: a name the journal makes (digits only), a regular file of
    ours inside blobs/, writable by nobody else."""
    if entry.blob is None or not BLOB_NAME.fullmatch(entry.blob):
        raise CorruptData(f"{directory}: entry for {entry.path} names blob {entry.blob!r}, not "
                          "one this journal makes; refusing the journal")
    _checked(directory / "blobs", "blob directory", True)
    path = directory / "blobs" / entry.blob
    _checked(path, "blob", False)
    return path


def read_blob(directory: Path, entry: JournalEntry) -> bytes:
    path = blob_path(directory, entry)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size > MAX_RECORDED_BYTES:
            raise CorruptData(f"{path}: journal blob of {size} bytes is larger than reseal "
                              "records")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_entries(directory: Path) -> Iterator[JournalEntry]:
    """The entries of a journal, after checking that nobody but us could have written it."""
    path = directory / "entries.jsonl"
    if not os.path.lexists(path):
        return
    _checked(directory, "directory", True)
    _checked(path, "entries file", False)
    if os.lstat(path).st_size > MAX_ENTRIES_BYTES:
        raise CorruptData(f"{path}: journal entries file is larger than reseal writes")
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                entry = JournalEntry(**json.loads(line))
            except (ValueError, TypeError):
                # A run killed while appending leaves a partial last line: nothing after it happened.
                return
            if entry.blob is not None and not BLOB_NAME.fullmatch(entry.blob):
                raise CorruptData(f"{directory}: entry for {entry.path} names blob "
                                  f"{entry.blob!r}, not one this journal makes; refusing the "
                                  "journal")
            yield entry
