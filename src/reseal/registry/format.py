"""regf on-disk layout: constants, struct layouts, checksums, name hashing and ordering.

Offsets of cells are relative to the first hive bin (file offset 4096), as in the format.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

BASE_BLOCK_SIZE = 4096
HBIN_ALIGN = 4096
HBIN_HEADER_SIZE = 32
NIL = 0xFFFFFFFF
BIG_DATA_SEGMENT = 16344  # largest value data kept in one cell; more goes into db segments
BIG_DATA_MIN_MINOR = 4  # db cells exist from regf 1.4 on

# nk flags
KEY_VOLATILE = 0x0001
KEY_HIVE_EXIT = 0x0002
KEY_HIVE_ENTRY = 0x0004
KEY_NO_DELETE = 0x0008
KEY_SYM_LINK = 0x0010
KEY_COMP_NAME = 0x0020
# vk flags
VALUE_COMP_NAME = 0x0001

# nk cell data after the 4-byte size: sig, flags, timestamp, 15 dwords, name len, class len
NK = struct.Struct("<2sHQ15IHH")
NK_SIZE = NK.size  # 76
NK_OFF_FLAGS = 2
NK_OFF_TIME = 4
NK_OFF_PARENT = 0x10
NK_OFF_NSUB = 0x14
NK_OFF_SUBLIST = 0x1C
NK_OFF_NVALUES = 0x24
NK_OFF_VALUELIST = 0x28
NK_OFF_SK = 0x2C
NK_OFF_CLASS = 0x30
NK_OFF_MAXSUBNAME = 0x34
NK_OFF_MAXCLASS = 0x38
NK_OFF_MAXVALNAME = 0x3C
NK_OFF_MAXVALDATA = 0x40
NK_OFF_NAMELEN = 0x48
NK_OFF_CLASSLEN = 0x4A
# vk cell data: sig, name len, data size, data offset, type, flags, spare
VK = struct.Struct("<2sHIIIHH")
VK_SIZE = VK.size  # 20
# sk cell data: sig, reserved, flink, blink, refcount, descriptor size
SK = struct.Struct("<2sHIIII")
SK_SIZE = SK.size  # 20

U32 = struct.Struct("<I")
I32 = struct.Struct("<i")
U16 = struct.Struct("<H")

_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def filetime_to_datetime(value: int) -> datetime:
    """Convert a FILETIME (100 ns since 1601) to an aware datetime; garbage clamps to the epoch."""
    try:
        return _EPOCH + timedelta(microseconds=value // 10)
    except OverflowError:
        return _EPOCH


def datetime_to_filetime(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def now_filetime() -> int:
    return datetime_to_filetime(datetime.now(UTC))


def base_block_checksum(block: bytes | bytearray | memoryview) -> int:
    """XOR of the first 508 bytes as dwords; 0 becomes 1 and 0xFFFFFFFF becomes 0xFFFFFFFE."""
    acc = 0
    for (word,) in struct.iter_unpack("<I", bytes(block[:508])):
        acc ^= word
    if acc == 0:
        return 1
    if acc == 0xFFFFFFFF:
        return 0xFFFFFFFE
    return acc


def upcase(name: str) -> str:
    """Upper-case one character at a time, as RtlUpcaseUnicodeString does (no expansions)."""
    out = []
    for ch in name:
        up = ch.upper()
        out.append(up if len(up) == 1 else ch)
    return "".join(out)


def sort_key(name: str) -> bytes:
    """Windows orders subkeys by the upcased names compared as UTF-16 code units."""
    return upcase(name).encode("utf-16-be", "surrogatepass")


def lh_hash(name: str) -> int:
    value = 0
    data = upcase(name).encode("utf-16-le", "surrogatepass")
    for (unit,) in struct.iter_unpack("<H", data):
        value = (value * 37 + unit) & 0xFFFFFFFF
    return value


def lf_hint(name: str) -> int:
    hint = bytes(ord(ch) & 0xFF for ch in name[:4]).ljust(4, b"\0")
    return int(U32.unpack(hint)[0])


def encode_name(name: str) -> tuple[bytes, bool]:
    """Names of Latin-1 characters are stored compressed (one byte each), others as UTF-16LE."""
    try:
        return name.encode("latin-1"), True
    except UnicodeEncodeError:
        return name.encode("utf-16-le", "surrogatepass"), False


def decode_name(raw: bytes, compressed: bool) -> str:
    if compressed:
        return raw.decode("latin-1")
    return raw.decode("utf-16-le", "surrogatepass") if len(raw) % 2 == 0 else raw[:-1].decode(
        "utf-16-le", "surrogatepass"
    )


def cell_size_for(payload: int) -> int:
    """Cell size (with its 4-byte header) rounded up to a multiple of 8."""
    return (payload + 4 + 7) & ~7


def utf16_length(name: str) -> int:
    """A name's length as the nk "largest name" fields count it: UTF-16 bytes (surrogate pairs
    count four), whether the name is stored compressed or not."""
    return len(name.encode("utf-16-le", errors="surrogatepass"))
