"""`reseal verify --deep`: a byte scan of the whole raw disk for the old identity.

File-level checks see what a file system shows; the disk holds more: clusters freed when a file
was rewritten (every hive reseal replaces leaves its old copy in free space), the history NTFS
keeps in `$Secure:$SDS` (old descriptors stay after an ACL change), `$LogFile`, stale entries in
directory indexes and MFT records, partition gaps. This scan reads the disk once (holes of a
sparse image skipped), finds every binary and text form of the old machine SID, computer names
and GUIDs, and says for each where it is: an NTFS offset is mapped to the file that owns the
cluster with `ntfscluster` (ntfs-3g), and labelled with what it is and what removes it. A hit
inside a file is reported by the file-level scan already; everything else is beyond the reach
of any file-level tool and is counted as such, never as "unexplained".
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import struct
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reseal.image.attach import loop_device
from reseal.image.model import DiskLayout, Volume
from reseal.windows.sid import Sid

CHUNK = 16 << 20
OVERLAP = 512
MIN_NAME = 4  # shorter computer names would match everywhere


@dataclass(frozen=True)
class Needle:
    identity: str
    form: str
    pattern: re.Pattern[bytes]


@dataclass(frozen=True)
class DeepHit:
    """Occurrences of one identity form in one region of the disk."""

    region: str  # "p3 free cluster", "p3 $Secure:$SDS", "p3 file /Windows/...", ...
    identity: str
    form: str
    count: int
    what: str  # what the region is and why it stays
    remedy: str  # the operation that removes it, or what would
    in_file: str | None = None  # the owning file (guest path) when the hit is inside one


def needles(old: dict[str, str]) -> list[Needle]:
    found: list[Needle] = []
    for name, value in sorted(old.items()):
        if not value:
            continue
        if name.startswith("machine-sid"):
            sid = Sid.parse(value)
            tail = sid.to_bytes()[2:]
            found.append(Needle(name, "binary SID", re.compile(
                rb"\x01[\x04-\x0f]" + re.escape(tail))))
            found += _text_needles(name, value, "SID text", digit_boundary=True)
        elif name.startswith("computer-name"):
            if len(value) >= MIN_NAME:
                found += _text_needles(name, value, "name", digit_boundary=False)
        else:
            try:
                guid = uuid.UUID(value.strip("{}"))
            except ValueError:
                continue
            found.append(Needle(name, "binary GUID", re.compile(re.escape(guid.bytes_le))))
            found += _text_needles(name, str(guid), "GUID text", digit_boundary=False)
    return found


def _text_needles(identity: str, text: str, label: str, *, digit_boundary: bool) -> list[Needle]:
    """ASCII and UTF-16LE forms, case-insensitive (the identities are ASCII)."""
    ascii_tail = rb"(?![0-9])" if digit_boundary else b""
    utf16_tail = rb"(?![0-9]\x00)" if digit_boundary else b""
    return [Needle(identity, f"{label} (ascii)",
                   re.compile(re.escape(text.encode("ascii", "replace")) + ascii_tail, re.IGNORECASE)),
            Needle(identity, f"{label} (utf-16le)",
                   re.compile(re.escape(text.encode("utf-16-le")) + utf16_tail, re.IGNORECASE))]


def _data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the parts of the file that hold data (all of it where holes are unknown)."""
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return  # only a hole is left
            yield position, size  # holes cannot be asked for (FUSE exports): read it all
            return
        yield start, min(end, size)
        position = end


