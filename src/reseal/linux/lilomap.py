"""Decode an installed LILO (22.7 - 24.x) from the raw disk: first-stage boot sector, map file
descriptors, and the sector lists the map keeps for each kernel and initrd.

LILO records absolute disk sectors when `lilo` runs, so a clone whose partitions start
elsewhere, or a kernel file rewritten to other blocks, leaves it pointing at the wrong
sectors. Everything here is pure: a `read(offset, length)` on the raw disk plus its size,
or bytes of the map file. The disk is hostile: every count is bounded, every address is
checked against the disk size, and a map chain that loops is refused (`LiloFormatError`).

Layout facts (from LILO's common.h, map.c, bsect.c, geometry.c, first.S and second.S):
- SECTOR_ADDR, 5 bytes: sector, track, device, head, num_sect. Device flags: 0x20 LBA32,
  0x40 with LBA32 = "no count" (num_sect is bits 24-31 and the count is 1; later counted
  LBA32 entries reuse that high byte), 0x40 alone = linear (24 bits), none = C/H/S;
  0x10 = relative to a RAID member's offset.
- A map section is a chain of 512-byte sectors, 101 addresses each (offsets 0..500); the
  address at offset 505 is the next chain sector; an address whose first four bytes are
  zero ends the section.
- Map file: sector 0 default command line, sectors 1..D the image descriptors (D = 1..12,
  a CRC-32 of the first D*512-4 bytes in the last four), sector D+1 zeros, sector D+2 the
  second-stage loader (BOOT_PARAMS_2: "LILO" at 6, version at 10, map stamp at 12, keytable
  address at 26); the keytable sector (the last one written) holds, at 256, the menu table
  with the descriptor sectors' addresses, and a CRC-32 of its first 504 bytes at 504.
- First stage (22.7+): "LILO" at 6, stage byte 1 at 3, version at 10 (major | minor << 8),
  map stamp at 12, then at 30 the 6-byte address of the second-stage index sector
  (BIOS device, flags, 32-bit sector); the index sector lists 32-bit sectors of the second
  stage and ends with "LILO" at 508.
- A kernel's section: the fallback and options sectors (in the map file), then every
  512-byte sector of the kernel file; holes are mapped to the map's zero sector.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

SECTOR = 512
ADDR_SIZE = 5
ADDRS_PER_PAGE = 101  # offsets 0, 5, ... 500
LINK_OFFSET = 505  # the next chain sector
LBA32_FLAG = 0x20
LBA32_NOCOUNT = 0x40
LINEAR_FLAG = 0x40
RAID_REL_FLAG = 0x10
MAX_DESCR_SECTORS = 12
MAX_IMAGE_NAME = 15
CRC_POLY1 = 0x04C11DB7
FLAG_KERNEL = 16
STAGE_FIRST = 1
STAGE_SECOND = 2
SIGNATURE = b"LILO"
KNOWN_MAJORS = (22, 23, 24)

MAX_SECTION_SECTORS = 1 << 20  # 512 MiB: no kernel or initrd LILO can load is larger
MAX_CHAIN_PAGES = (MAX_SECTION_SECTORS // ADDRS_PER_PAGE) + 2
MAX_INDEX_ENTRIES = (SECTOR - 4) // 4

ReadFn = Callable[[int, int], bytes]


class LiloFormatError(Exception):
    """What LILO's data says cannot be followed. `kind`: "outside" (an address past the
    disk end), "loop", "too-long", "chs" (no geometry to verify C/H/S offline), "raid",
    "unreadable" (not LILO's format)."""

    def __init__(self, reason: str, kind: str = "unreadable") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class Geometry:
    """BIOS C/H/S geometry, when the partition table makes it plain."""

    heads: int
    sectors: int


@dataclass(frozen=True)
class SectorAddress:
    device: int  # BIOS device code, flags removed (0x80 = first hard disk)
    mode: str  # "lba32", "linear", "chs"
    lba: int | None  # absolute 512-byte sector; None for C/H/S without a geometry
    count: int
    raid_relative: bool = False


@dataclass(frozen=True)
class FirstStage:
    version: tuple[int, int]  # (major, minor)
    map_stamp: int
    index: SectorAddress  # the second-stage index sector

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


@dataclass(frozen=True)
class SecondStage:
    version: tuple[int, int]
    map_stamp: int
    keytable: bytes  # raw SECTOR_ADDR


@dataclass(frozen=True)
class ImageDescriptor:
    name: str
    flags: int
    start: bytes  # raw SECTOR_ADDR of the first chain sector of the kernel (or loader)
    initrd: bytes | None  # raw SECTOR_ADDR, None without an initrd

    @property
    def is_kernel(self) -> bool:
        return bool(self.flags & FLAG_KERNEL)


@dataclass(frozen=True)
class DescriptorTable:
    sectors: int  # D, the number of descriptor sectors
    entry_size: int  # 54 (160-bit password hashes), 42 (CRC-32 pairs); +2 before 22.3
    images: tuple[ImageDescriptor, ...]


@dataclass(frozen=True)
class MapSection:
    pages: tuple[int, ...]  # the chain sectors, in order
    runs: tuple[tuple[int, int], ...]  # (first sector, count) as listed

    def sectors(self) -> list[int]:
        return [start + i for start, count in self.runs for i in range(count)]

    @property
    def sector_count(self) -> int:
        return sum(count for _, count in self.runs)


# ------------------------------------------------------------------ checksum
def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        value = byte << 24
        for _ in range(8):
            value = ((value << 1) ^ CRC_POLY1) if value & 0x80000000 else value << 1
        table.append(value & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def lilo_crc32(data: bytes) -> int:
    """LILO's crc32(): MSB first, polynomial 0x04C11DB7, start and final inversion
    (the CRC-32/BZIP2 parameters)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


# ------------------------------------------------------------------ addresses
def is_end(raw: bytes) -> bool:
    """second.S ends a list when sector, track, device and head are all zero."""
    return raw[:4] == b"\0\0\0\0"


def decode_address(raw: bytes, hinib: int = 0,
                   geometry: Geometry | None = None) -> tuple[SectorAddress, int]:
    """One SECTOR_ADDR -> (address, high byte for the next counted LBA32 entry)."""
    if len(raw) != ADDR_SIZE:
        raise LiloFormatError("truncated sector address")
    sector, track, device, head, num = raw
    raid = bool(device & RAID_REL_FLAG)
    bios = device & 0x8F
    low24 = head << 16 | track << 8 | sector
    if device & LBA32_FLAG:
        if device & LBA32_NOCOUNT:
            return SectorAddress(bios, "lba32", num << 24 | low24, 1, raid), num
        count = num
        address = SectorAddress(bios, "lba32", hinib << 24 | low24, count, raid)
    elif device & LINEAR_FLAG:
        address = SectorAddress(bios, "linear", low24, num, raid)
    else:
        chs_sector = sector & 0x3F
        cylinder = track | (sector & 0xC0) << 2
        lba = None
        if geometry and 1 <= chs_sector <= geometry.sectors and head < geometry.heads:
            lba = (cylinder * geometry.heads + head) * geometry.sectors + chs_sector - 1
        address = SectorAddress(bios, "chs", lba, num, raid)
    if address.count == 0:
        raise LiloFormatError("sector address with a count of 0")
    return address, hinib


def decode_address6(flags: int, device: int, value: int,
                    geometry: Geometry | None = None) -> SectorAddress:
    """The first stage's processed address: flags byte + a 32-bit sector (LBA32, linear) or
    the C/H/S bytes (sector, track, device, head) packed into the same 32 bits."""
    raid = bool(flags & RAID_REL_FLAG)
    if flags & LBA32_FLAG:
        return SectorAddress(device & 0x8F, "lba32", value, 1, raid)
    if flags & LINEAR_FLAG:
        return SectorAddress(device & 0x8F, "linear", value & 0xFFFFFF, 1, raid)
    raw = struct.pack("<I", value) + b"\x01"
    address, _ = decode_address(raw, geometry=geometry)
    return address


def locate(address: SectorAddress, disk_sectors: int) -> int:
    """The absolute sector of `address`, checked against the disk."""
    if address.raid_relative:
        raise LiloFormatError("RAID-relative sector address: cannot verify offline", "raid")
    if address.lba is None:
        raise LiloFormatError("CHS addressing: cannot verify offline", "chs")
    if address.lba + address.count > disk_sectors:
        raise LiloFormatError(
            f"sector {address.lba}+{address.count} is past the disk end ({disk_sectors} sectors)",
            "outside")
    return address.lba


def _read_sector(read: ReadFn, lba: int, disk_sectors: int) -> bytes:
    if not 0 <= lba < disk_sectors:
        raise LiloFormatError(f"sector {lba} is past the disk end ({disk_sectors} sectors)",
                              "outside")
    data = read(lba * SECTOR, SECTOR)
    if len(data) != SECTOR:
        raise LiloFormatError(f"short read at sector {lba}")
    return data


# ------------------------------------------------------------------ map sections
def read_map_section(read: ReadFn, disk_sectors: int, start: bytes, *,
                     geometry: Geometry | None = None,
                     max_sectors: int = MAX_SECTION_SECTORS) -> MapSection:
    """Follow a section's chain from its first chain sector (`start`, a raw SECTOR_ADDR)."""
    if is_end(start):
        raise LiloFormatError("empty sector address")
    first, _ = decode_address(start, geometry=geometry)
    page = locate(first, disk_sectors)
    pages: list[int] = []
    seen: set[int] = set()
    runs: list[tuple[int, int]] = []
    total = 0
    hinib = 0
    max_pages = min(MAX_CHAIN_PAGES, max_sectors // ADDRS_PER_PAGE + 2)
    while True:
        if page in seen:
            raise LiloFormatError(f"map chain loops back to sector {page}", "loop")
        if len(pages) >= max_pages:
            raise LiloFormatError(f"map chain longer than {max_pages} sectors", "too-long")
        seen.add(page)
        pages.append(page)
        data = _read_sector(read, page, disk_sectors)
        for slot in range(ADDRS_PER_PAGE):
            raw = data[slot * ADDR_SIZE:(slot + 1) * ADDR_SIZE]
            if is_end(raw):
                return MapSection(tuple(pages), tuple(runs))
            address, hinib = decode_address(raw, hinib, geometry)
            runs.append((locate(address, disk_sectors), address.count))
            total += address.count
            if total > max_sectors:
                raise LiloFormatError(f"map section lists more than {max_sectors} sectors",
                                      "too-long")
        link = data[LINK_OFFSET:LINK_OFFSET + ADDR_SIZE]
        if is_end(link):
            return MapSection(tuple(pages), tuple(runs))
        address, _ = decode_address(link, hinib, geometry)
        page = locate(address, disk_sectors)


# ------------------------------------------------------------------ boot sector and map file
def parse_first_stage(sector: bytes, geometry: Geometry | None = None) -> FirstStage | None:
    """A 22.7+ first-stage boot sector, or None when `sector` holds no LILO of that layout.
    Raises for a LILO signature with a layout this module does not decode."""
    if len(sector) < SECTOR or sector[6:10] != SIGNATURE:
        return None
    major, minor = sector[10], sector[11]
    if sector[3] != STAGE_FIRST or major not in KNOWN_MAJORS:
        old_major, old_minor = sector[12], sector[13]
        if struct.unpack_from("<H", sector, 10)[0] == STAGE_FIRST and old_major in KNOWN_MAJORS:
            raise LiloFormatError(f"boot sector of LILO {old_major}.{old_minor}: layouts "
                                  "before 22.7 are not decoded")
        raise LiloFormatError("boot sector has a LILO signature but no known layout "
                              f"(stage byte {sector[3]}, version bytes {major}.{minor})")
    map_stamp = struct.unpack_from("<I", sector, 12)[0]
    device, flags = sector[30], sector[31]
    value = struct.unpack_from("<I", sector, 32)[0]
    return FirstStage((major, minor), map_stamp, decode_address6(flags, device, value, geometry))


def read_index(read: ReadFn, disk_sectors: int, first: FirstStage,
               geometry: Geometry | None = None) -> tuple[int, list[int]]:
    """The second-stage index sector: (its sector, the second stage's sectors)."""
    index_lba = locate(first.index, disk_sectors)
    data = _read_sector(read, index_lba, disk_sectors)
    if data[508:512] != SIGNATURE:
        raise LiloFormatError(f"sector {index_lba} is not LILO's second-stage index "
                              "(no \"LILO\" at its end)")
    flags = {"lba32": LBA32_FLAG, "linear": LINEAR_FLAG}.get(first.index.mode, 0)
    sectors = []
    for slot in range(MAX_INDEX_ENTRIES):
        value = struct.unpack_from("<I", data, slot * 4)[0]
        if value == 0:
            break
        address = decode_address6(flags, first.index.device, value, geometry)
        sectors.append(locate(address, disk_sectors))
    if not sectors:
        raise LiloFormatError(f"second-stage index at sector {index_lba} is empty")
    return index_lba, sectors


def parse_second_stage(sector: bytes) -> SecondStage:
    if len(sector) < SECTOR or sector[6:10] != SIGNATURE:
        raise LiloFormatError("no second-stage loader (\"LILO\" signature) where expected")
    if sector[16] != STAGE_SECOND:
        raise LiloFormatError(f"second-stage loader has stage {sector[16]}, expected 2")
    map_stamp = struct.unpack_from("<I", sector, 12)[0]
    return SecondStage((sector[10], sector[11]), map_stamp, bytes(sector[26:31]))


def keytable_descriptor_addresses(sector: bytes, descr_sectors: int) -> list[bytes]:
    """The descriptor sectors' addresses kept in the keytable sector (menu table at 256);
    raises when its checksum does not match."""
    if not 1 <= descr_sectors <= MAX_DESCR_SECTORS or len(sector) < SECTOR:
        raise LiloFormatError("bad descriptor sector count for the keytable")
    stored = struct.unpack_from("<I", sector, 504)[0]
    if lilo_crc32(sector[:504]) != stored:
        raise LiloFormatError("keytable sector checksum does not match")
    # menu table: 88 bytes of menu settings, 16 BIOS serial numbers, (18 - D) RAID
    # offsets, the RAID mask, then the message and default-command-line addresses
    offset = 256 + 88 + 4 * 16 + 4 * (MAX_DESCR_SECTORS + 6 - descr_sectors) + 2 + 10
    return [bytes(sector[offset + i * ADDR_SIZE:offset + (i + 1) * ADDR_SIZE])
            for i in range(descr_sectors)]


# descriptor layouts: entry size -> (password hash bytes, start_page field present)
_DESCR_LAYOUTS = ((54, 20, False), (42, 8, False), (56, 20, True), (44, 8, True))


def descriptor_sector_count(map_head: bytes) -> int:
    """D, found by the checksum LILO keeps at the end of the descriptor sectors."""
    for count in range(1, MAX_DESCR_SECTORS + 1):
        end = SECTOR + count * SECTOR
        if len(map_head) < end:
            break
        stored = struct.unpack_from("<I", map_head, end - 4)[0]
        if lilo_crc32(map_head[SECTOR:end - 4]) == stored:
            return count
    raise LiloFormatError("map file has no descriptor table (no checksum matches 1-12 "
                          "descriptor sectors)")


def parse_descriptors(map_head: bytes, labels: tuple[str, ...] = ()) -> DescriptorTable:
    """The image descriptors from the start of the map file (at least (D+1)*512 bytes).
    The entry size depends on LILO's build options; the one whose entries are all
    well-formed and followed only by zeros is taken (with `labels` breaking a tie)."""
    count = descriptor_sector_count(map_head)
    area = map_head[SECTOR:SECTOR + count * SECTOR - 4]
    fits = []
    for size, password, start_page in _DESCR_LAYOUTS:
        images = _parse_entries(area, size, password, start_page)
        if images is not None:
            fits.append(DescriptorTable(count, size, images))
    if not fits:
        raise LiloFormatError("map file descriptors are in no known layout")
    if labels and len(fits) > 1:
        wanted = set(labels)
        fits.sort(key=lambda t: -sum(image.name in wanted for image in t.images))
    return fits[0]


def _parse_entries(area: bytes, size: int, password: int,
                   start_page: bool) -> tuple[ImageDescriptor, ...] | None:
    limit = (len(area) - 1) // size
    images = []
    for index in range(limit):
        entry = area[index * size:(index + 1) * size]
        if entry[0] == 0:
            break
        name_field = entry[:MAX_IMAGE_NAME + 1]
        end = name_field.find(b"\0")
        if end < 1 or any(b < 0x21 or b > 0x7E for b in name_field[:end]) \
                or any(name_field[end:]):
            return None
        base = MAX_IMAGE_NAME + 1 + password + 4
        initrd = bytes(entry[base:base + ADDR_SIZE])
        start = bytes(entry[base + ADDR_SIZE:base + 2 * ADDR_SIZE])
        flags_at = base + 2 * ADDR_SIZE + (2 if start_page else 0)
        flags = struct.unpack_from("<H", entry, flags_at)[0]
        if is_end(start) or not start[2] & 0x80 and start[2] & 0x70:
            return None  # every entry maps something; floppy codes carry no flags
        images.append(ImageDescriptor(name_field[:end].decode("ascii"), flags, start,
                                      None if is_end(initrd) else initrd))
    if not images or any(area[len(images) * size:]):
        return None
    return tuple(images)


def geometry_from_mbr(mbr: bytes) -> Geometry | None:
    """The C/H/S geometry the partition table was written with, when every entry agrees
    (end head + 1, end sector, and each start C/H/S maps back to its start LBA)."""
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        return None
    found: set[tuple[int, int]] = set()
    starts = []
    for number in range(4):
        entry = mbr[446 + 16 * number:446 + 16 * (number + 1)]
        if entry[4] == 0:
            continue
        end_head = entry[5]
        end_sector = entry[6] & 0x3F
        if end_sector == 0:
            return None
        found.add((end_head + 1, end_sector))
        starts.append((entry[1], entry[2], entry[3], struct.unpack_from("<I", entry, 8)[0]))
    if len(found) != 1:
        return None
    heads, sectors = found.pop()
    geometry = Geometry(heads, sectors)
    for head, sec, cyl, lba in starts:
        cylinder = cyl | (sec & 0xC0) << 2
        if cylinder >= 1023:
            continue  # C/H/S saturates there; the LBA is all there is
        if (cylinder * heads + head) * sectors + (sec & 0x3F) - 1 != lba:
            return None
    return geometry
