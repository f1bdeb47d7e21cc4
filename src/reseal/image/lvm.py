"""LVM2 on-disk format, read and written in userspace (this kernel has no device-mapper).

A physical volume (PV) carries a label in one of its first four sectors: "LABELONE", the
sector number, a CRC, the offset of the PV header and "LVM2 001". The PV header holds the PV
UUID, the device size, the data areas and the metadata areas (two lists of (offset, size) pairs,
each ended by a zero pair). A metadata area starts with a 512-byte header (CRC, magic, version,
its own start and size, and raw_locn entries); raw_locn[0] points at the committed metadata text,
kept in the circular buffer after the header (it may wrap to just after the header).

The text is LVM's configuration format: sections `name { ... }`, assignments `key = value`,
values are numbers, quoted strings or arrays of those. reseal parses it with its own bounded
parser that remembers where each value sits, so a rewrite changes the values it means to and
keeps every other byte.

Nothing read from a disk is trusted: every offset and size is checked against the device it
was read from, lists and nesting are bounded, and the checksums are verified.
"""

from __future__ import annotations

import random
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from reseal.errors import CorruptData

ReadFn = Callable[[int, int], bytes]

SECTOR = 512
LABEL_SCAN_SECTORS = 4
LABEL_ID = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
MDA_MAGIC = b" LVM2 x[5A%r0N*>"
MDA_HEADER_SIZE = 512
MDA_VERSION = 1
INITIAL_CRC = 0xF597A6CF
RAW_LOCN_IGNORED = 0x1
MAX_AREAS = 8  # data or metadata areas per PV (LVM writes at most 2 of each)
MAX_RAW_LOCNS = 4
MAX_TEXT = 64 << 20  # largest metadata text reseal reads
MAX_DEPTH = 32
MAX_NODES = 1_000_000
UUID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#"
UUID_GROUPS = (6, 4, 4, 4, 4, 4, 6)