def scan_offsets(raw: Path, patterns: list[Needle]) -> Iterator[tuple[int, Needle]]:
    """Every (disk offset, needle) match in the raw disk."""
    fd = os.open(raw, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size or _block_size(raw)
        for start, end in _data_ranges(fd, size):
            position = start
            while position < end:
                length = min(CHUNK + OVERLAP, end - position)
                chunk = os.pread(fd, length, position)
                if not chunk:
                    break
                limit = CHUNK if length == CHUNK + OVERLAP else len(chunk)
                for needle in patterns:
                    for match in needle.pattern.finditer(chunk):
                        if match.start() < limit:
                            yield position + match.start(), needle
                position += CHUNK
    finally:
        os.close(fd)


def _block_size(raw: Path) -> int:
    with open(raw, "rb") as handle:
        return handle.seek(0, os.SEEK_END)


class ClusterOwners:
    """Which NTFS file owns a byte of a volume (ntfscluster, cached per cluster)."""

    def __init__(self, device: str, cluster_size: int) -> None:
        self.device = device
        self.cluster_size = cluster_size
        self.cache: dict[int, str | None] = {}

    def owner(self, volume_offset: int) -> str | None:
        cluster = volume_offset // self.cluster_size
        if cluster not in self.cache:
            proc = subprocess.run(["ntfscluster", "-c", str(cluster), self.device],
                                  capture_output=True, text=True, timeout=120, check=False)
            found = None
            for line in proc.stdout.splitlines():
                if line.startswith("Inode "):
                    found = line.split(" ", 2)[2] if line.count(" ") >= 2 else line
                    break
            self.cache[cluster] = found
        return self.cache[cluster]


def ntfs_cluster_size(device: str) -> int | None:
    try:
        with open(device, "rb") as handle:
            boot = handle.read(512)
    except OSError:
        return None
    if boot[3:11] != b"NTFS    ":
        return None
    bytes_per_sector = struct.unpack_from("<H", boot, 11)[0]
    per_cluster = boot[13]
    if per_cluster > 0x80:  # a negative exponent: 2^-n
        return int(bytes_per_sector * (1 << (256 - per_cluster)))
    return int(bytes_per_sector * per_cluster)


def classify_ntfs(owner: str | None) -> tuple[str, str, str, str | None]:
    """(region label, what it is, remedy, file) for the owner ntfscluster reported."""
    if owner is None:
        return ("free cluster", "unallocated space: the old content of a file that was rewritten "
                "or deleted (every file reseal replaces leaves its old copy here)",
                "no file-level tool reaches it: wipe free space on the offline volume "
                "(ntfswipe --unused) or restore clones from a zero-filled master", None)
    cut = owner.rfind("/$")
    path, attribute = (owner[:cut] or "/", owner[cut + 1:]) if cut >= 0 else (owner, "")
    if path.startswith("/$Secure"):
        return ("$Secure", "NTFS security-descriptor store ($SDS and its indexes): old descriptors "
                "stay after an ACL is rewritten, until NTFS reuses the space",
                "no file-level tool reaches it (ntfs-3g keeps the history)", None)
    if path.startswith(("/$MFT", "/$MFTMirr")):
        return ("$MFT", "NTFS file records (an old name or descriptor of a renamed or rewritten "
                "file)", "no file-level tool reaches it", None)
    if path.startswith("/$LogFile"):
        return ("$LogFile", "NTFS journal of recent changes", "no file-level tool reaches it; "
                "Windows overwrites it as it runs", None)
    if path.startswith("/$") and path.count("/") == 1:
        return (path[1:], "NTFS metadata file", "no file-level tool reaches it", None)
    if attribute.startswith("$INDEX_ALLOCATION"):
        return ("directory index", f"stale entries in the index of {path}",
                "no file-level tool reaches it", None)
    return ("file", f"inside {path}", "", path)


def _remedy_for_file(path: str) -> str:
    lowered = path.lower()
    if lowered.endswith((".evtx", ".evt")):
        return "windows-event-logs (off by default)"
    if "/system32/config/regback/" in lowered:
        return "windows-regback"
    if "/system32/tasks/" in lowered:
        return "windows-scheduled-tasks"
    if lowered.endswith(("/sam", "/security", "/system", "/software", "/default", "ntuser.dat",
                         "usrclass.dat")):
        return "hive operations (see the file-level result)"
    return "none: a file no reseal operation manages"


def deep_scan(raw: Path, layout: DiskLayout | None, volumes: list[Volume],
              old: dict[str, str]) -> list[DeepHit]:
    patterns = needles(old)
    if not patterns:
        return []
    # ntfs-3g holds the volumes' own loop devices exclusively: ntfscluster reads the same bytes
    # through read-only loop devices of its own, released when the scan ends
    with contextlib.ExitStack() as stack:
        return _deep_scan(raw, layout, volumes, patterns, stack)


def _deep_scan(raw: Path, layout: DiskLayout | None, volumes: list[Volume], patterns: list[Needle],
               stack: contextlib.ExitStack) -> list[DeepHit]:
    by_start = {v.partition.start: v for v in volumes if v.partition is not None}
    partitions = sorted(layout.partitions, key=lambda p: p.start) if layout is not None else []
    owners: dict[str, ClusterOwners | None] = {}
    counts: Counter[tuple[str, str, str, str, str, str | None]] = Counter()
    for offset, needle in scan_offsets(raw, patterns):
        partition = next((p for p in partitions if p.start <= offset < p.start + p.size), None)
        if partition is None:
            counts[("outside partitions", needle.identity, needle.form,
                    "disk area outside every partition (gaps, table, boot code)",
                    "no file-level tool reaches it", None)] += 1
            continue
        volume = by_start.get(partition.start)
        key = volume.key if volume is not None else f"p{partition.index}"
        if volume is None or volume.fstype != "ntfs":
            fstype = volume.fstype if volume is not None else "unknown"
            counts[(f"{key} ({fstype})", needle.identity, needle.form,
                    f"a {fstype} volume reseal does not map cluster by cluster",
                    "none", None)] += 1
            continue
        if key not in owners:
            device = stack.enter_context(loop_device(raw, partition.start, partition.size, True))
            size = ntfs_cluster_size(device.path)
            owners[key] = ClusterOwners(device.path, size) if size else None
        mapper = owners[key]
        owner = mapper.owner(offset - partition.start) if mapper is not None else None
        region, what, remedy, file_path = classify_ntfs(owner)
        if file_path is not None:
            remedy = _remedy_for_file(file_path)
        counts[(f"{key} {region}", needle.identity, needle.form, what, remedy, file_path)] += 1
    return [DeepHit(region, identity, form, count, what, remedy, file_path)
            for (region, identity, form, what, remedy, file_path), count in sorted(counts.items(),
            key=lambda item: (item[0][0], item[0][1], item[0][2]))]

