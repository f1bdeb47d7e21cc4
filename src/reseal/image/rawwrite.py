"""Journaled writes to the raw disk, outside every file system: LVM labels and metadata, GPT
headers and entry arrays, the MBR disk signature.

Each region's old bytes go into the undo journal (fsynced) before it is written, and each
write is fsynced before the next one, so the order a caller gives (data before the header
that points at it) is the order that reaches the disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reseal.errors import ResealError
from reseal.image.target import Target
from reseal.journal import Journal, JournalEntry

# volumes that only hold structures reseal writes itself (a PV's own data is its LVs)
CONTAINER_FSTYPES = ("LVM2_member",)


@dataclass(frozen=True)
class DiskWrite:
    offset: int  # bytes from the start of the disk
    data: bytes
    what: str  # for messages: "LVM label of p3"


def write_disk(target: Target, writes: Sequence[DiskWrite]) -> None:
    """Write `writes` in order to the target's raw disk, each journaled first. Refused when a
    region lies outside the disk or over a file system reseal has open."""
    if target.raw_path is None or target.layout is None:
        raise ResealError(f"{target.source}: a {target.kind} target has no raw disk to write")
    size = target.layout.size
    for write in writes:
        end = write.offset + len(write.data)
        if write.offset < 0 or end > size:
            raise ResealError(f"{target.source}: {write.what} would be written at bytes "
                              f"{write.offset}..{end}, outside the {size}-byte disk")
        for volume in target.volumes:
            part = volume.partition
            if part is None or volume.fstype in CONTAINER_FSTYPES or not volume.fstype:
                continue
            if write.offset < part.start + part.size and part.start < end:
                raise ResealError(f"{target.source}: {write.what} would overwrite the "
                                  f"{volume.fstype} file system of {volume.key}; nothing written")
    if target.options.dry_run:
        return
    journal = target.options.journal
    fd = os.open(target.raw_path, os.O_RDWR)
    try:
        for write in writes:
            if journal is not None:
                journal.record_disk_bytes(write.offset, os.pread(fd, len(write.data),
                                                                 write.offset))
            if os.pwrite(fd, write.data, write.offset) != len(write.data):
                raise ResealError(f"{target.source}: short write of {write.what}")
            os.fsync(fd)
    finally:
        os.close(fd)


def read_disk(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as disk:
        disk.seek(offset)
        return disk.read(length)


def restore_disk_bytes(raw_path: Path, journal: Journal, entries: Sequence[JournalEntry]) -> int:
    """Undo: put the old bytes of every `disk-bytes` entry back, newest first."""
    done = 0
    fd = os.open(raw_path, os.O_RDWR)
    try:
        for entry in reversed(entries):
            old = journal.blob_bytes(entry)
            os.pwrite(fd, old, int(entry.path))
            done += 1
        os.fsync(fd)
    finally:
        os.close(fd)
    return done
