"""A bounded reader of Samba's TDB files (secrets.tdb and the winbind caches).

Read-only, from bytes taken out of an image (hostile): every offset is checked against the
file, hash chains are followed with a visited set and a record budget, and a damaged file
stops with `TdbError`. Records are found the way `tdbdump` finds them: through the hash
table's chains, skipping dead and free records.

Layout (tdb 1.x, in the byte order of the machine that wrote it; the version field tells):
a 168-byte header ("TDB file\\n", version 0x26011967+6, hash_size, ...), then the free list
head and `hash_size` chain heads (uint32 offsets), then records: next, rec_len, key_len,
data_len, full_hash, magic (0x26011999 for a live record), key bytes, data bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC_FOOD = b"TDB file\n"
HEADER_SIZE = 168
TDB_VERSION = 0x26011967 + 6
TDB_MAGIC = 0x26011999
RECORD_HEADER = 24
MAX_TDB_BYTES = 64 << 20
MAX_HASH_SIZE = 1 << 20
MAX_RECORDS = 200_000


class TdbError(ValueError):
    pass


@dataclass(frozen=True)
class TdbRecord:
    key: bytes
    data: bytes = field(repr=False)

    @property
    def key_text(self) -> str:
        return self.key.rstrip(b"\0").decode("utf-8", errors="replace")


def parse_tdb(data: bytes) -> list[TdbRecord]:
    if len(data) > MAX_TDB_BYTES:
        raise TdbError(f"{len(data)} bytes: larger than any TDB reseal reads")
    if len(data) < HEADER_SIZE or not data.startswith(MAGIC_FOOD):
        raise TdbError("not a TDB file (no 'TDB file' header)")
    order = "<"
    (version,) = struct.unpack_from("<I", data, 32)
    if version != TDB_VERSION:
        (version,) = struct.unpack_from(">I", data, 32)
        if version != TDB_VERSION:
            raise TdbError(f"unknown TDB version 0x{version:08x}")
        order = ">"
    (hash_size,) = struct.unpack_from(order + "I", data, 36)
    if not 0 < hash_size <= MAX_HASH_SIZE:
        raise TdbError(f"hash table of {hash_size} chains")
    table_end = HEADER_SIZE + 4 * (hash_size + 1)
    if table_end > len(data):
        raise TdbError("the hash table runs past the end of the file")
    heads = struct.unpack_from(f"{order}{hash_size + 1}I", data, HEADER_SIZE)
    records: list[TdbRecord] = []
    visited: set[int] = set()
    for head in heads[1:]:  # heads[0] is the free list
        offset = head
        while offset:
            if offset in visited:
                raise TdbError(f"record chain loops at offset {offset}")
            visited.add(offset)
            if len(visited) > MAX_RECORDS:
                raise TdbError(f"more than {MAX_RECORDS} records")
            if offset < table_end or offset + RECORD_HEADER > len(data):
                raise TdbError(f"record offset {offset} outside the file's records")
            nxt, rec_len, key_len, data_len, _hash, magic = struct.unpack_from(
                order + "6I", data, offset)
            body = offset + RECORD_HEADER
            if key_len + data_len > rec_len or body + rec_len > len(data):
                raise TdbError(f"record at offset {offset} claims more bytes than it has")
            if magic == TDB_MAGIC:
                records.append(TdbRecord(data[body:body + key_len],
                                         data[body + key_len:body + key_len + data_len]))
            offset = nxt
    return records


def sid_from_samba(raw: bytes) -> str | None:
    """A `struct dom_sid` as Samba stores it (revision, count, 6-byte authority, 15 subauths
    little-endian); None when it is not one."""
    if len(raw) < 8 or raw[0] != 1 or raw[1] > 15 or len(raw) < 8 + 4 * raw[1]:
        return None
    authority = int.from_bytes(raw[2:8], "big")
    subs = struct.unpack_from("<" + "I" * raw[1], raw, 8)
    return "S-1-" + "-".join([str(authority), *map(str, subs)])