def lvm_crc(data: bytes, initial: int = INITIAL_CRC) -> int:
    """LVM's CRC: the reflected CRC-32 polynomial, its own start value, no final inversion."""
    return zlib.crc32(data, initial ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def dashed(raw: str) -> str:
    """A 32-character LVM id in the 6-4-4-4-4-4-6 form that `pvs`/`vgs`/`lvs` print."""
    parts, pos = [], 0
    for width in UUID_GROUPS:
        parts.append(raw[pos:pos + width])
        pos += width
    return "-".join(parts)


def undashed(uuid: str) -> str:
    return uuid.replace("-", "")


def is_lvm_id(raw: str) -> bool:
    return len(raw) == 32 and all(c in UUID_CHARS for c in raw)


# ------------------------------------------------------------------------- PV label
@dataclass(frozen=True)
class MetadataArea:
    """One metadata area of a PV (offsets in bytes from the PV's first byte)."""

    start: int
    size: int
    text_offset: int  # from `start`; 0 when the area holds no metadata
    text_size: int  # bytes, including the NUL LVM ends the text with
    text_checksum: int
    ignored: bool  # `pvchange --metadataignore y`: LVM keeps no metadata here
    header: bytes  # the 512-byte area header as read


@dataclass(frozen=True)
class PvLabel:
    """A PV label and header (offsets in bytes from the PV's first byte)."""

    sector: int  # the sector the label is in (0..3)
    header_offset: int  # the PV header's offset inside that sector
    uuid: str  # dashed form
    device_size: int
    data_start: int  # first data area's offset (the PV's pe_start in bytes), 0 if none
    metadata_areas: tuple[MetadataArea, ...]
    raw: bytes  # the label sector as read


def read_pv_label(read: ReadFn, size: int, where: str) -> PvLabel | None:
    """The PV label of a device of `size` bytes, or None when it has none."""
    for sector in range(LABEL_SCAN_SECTORS):
        if (sector + 1) * SECTOR > size:
            return None
        raw = read(sector * SECTOR, SECTOR)
        if raw[0:8] == LABEL_ID:
            return _parse_label(read, size, raw, sector, where)
    return None


def _parse_label(read: ReadFn, size: int, raw: bytes, sector: int, where: str) -> PvLabel:
    own_sector, crc, header_offset = struct.unpack_from("<QII", raw, 8)
    if raw[24:32] != LABEL_TYPE:
        raise CorruptData(f"{where}: LVM label of type {raw[24:32]!r}, not LVM2 001")
    if own_sector != sector:
        raise CorruptData(f"{where}: LVM label in sector {sector} says it is in sector {own_sector}")
    if lvm_crc(raw[20:]) != crc:
        raise CorruptData(f"{where}: the LVM label in sector {sector} fails its CRC check")
    if not 32 <= header_offset <= SECTOR - 32 - 16 * 4:
        raise CorruptData(f"{where}: LVM label puts the PV header at byte {header_offset}")
    pos = header_offset
    pv_id = raw[pos:pos + 32].decode("ascii", errors="replace")
    if not is_lvm_id(pv_id):
        raise CorruptData(f"{where}: the LVM label holds no valid PV UUID")
    device_size = struct.unpack_from("<Q", raw, pos + 32)[0]
    pos += 40
    data_areas, pos = _disk_locns(raw, pos, where, "data")
    meta_areas, pos = _disk_locns(raw, pos, where, "metadata")
    for offset, length in data_areas + meta_areas:
        if offset + length > size:
            raise CorruptData(f"{where}: an LVM area ends at byte {offset + length}, past the "
                              f"end of the {size}-byte physical volume")
    areas = tuple(_metadata_area(read, size, offset, length, where)
                  for offset, length in meta_areas)
    return PvLabel(
        sector=sector, header_offset=header_offset, uuid=dashed(pv_id), device_size=device_size,
        data_start=data_areas[0][0] if data_areas else 0, metadata_areas=areas, raw=raw,
    )


def _disk_locns(raw: bytes, pos: int, where: str, what: str) -> tuple[list[tuple[int, int]], int]:
    found: list[tuple[int, int]] = []
    while True:
        if pos + 16 > len(raw):
            raise CorruptData(f"{where}: the LVM {what} area list runs past its sector")
        offset, length = struct.unpack_from("<QQ", raw, pos)
        pos += 16
        if offset == 0:
            return found, pos
        if len(found) >= MAX_AREAS:
            raise CorruptData(f"{where}: more than {MAX_AREAS} LVM {what} areas")
        found.append((offset, length))


def _metadata_area(read: ReadFn, size: int, start: int, length: int, where: str) -> MetadataArea:
    if start % SECTOR or length < 2 * MDA_HEADER_SIZE or start + length > size:
        raise CorruptData(f"{where}: LVM metadata area at byte {start} ({length} bytes) does not "
                          "fit the physical volume")
    header = read(start, MDA_HEADER_SIZE)
    if header[4:20] != MDA_MAGIC:
        raise CorruptData(f"{where}: no LVM metadata header at byte {start}")
    if lvm_crc(header[4:]) != struct.unpack_from("<I", header, 0)[0]:
        raise CorruptData(f"{where}: the LVM metadata header at byte {start} fails its CRC check")
    version, own_start, own_size = struct.unpack_from("<IQQ", header, 20)
    if version != MDA_VERSION or own_start != start or own_size != length:
        raise CorruptData(f"{where}: LVM metadata header at byte {start} describes another area "
                          f"(version {version}, start {own_start}, size {own_size})")
    offset, text_size, checksum, flags = struct.unpack_from("<QQII", header, 40)
    if offset and (not MDA_HEADER_SIZE <= offset < length
                   or not 0 < text_size <= min(length - MDA_HEADER_SIZE, MAX_TEXT)):
        raise CorruptData(f"{where}: LVM metadata header at byte {start} points at {text_size} "
                          f"bytes at offset {offset}, outside its {length}-byte area")
    return MetadataArea(start, length, offset, text_size if offset else 0, checksum,
                        bool(flags & RAW_LOCN_IGNORED), header)


def read_metadata_text(read: ReadFn, area: MetadataArea, where: str) -> bytes | None:
    """The committed metadata text of an area (None when it holds none), checksum verified."""
    if area.ignored or area.text_offset == 0:
        return None
    data = b"".join(read(area.start + offset, length)
                    for offset, length in _ring_pieces(area, area.text_offset, area.text_size))
    if lvm_crc(data) != area.text_checksum:
        raise CorruptData(f"{where}: LVM metadata text at byte {area.start + area.text_offset} "
                          "fails its checksum")
    return data


def _ring_pieces(area: MetadataArea, offset: int, length: int) -> list[tuple[int, int]]:
    """(offset, length) pieces of a text in the circular buffer after the area header."""
    first = min(length, area.size - offset)
    pieces = [(offset, first)]
    if length > first:
        pieces.append((MDA_HEADER_SIZE, length - first))
    return pieces


# ------------------------------------------------------------------------- text format
Scalar = int | float | str
Value = Scalar | list[Scalar]


@dataclass
class Section:
    """One `name { ... }` of LVM's text format; `spans` are byte ranges of scalar values."""

    name: str
    values: dict[str, Value] = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    string_spans: list[tuple[int, int, str]] = field(default_factory=list)  # every string inside

    def get_int(self, key: str, where: str) -> int:
        value = self.values.get(key)
        if not isinstance(value, int) or value < 0:
            raise CorruptData(f"{where}: LVM metadata {self.name}/{key} is {value!r}, expected "
                              "a non-negative number")
        return value

    def get_str(self, key: str, default: str | None = None) -> str | None:
        value = self.values.get(key, default)
        return value if isinstance(value, str) else default

    def get_list(self, key: str) -> list[Scalar]:
        value = self.values.get(key)
        return value if isinstance(value, list) else []


_TOKEN = re.compile(
    rb'(?P<skip>[ \t\r\n\f\v]+|#[^\n]*)'
    rb'|(?P<str>"(?:[^"\\]|\\.)*")'
    rb'|(?P<word>[A-Za-z0-9_+.\-]+)'
    rb'|(?P<punct>[{}\[\]=,])',
    re.S,
)
_NUMBER = re.compile(rb"[+-]?[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class _Token:
    kind: str  # "str", "word", "punct"
    text: bytes
    start: int
    end: int


def _tokens(text: bytes, where: str) -> Iterator[_Token]:
    pos = 0
    count = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise CorruptData(f"{where}: LVM metadata has an unexpected byte {text[pos:pos + 1]!r} "
                              f"at offset {pos}")
        kind = match.lastgroup or ""
        if kind != "skip":
            count += 1
            if count > MAX_NODES:
                raise CorruptData(f"{where}: LVM metadata has more than {MAX_NODES} tokens")
            yield _Token(kind, match.group(0), match.start(), match.end())
        pos = match.end()


def _scalar(token: _Token, where: str) -> Scalar:
    if token.kind == "str":
        body = token.text[1:-1]
        return re.sub(rb"\\(.)", rb"\1", body, flags=re.S).decode("utf-8", "surrogateescape")
    if token.kind == "word" and _NUMBER.fullmatch(token.text):
        return float(token.text) if b"." in token.text else int(token.text)
    raise CorruptData(f"{where}: LVM metadata value {token.text[:40]!r} at offset {token.start} "
                      "is neither a number nor a quoted string")


def parse_text(text: bytes, where: str) -> Section:
    """Parse LVM's text format into nested sections (bounded in depth and size)."""
    if len(text) > MAX_TEXT:
        raise CorruptData(f"{where}: {len(text)} bytes of LVM metadata is more than reseal reads")
    text = text.split(b"\x00", 1)[0]
    tokens = list(_tokens(text, where))
    root = Section("")
    stack = [root]
    pos = 0

    def expect(kind: str, what: bytes | None = None) -> _Token:
        nonlocal pos
        if pos >= len(tokens):
            raise CorruptData(f"{where}: LVM metadata ends in the middle of a statement")
        token = tokens[pos]
        if token.kind != kind or (what is not None and token.text != what):
            raise CorruptData(f"{where}: LVM metadata has {token.text[:40]!r} at offset "
                              f"{token.start} where {(what or kind.encode()).decode()} belongs")
        pos += 1
        return token

    while pos < len(tokens):
        token = tokens[pos]
        if token.kind == "punct" and token.text == b"}":
            if len(stack) == 1:
                raise CorruptData(f"{where}: LVM metadata closes a section never opened "
                                  f"(offset {token.start})")
            stack.pop()
            pos += 1
            continue
        name = expect("word").text.decode("ascii")
        if pos < len(tokens) and tokens[pos].text == b"{":
            pos += 1
            if len(stack) >= MAX_DEPTH:
                raise CorruptData(f"{where}: LVM metadata nests deeper than {MAX_DEPTH} levels")
            section = Section(name)
            stack[-1].sections[name] = section
            stack.append(section)
            continue
        expect("punct", b"=")
        owner = stack[-1]
        if pos < len(tokens) and tokens[pos].text == b"[":
            pos += 1
            items: list[Scalar] = []
            while True:
                if pos < len(tokens) and tokens[pos].text == b"]":
                    pos += 1
                    break
                if items:
                    expect("punct", b",")
                item = tokens[pos] if pos < len(tokens) else None
                if item is None:
                    raise CorruptData(f"{where}: LVM metadata ends inside an array")
                items.append(_scalar(item, where))
                _note_string(stack, item, items[-1])
                pos += 1
            owner.values[name] = items
        else:
            if pos >= len(tokens):
                raise CorruptData(f"{where}: LVM metadata ends after {name} =")
            item = tokens[pos]
            scalar = _scalar(item, where)
            owner.values[name] = scalar
            owner.spans[name] = (item.start, item.end)
            _note_string(stack, item, scalar)
            pos += 1
    if len(stack) != 1:
        raise CorruptData(f"{where}: LVM metadata ends inside section {stack[-1].name!r}")
    return root


def _note_string(stack: list[Section], token: _Token, value: Scalar) -> None:
    if token.kind == "str" and isinstance(value, str):
        for section in stack:
            section.string_spans.append((token.start, token.end, value))


def quote(value: str) -> bytes:
    return b'"' + value.encode("utf-8", "surrogateescape").replace(b"\\", b"\\\\").replace(
        b'"', b'\\"') + b'"'


# ------------------------------------------------------------------------- volume groups
LINEAR = "striped"


@dataclass(frozen=True)
class VgPhysicalVolume:
    key: str  # "pv0" as the metadata names it
    uuid: str
    pe_start: int  # sectors
    pe_count: int
    device_hint: str


@dataclass(frozen=True)
class Stripe:
    pv: str  # "pv0"
    extent: int  # first physical extent on that PV


@dataclass(frozen=True)
class Segment:
    start_extent: int
    extent_count: int
    type: str  # "striped" (linear when one stripe), "thin", "raid1", ...
    stripes: tuple[Stripe, ...]
    origin: str = ""  # snapshot segments: the LV they snapshot


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    uuid: str
    visible: bool
    segments: tuple[Segment, ...]

    @property
    def extent_count(self) -> int:
        return sum(s.extent_count for s in self.segments)

    def segment_summary(self) -> str:
        kinds = []
        for seg in self.segments:
            kind = "linear" if seg.type == LINEAR and len(seg.stripes) == 1 else (
                f"striped x{len(seg.stripes)}" if seg.type == LINEAR else seg.type)
            if kind not in kinds:
                kinds.append(kind)
        return ", ".join(kinds) + (f" ({len(self.segments)} segments)"
                                   if len(self.segments) > 1 else "")


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    uuid: str
    seqno: int
    extent_size: int  # sectors
    physical_volumes: tuple[VgPhysicalVolume, ...]
    logical_volumes: tuple[LogicalVolume, ...]
    text: bytes  # the committed metadata text, NUL included

    def pv(self, key: str) -> VgPhysicalVolume | None:
        return next((pv for pv in self.physical_volumes if pv.key == key), None)


def parse_volume_group(text: bytes, where: str) -> VolumeGroup:
    root = parse_text(text, where)
    if root.get_str("contents") != "Text Format Volume Group" or root.values.get("version") != 1:
        raise CorruptData(f"{where}: the LVM metadata is not version 1 volume group text")
    if len(root.sections) != 1:
        raise CorruptData(f"{where}: LVM metadata holds {len(root.sections)} volume groups, "
                          "expected one")
    vg = next(iter(root.sections.values()))
    here = f"{where}: volume group {vg.name}"
    vg_id = undashed(vg.get_str("id") or "")
    if not is_lvm_id(vg_id):
        raise CorruptData(f"{here}: no valid id")
    extent_size = vg.get_int("extent_size", here)
    if extent_size == 0:
        raise CorruptData(f"{here}: extent size 0")
    pvs = []
    for key, section in vg.sections.get("physical_volumes", Section("")).sections.items():
        pv_id = undashed(section.get_str("id") or "")
        if not is_lvm_id(pv_id):
            raise CorruptData(f"{here}: physical volume {key} has no valid id")
        pvs.append(VgPhysicalVolume(key, dashed(pv_id), section.get_int("pe_start", here),
                                    section.get_int("pe_count", here),
                                    section.get_str("device") or ""))
    lvs = []
    for name, section in vg.sections.get("logical_volumes", Section("")).sections.items():
        lv_id = undashed(section.get_str("id") or "")
        if not is_lvm_id(lv_id):
            raise CorruptData(f"{here}: logical volume {name} has no valid id")
        status = [s for s in section.get_list("status") if isinstance(s, str)]
        segments = []
        for seg_name, seg in sorted(section.sections.items()):
            if not seg_name.startswith("segment"):
                continue
            segments.append(_segment(seg, f"{here}: {name}/{seg_name}"))
        segments.sort(key=lambda s: s.start_extent)
        lvs.append(LogicalVolume(name, dashed(lv_id), "VISIBLE" in status, tuple(segments)))
    return VolumeGroup(vg.name, dashed(vg_id), vg.get_int("seqno", here), extent_size,
                       tuple(pvs), tuple(lvs), text)


def _segment(seg: Section, where: str) -> Segment:
    kind = seg.get_str("type") or ""
    stripes: list[Stripe] = []
    if kind == LINEAR:
        raw = seg.get_list("stripes")
        count = seg.get_int("stripe_count", where)
        if len(raw) != 2 * count or count == 0:
            raise CorruptData(f"{where}: {count} stripes but {len(raw)} stripe values")
        for pv, extent in zip(raw[0::2], raw[1::2], strict=True):
            if not isinstance(pv, str) or not isinstance(extent, int) or extent < 0:
                raise CorruptData(f"{where}: bad stripe {pv!r}, {extent!r}")
            stripes.append(Stripe(pv, extent))
    return Segment(seg.get_int("start_extent", where), seg.get_int("extent_count", where), kind,
                   tuple(stripes), seg.get_str("origin") or "")


def metadata_ids(text: bytes, where: str) -> list[str]:
    """Every `id` in the volume group's metadata (VG, PVs, LVs, hidden and historical LVs)."""
    root = parse_text(text, where)
    found: list[str] = []

    def walk(section: Section) -> None:
        value = section.get_str("id")
        if value is not None and is_lvm_id(undashed(value)):
            found.append(value)
        for child in section.sections.values():
            walk(child)

    for vg in root.sections.values():
        walk(vg)
    return found


def new_id(source: random.Random) -> str:
    """A new LVM id (dashed), drawn from letters and digits, as LVM's own ids are."""
    return dashed("".join(source.choice(UUID_CHARS[:62]) for _ in range(32)))


def rewrite_text(text: bytes, id_map: dict[str, str], seqno: int, where: str) -> bytes:
    """The metadata text with every string equal to an old id (dashed) replaced by its new id
    and the VG's seqno set; every other byte stays."""
    root = parse_text(text, where)
    vg = next(iter(root.sections.values()))
    edits: list[tuple[int, int, bytes]] = []
    for start, end, value in vg.string_spans:
        if value in id_map:
            edits.append((start, end, quote(id_map[value])))
    if "seqno" not in vg.spans:
        raise CorruptData(f"{where}: volume group {vg.name} has no seqno")
    start, end = vg.spans["seqno"]
    edits.append((start, end, str(seqno).encode()))
    body = text.split(b"\x00", 1)[0]
    out = bytearray()
    pos = 0
    for start, end, new in sorted(edits):
        out += body[pos:start] + new
        pos = end
    out += body[pos:]
    return bytes(out) + b"\x00"


# ------------------------------------------------------------------------- writing
def new_label_sector(label: PvLabel, new_uuid: str) -> bytes:
    """The label sector with another PV UUID and its CRC recomputed."""
    raw = bytearray(label.raw)
    pos = label.header_offset
    raw[pos:pos + 32] = undashed(new_uuid).encode("ascii")
    struct.pack_into("<I", raw, 16, lvm_crc(bytes(raw[20:])))
    return bytes(raw)


def metadata_writes(area: MetadataArea, text: bytes, where: str) -> list[tuple[int, bytes]]:
    """(offset from the PV start, bytes) to commit `text` in `area`: the text first, in free
    space after the current copy (so a crash before the header write leaves the old text
    committed), then the header pointing at it."""
    ring = area.size - MDA_HEADER_SIZE
    old_end = area.text_offset + area.text_size if area.text_offset else MDA_HEADER_SIZE
    if old_end > area.size:  # the current text wraps
        old_end = MDA_HEADER_SIZE + old_end - area.size
    offset = -(-old_end // SECTOR) * SECTOR
    if offset >= area.size:
        offset = MDA_HEADER_SIZE
    used = area.text_size
    if used + len(text) + SECTOR > ring:
        raise CorruptData(f"{where}: the LVM metadata area ({area.size} bytes) is too small to "
                          f"hold the new metadata ({len(text)} bytes) beside the current copy")
    writes = []
    pos = 0
    for piece_offset, length in _ring_pieces(area, offset, len(text)):
        writes.append((area.start + piece_offset, text[pos:pos + length]))
        pos += length
    header = bytearray(area.header)
    struct.pack_into("<QQII", header, 40, offset, len(text), lvm_crc(text), 0)
    header[64:64 + 24 * (MAX_RAW_LOCNS - 1)] = bytes(24 * (MAX_RAW_LOCNS - 1))  # no precommit
    struct.pack_into("<I", header, 0, lvm_crc(bytes(header[4:])))
    writes.append((area.start, bytes(header)))
    return writes


# ------------------------------------------------------------------------- a disk's LVM
@dataclass(frozen=True)
class PhysicalVolume:
    """A PV found on the disk: which volume holds it and where (bytes from the disk start)."""

    volume: str  # key of the volume (partition) holding it: "p3", "disk"
    start: int
    size: int
    label: PvLabel

    def reader(self, read_disk: ReadFn) -> ReadFn:
        def read(offset: int, length: int) -> bytes:
            if offset < 0 or length < 0 or offset + length > self.size:
                raise CorruptData(f"{self.volume}: LVM structure at bytes {offset}.."
                                  f"{offset + length}, outside the {self.size}-byte PV")
            return read_disk(self.start + offset, length)

        return read


@dataclass(frozen=True)
class MetadataCopy:
    pv: PhysicalVolume
    area: MetadataArea
    group: VolumeGroup


@dataclass(frozen=True)
class LvPlacement:
    """Where a logical volume's bytes are on the disk, or why reseal cannot attach it."""

    vg: str
    lv: LogicalVolume
    start: int  # bytes from the disk start (when attachable)
    size: int
    reason: str = ""  # empty when the LV is one contiguous range reseal can attach

    @property
    def mapper_name(self) -> str:
        return mapper_name(self.vg, self.lv.name)


@dataclass
class GroupOnDisk:
    """A volume group as found on this disk: its newest metadata and every copy of it."""

    group: VolumeGroup
    pvs: dict[str, PhysicalVolume]  # metadata key ("pv0") -> the PV on this disk
    copies: list[MetadataCopy]
    placements: list[LvPlacement] = field(default_factory=list)
    problem: str = ""  # why reseal will not rewrite this group's metadata

    @property
    def name(self) -> str:
        return self.group.name


@dataclass
class LvmLayout:
    physical_volumes: list[PhysicalVolume] = field(default_factory=list)
    groups: list[GroupOnDisk] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # PV volume -> bad metadata copy


def mapper_name(vg: str, lv: str) -> str:
    """The /dev/mapper name of an LV: dashes inside each name doubled, then joined by one."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


def scan_lvm(read_disk: ReadFn, candidates: list[tuple[str, int, int]], where: str) -> LvmLayout:
    """Find the PVs among `candidates` ((volume key, start, size) on the disk), read their
    metadata and place each logical volume. Problems are collected, not raised: a damaged VG
    must not hide the rest of the disk."""
    layout = LvmLayout()
    copies: dict[str, list[MetadataCopy]] = {}
    for key, start, size in candidates:
        here = f"{where} {key}"
        probe_pv = PhysicalVolume(key, start, size, PvLabel(0, 0, "", 0, 0, (), b""))
        try:
            label = read_pv_label(probe_pv.reader(read_disk), size, here)
        except CorruptData as exc:
            layout.problems.append(f"{key}: {exc}")
            continue
        if label is None:
            continue
        pv = PhysicalVolume(key, start, size, label)
        layout.physical_volumes.append(pv)
        for area in label.metadata_areas:
            try:
                text = read_metadata_text(pv.reader(read_disk), area, here)
                if text is None:
                    continue
                group = parse_volume_group(text, here)
            except CorruptData as exc:
                layout.problems.append(f"{key}: {exc}; this metadata copy is not used")
                layout.unreadable[key] = str(exc)
                continue
            copies.setdefault(undashed(group.uuid), []).append(MetadataCopy(pv, area, group))
    seen_names: set[str] = set()
    for vg_copies in sorted(copies.values(), key=lambda c: c[0].group.name):
        found = _group_on_disk(layout, vg_copies)
        if found.name in seen_names:
            layout.problems.append(f"two volume groups named {found.name} on one disk: the "
                                   "second is not opened")
            continue
        seen_names.add(found.name)
        layout.groups.append(found)
    return layout


def _group_on_disk(layout: LvmLayout, copies: list[MetadataCopy]) -> GroupOnDisk:
    newest = max(copies, key=lambda c: c.group.seqno).group
    result = GroupOnDisk(newest, {}, copies)
    problems = []
    stale = [c for c in copies if c.group.text != newest.text]
    if stale:
        problems.append(
            f"its metadata copies disagree (seqno {sorted({c.group.seqno for c in copies})}); "
            "the newest is used; let LVM repair them in the master (`vgck --updatemetadata "
            f"{newest.name}`) before changing them")
    by_uuid: dict[str, list[PhysicalVolume]] = {}
    for pv in layout.physical_volumes:
        by_uuid.setdefault(pv.label.uuid, []).append(pv)
    missing = []
    for vg_pv in newest.physical_volumes:
        holders = by_uuid.get(vg_pv.uuid, [])
        if len(holders) > 1:
            problems.append(f"PV UUID {vg_pv.uuid} is on {len(holders)} partitions "
                            f"({', '.join(h.volume for h in holders)})")
            continue
        if not holders:
            missing.append(vg_pv.key)
            continue
        pv = holders[0]
        end = (vg_pv.pe_start + vg_pv.pe_count * newest.extent_size) * SECTOR
        if end > pv.size:
            problems.append(f"{vg_pv.key} ({pv.volume}) claims {end} bytes of extents in a "
                            f"{pv.size}-byte partition")
            continue
        result.pvs[vg_pv.key] = pv
        if pv.volume in layout.unreadable:
            problems.append(f"a metadata copy on {pv.volume} is unreadable; let LVM repair it "
                            f"in the master (`vgck --updatemetadata {newest.name}`)")
    if missing:
        problems.append(f"physical volumes {', '.join(missing)} are not on this disk")
    result.problem = "; ".join(problems)
    origins = {seg.origin for lv in newest.logical_volumes for seg in lv.segments if seg.origin}
    for lv in newest.logical_volumes:
        if lv.visible:
            result.placements.append(_place(newest, result.pvs, lv, origins))
    return result


def _place(group: VolumeGroup, pvs: dict[str, PhysicalVolume], lv: LogicalVolume,
           origins: set[str]) -> LvPlacement:
    extent = group.extent_size * SECTOR
    size = lv.extent_count * extent

    def refuse(reason: str) -> LvPlacement:
        return LvPlacement(group.name, lv, 0, size, reason)

    if not lv.segments:
        return refuse("it has no segments")
    if lv.name in origins:
        return refuse("it has a snapshot: writing it without device-mapper would bypass the "
                      "snapshot's copy-on-write")
    ranges = []
    expected_start = 0
    for seg in lv.segments:
        if seg.type != LINEAR:
            return refuse(f"segment type {seg.type!r}; without device-mapper reseal attaches "
                          "linear logical volumes only")
        if len(seg.stripes) != 1:
            return refuse(f"striped over {len(seg.stripes)} physical volumes; reseal attaches "
                          "linear logical volumes only")
        if seg.start_extent != expected_start:
            return refuse(f"its segments leave a gap at extent {expected_start}")
        stripe = seg.stripes[0]
        vg_pv, pv = group.pv(stripe.pv), pvs.get(stripe.pv)
        if vg_pv is None or pv is None:
            return refuse(f"it lies on {stripe.pv}, which is not on this disk")
        if stripe.extent + seg.extent_count > vg_pv.pe_count:
            return refuse(f"it runs past the last extent of {stripe.pv} (corrupt metadata?)")
        start = pv.start + vg_pv.pe_start * SECTOR + stripe.extent * extent
        ranges.append((start, seg.extent_count * extent))
        expected_start += seg.extent_count
    for (start, length), (next_start, _) in zip(ranges, ranges[1:], strict=False):
        if start + length != next_start:
            return refuse(f"its {len(ranges)} segments are not one contiguous range on the disk "
                          "(reseal attaches an LV as one loop device; move it with pvmove in "
                          "the master or leave it out)")
    return LvPlacement(group.name, lv, ranges[0][0], size)
