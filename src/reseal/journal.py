"""Undo journal: the old content of every file a run changes, recorded before the change.

Layout of a journal directory (mode 0700, it may hold old hives):
    entries.jsonl      one JSON object per change, appended and fsynced before the change
    blobs/NNNNNN       the old bytes of a file that existed
`reseal undo TARGET JOURNAL` replays the entries in reverse order.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from reseal.errors import ResealError
from reseal.fileio import fsync_directory


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
    # "symlink" (a link the run replaced or removed; old_value holds its text),
    # "xattr" (an extended attribute such as system.ntfs_acl changed; blob holds its old value)
    # or "fs-uuid" (the volume's file-system UUID was changed; path holds the file system type)
    # or "disk-bytes" (raw disk bytes outside any file system, e.g. LVM metadata or a GPT
    # header; path holds the byte offset on the disk, blob the old bytes)
    old_value: str | None = None  # fs-uuid: the UUID before the run; xattr: the attribute name


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
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        (self.directory / "blobs").mkdir(exist_ok=True, mode=0o700)
        self._count = sum(1 for _ in (self.directory / "blobs").iterdir())
        self._ready = True

    def record(self, volume: str, guest_path: str, host_path: Path) -> None:
        """Save what `host_path` holds now, unless this run already saved it."""
        key = (volume, guest_path)
        if key in self._recorded:
            return
        self._ensure()
        try:
            st = os.lstat(host_path)
        except FileNotFoundError:
            entry = JournalEntry(volume, guest_path, False, None, None, None, None)
        else:
            if stat.S_ISDIR(st.st_mode):
                return  # directories themselves are never replaced, only their files
            if stat.S_ISLNK(st.st_mode):
                # the link text itself: opening it would follow it, maybe out of the image
                self._append(JournalEntry(volume, guest_path, True, None, None, st.st_uid,
                                          st.st_gid, kind="symlink",
                                          old_value=os.readlink(host_path)))
                self._recorded.add(key)
                return
            if not stat.S_ISREG(st.st_mode):
                raise ResealError(f"{guest_path}: a special file (device, FIFO or socket); "
                                  "reseal changes regular files and links only")
            with open(host_path, "rb") as src:
                blob = self._save_blob(iter(lambda: src.read(1 << 20), b""))
            entry = JournalEntry(
                volume, guest_path, True, blob, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
            )
        self._append(entry)
        self._recorded.add(key)

    def _save_blob(self, chunks: Iterable[bytes]) -> str:
        """Write old bytes to a new blob (fsynced before the entry naming it is appended)."""
        blob = f"{self._count:06d}"
        self._count += 1
        fd = os.open(self.directory / "blobs" / blob, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for chunk in chunks:
                os.write(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        return blob

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
        fd = os.open(self._entries_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(self.directory)

    def blob_bytes(self, entry: JournalEntry) -> bytes:
        assert entry.blob is not None
        return (self.directory / "blobs" / entry.blob).read_bytes()


def read_entries(directory: Path) -> Iterator[JournalEntry]:
    path = directory / "entries.jsonl"
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield JournalEntry(**json.loads(line))
            except (ValueError, TypeError):
                # A run killed while appending leaves a partial last line: nothing after it happened.
                return
