"""reseal's own MBR and GPT parser.

Nothing read from the disk is trusted: every offset and count is bounded before use, the
extended-partition chain is walked with a hop limit and loop detection, and the result is
refused (CorruptData, one line) when partitions overlap, run past the end of the disk or past
the end of a truncated image file.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from reseal.errors import CorruptData
from reseal.image.model import DiskLayout, Partition

SECTOR = 512
GPT_PROTECTIVE = 0xEE
EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
MAX_LOGICAL_PARTITIONS = 128
MAX_GPT_ENTRIES = 1024
MIN_GPT_ENTRY_SIZE = 128
MAX_GPT_ENTRY_SIZE = 4096
GPT_SIGNATURE = b"EFI PART"


@dataclass(frozen=True)
class _MbrEntry:
    bootable: bool
    type_id: int
    lba_start: int
    lba_count: int


class DiskReader:
    """Bounded reads from a disk image or device of known size."""

    def __init__(self, stream: BinaryIO, size: int, name: str) -> None:
        self.stream = stream
        self.size = size
        self.name = name

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise CorruptData(
                f"{self.name}: the partition table points at bytes {offset}..{offset + length}, "
                f"past the end of the {self.size}-byte image (truncated image?)"
            )
        self.stream.seek(offset)
        data = self.stream.read(length)
        if len(data) != length:
            raise CorruptData(f"{self.name}: short read at byte {offset}; the image is truncated")
        return data


def read_layout(stream: BinaryIO, size: int, name: str) -> DiskLayout:
    """Parse the partition table of a disk of `size` bytes."""
    reader = DiskReader(stream, size, name)
    if size < SECTOR:
        raise CorruptData(f"{name}: {size} bytes is too small to be a disk image")
    mbr = reader.read(0, SECTOR)
    if mbr[510:512] != b"\x55\xaa":
        return DiskLayout(table="none", sector_size=SECTOR, size=size, partitions=())
    if _looks_like_boot_sector(mbr):
        # a whole-disk file system (FAT/NTFS boot sector) also ends in 55 AA
        return DiskLayout(table="none", sector_size=SECTOR, size=size, partitions=())
    entries = _mbr_entries(mbr)
    signature = struct.unpack_from("<I", mbr, 440)[0]
    if any(e.type_id == GPT_PROTECTIVE for e in entries):
        layout = _read_gpt(reader)
    else:
        layout = DiskLayout(
            table="mbr",
            sector_size=SECTOR,
            size=size,
            partitions=tuple(_read_mbr(reader, entries)),
            mbr_signature=signature,
        )
    _check_partitions(layout, name)
    return layout


# ------------------------------------------------------------------------- MBR
def _mbr_entries(sector: bytes) -> list[_MbrEntry]:
    entries = []
    for n in range(4):
        raw = sector[446 + 16 * n : 446 + 16 * (n + 1)]
        status, type_id = raw[0], raw[4]
        lba_start, lba_count = struct.unpack_from("<II", raw, 8)
        if status not in (0x00, 0x80):
            raise CorruptData(
                f"partition table entry {n + 1} has boot flag {status:#04x} (not 0x00/0x80): "
                "the MBR is garbage; check that this is a disk image"
            )
        entries.append(_MbrEntry(status == 0x80, type_id, lba_start, lba_count))
    return entries


def _looks_like_boot_sector(mbr: bytes) -> bool:
    oem = mbr[3:11]
    return oem in (b"NTFS    ", b"EXFAT   ") or mbr[82:87] == b"FAT32" or mbr[54:59] in (
        b"FAT16",
        b"FAT12",
    )


def _read_mbr(reader: DiskReader, entries: list[_MbrEntry]) -> list[Partition]:
    partitions: list[Partition] = []
    extended: _MbrEntry | None = None
    for n, entry in enumerate(entries, start=1):
        if entry.type_id == 0 or entry.lba_count == 0:
            continue
        if entry.type_id in EXTENDED_TYPES:
            if extended is not None:
                raise CorruptData(f"{reader.name}: the MBR has two extended partitions")
            extended = entry
            continue
        partitions.append(_mbr_partition(n, entry, entry.lba_start))
    if extended is not None:
        partitions.extend(_read_logical(reader, extended))
    return partitions


def _mbr_partition(index: int, entry: _MbrEntry, lba_start: int) -> Partition:
    return Partition(
        index=index,
        start=lba_start * SECTOR,
        size=entry.lba_count * SECTOR,
        type_id=f"{entry.type_id:#04x}",
        table="mbr",
        bootable=entry.bootable,
    )


def _read_logical(reader: DiskReader, extended: _MbrEntry) -> list[Partition]:
    """Walk the EBR chain: each EBR holds one logical partition and a link to the next."""
    base = extended.lba_start
    ext_end = base + extended.lba_count
    seen: set[int] = set()
    logical: list[Partition] = []
    ebr_lba = base
    while True:
        if ebr_lba in seen:
            raise CorruptData(f"{reader.name}: the extended partition chain loops at sector {ebr_lba}")
        if len(seen) >= MAX_LOGICAL_PARTITIONS:
            raise CorruptData(f"{reader.name}: more than {MAX_LOGICAL_PARTITIONS} logical partitions")
        if not base <= ebr_lba < ext_end:
            raise CorruptData(
                f"{reader.name}: extended boot record at sector {ebr_lba} lies outside the "
                "extended partition"
            )
        seen.add(ebr_lba)
        sector = reader.read(ebr_lba * SECTOR, SECTOR)
        if sector[510:512] != b"\x55\xaa":
            raise CorruptData(f"{reader.name}: no boot signature in the EBR at sector {ebr_lba}")
        entries = _mbr_entries(sector)
        data, link = entries[0], entries[1]
        if data.type_id != 0 and data.lba_count:
            start = ebr_lba + data.lba_start
            if start + data.lba_count > ext_end:
                raise CorruptData(
                    f"{reader.name}: logical partition {5 + len(logical)} runs past the end of "
                    "its extended partition"
                )
            logical.append(_mbr_partition(5 + len(logical), data, start))
        if link.type_id == 0 or link.lba_count == 0:
            break
        ebr_lba = base + link.lba_start
    return logical


# ------------------------------------------------------------------------- GPT
def _read_gpt(reader: DiskReader) -> DiskLayout:
    primary_error = ""
    header = None
    try:
        header = _gpt_header(reader, 1)
    except CorruptData as exc:
        primary_error = str(exc)
    if header is None:
        last_lba = reader.size // SECTOR - 1
        try:
            header = _gpt_header(reader, last_lba)
        except CorruptData:
            raise CorruptData(
                f"{reader.name}: {primary_error}; the backup GPT header is bad too"
            ) from None
    else:
        backup_lba = header.alternate_lba
        if backup_lba * SECTOR + SECTOR > reader.size:
            raise CorruptData(
                f"{reader.name}: the GPT says the disk has {backup_lba + 1} sectors but the image "
                f"holds {reader.size // SECTOR}; the image is truncated"
            )
        try:
            backup = _gpt_header(reader, backup_lba)
        except CorruptData as exc:
            raise CorruptData(f"{reader.name}: backup GPT header: {exc}") from None
        if backup.entries_crc != header.entries_crc:
            raise CorruptData(f"{reader.name}: the primary and backup GPT disagree on the entries")
    partitions = []
    for index, raw in enumerate(header.entries, start=1):
        type_guid = _guid(raw[0:16])
        if type_guid == "00000000-0000-0000-0000-000000000000":
            continue
        first, last = struct.unpack_from("<QQ", raw, 32)
        if last < first or first < header.first_usable or last > header.last_usable:
            raise CorruptData(
                f"{reader.name}: GPT partition {index} spans sectors {first}..{last}, outside the "
                f"usable area {header.first_usable}..{header.last_usable}"
            )
        name = raw[56:128].decode("utf-16-le", errors="replace").split("\x00", 1)[0]
        partitions.append(
            Partition(
                index=index,
                start=first * SECTOR,
                size=(last - first + 1) * SECTOR,
                type_id=type_guid,
                table="gpt",
                name=name,
                guid=_guid(raw[16:32]),
            )
        )
    return DiskLayout(
        table="gpt",
        sector_size=SECTOR,
        size=reader.size,
        partitions=tuple(partitions),
        disk_guid=header.disk_guid,
    )


@dataclass(frozen=True)
class _GptHeader:
    alternate_lba: int
    first_usable: int
    last_usable: int
    disk_guid: str
    entries_crc: int
    entries: list[bytes]


def _gpt_header(reader: DiskReader, lba: int) -> _GptHeader:
    raw = reader.read(lba * SECTOR, SECTOR)
    if raw[0:8] != GPT_SIGNATURE:
        raise CorruptData(f"no GPT header signature at sector {lba}")
    header_size = struct.unpack_from("<I", raw, 12)[0]
    if not 92 <= header_size <= SECTOR:
        raise CorruptData(f"GPT header at sector {lba} claims {header_size} bytes")
    header_crc = struct.unpack_from("<I", raw, 16)[0]
    check = bytearray(raw[:header_size])
    check[16:20] = b"\x00\x00\x00\x00"
    if zlib.crc32(bytes(check)) != header_crc:
        raise CorruptData(f"GPT header at sector {lba} fails its CRC32 check")
    my_lba, alternate, first_usable, last_usable = struct.unpack_from("<QQQQ", raw, 24)
    if my_lba != lba:
        raise CorruptData(f"GPT header at sector {lba} says it lives at sector {my_lba}")
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", raw, 72)
    if not 0 < count <= MAX_GPT_ENTRIES or not (
        MIN_GPT_ENTRY_SIZE <= entry_size <= MAX_GPT_ENTRY_SIZE and entry_size % 8 == 0
    ):
        raise CorruptData(f"GPT header at sector {lba}: {count} entries of {entry_size} bytes")
    if first_usable > last_usable:
        raise CorruptData(f"GPT header at sector {lba}: first usable sector after the last")
    if last_usable * SECTOR >= reader.size:
        raise CorruptData(
            f"the GPT says the disk has at least {last_usable + 1} sectors but the image holds "
            f"{reader.size // SECTOR}; the image is truncated"
        )
    table = reader.read(entries_lba * SECTOR, count * entry_size)
    if zlib.crc32(table) != entries_crc:
        raise CorruptData(f"GPT partition entries (sector {entries_lba}) fail their CRC32 check")
    entries = [table[i * entry_size : i * entry_size + 128] for i in range(count)]
    return _GptHeader(alternate, first_usable, last_usable, _guid(raw[56:72]), entries_crc, entries)


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=bytes(raw)))


# ------------------------------------------------------------------------- checks
def _check_partitions(layout: DiskLayout, name: str) -> None:
    ordered = sorted(layout.partitions, key=lambda p: p.start)
    for part in ordered:
        if part.start == 0 and layout.table == "mbr":
            raise CorruptData(f"{name}: partition {part.index} starts at sector 0, over the MBR")
        if part.start + part.size > layout.size:
            raise CorruptData(
                f"{name}: partition {part.index} ends at byte {part.start + part.size}, past the "
                f"end of the {layout.size}-byte disk (truncated image or bad table)"
            )
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.start + before.size > after.start:
            raise CorruptData(
                f"{name}: partitions {before.index} and {after.index} overlap; the partition "
                "table is inconsistent"
            )


# ------------------------------------------------------------------------- new identity
MBR_SIGNATURE_OFFSET = 440


def gpt_identity_writes(stream: BinaryIO, size: int, name: str, disk_guid: str,
                        partition_guids: dict[int, str]) -> list[tuple[int, bytes]]:
    """(byte offset, bytes) that give a GPT disk a new disk GUID and its partitions new unique
    GUIDs, in both headers and both entry arrays, every CRC recomputed. Backup structures come
    first, so until the primary header is written the disk reads as before. Both headers must
    be intact (CorruptData otherwise: repair the table first)."""
    reader = DiskReader(stream, size, name)
    primary = _gpt_header(reader, 1)
    try:
        _gpt_header(reader, primary.alternate_lba)
    except CorruptData as exc:
        raise CorruptData(f"{name}: backup GPT header: {exc}; repair the table first "
                          "(sgdisk -e or gdisk's verify)") from None
    writes: list[tuple[int, bytes]] = []
    for lba in (primary.alternate_lba, 1):
        header = bytearray(reader.read(lba * SECTOR, SECTOR))
        entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
        table = bytearray(reader.read(entries_lba * SECTOR, count * entry_size))
        for index, guid in partition_guids.items():
            if not 1 <= index <= count:
                raise CorruptData(f"{name}: GPT has no partition entry {index}")
            pos = (index - 1) * entry_size
            table[pos + 16:pos + 32] = uuid.UUID(guid).bytes_le
        header[56:72] = uuid.UUID(disk_guid).bytes_le
        struct.pack_into("<I", header, 88, zlib.crc32(bytes(table)))
        header_size = struct.unpack_from("<I", header, 12)[0]
        header[16:20] = bytes(4)
        struct.pack_into("<I", header, 16, zlib.crc32(bytes(header[:header_size])))
        writes += [(entries_lba * SECTOR, bytes(table)), (lba * SECTOR, bytes(header))]
    return writes


def mbr_signature_write(signature: int) -> tuple[int, bytes]:
    return MBR_SIGNATURE_OFFSET, struct.pack("<I", signature)


def partuuid(layout: DiskLayout, part: Partition) -> str:
    """The PARTUUID Linux gives a partition: the GPT unique GUID, or on MBR the disk signature
    and the partition number ("8-hex-2-hex")."""
    if part.table == "gpt":
        return part.guid
    if part.table == "mbr" and layout.mbr_signature is not None:
        return f"{layout.mbr_signature:08x}-{part.index:02x}"
    return ""
