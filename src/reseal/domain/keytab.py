"""MIT Kerberos keytab files (format 0x0502): a bounded reader and a writer.

The reader takes keytabs from images, which are hostile: the file size, the number of
entries, every length and count is checked against what is left of the record, and a
damaged entry stops the parse with `KeytabError` rather than an exception from `struct`.
The writer produces what `klist -k` and `kinit -k` read (checked by the tests).

Layout (big-endian): 0x05 0x02, then entries, each `int32 size` (negative = a hole of
that many bytes) followed by: uint16 component count, counted realm, counted components,
uint32 name type, uint32 timestamp, uint8 kvno, uint16 enctype, counted key, and (when
the record has room) a uint32 kvno that supersedes the 8-bit one. Python 3.8+.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from reseal.domain.krbkeys import ENCTYPE_NAMES, KerberosKey

MAGIC = b"\x05\x02"
MAX_KEYTAB_BYTES = 4 << 20
MAX_ENTRIES = 10000
MAX_COMPONENTS = 16
NT_PRINCIPAL = 1
NT_SRV_HST = 3


class KeytabError(ValueError):
    """The bytes are not a keytab this reader accepts (what is wrong, at which offset)."""


@dataclass(frozen=True)
class KeytabEntry:
    realm: str
    components: tuple[str, ...]
    kvno: int
    enctype: int
    key: bytes = field(repr=False)
    timestamp: int = 0
    name_type: int = NT_PRINCIPAL

    @property
    def principal(self) -> str:
        return "/".join(self.components) + "@" + self.realm

    @property
    def enctype_name(self) -> str:
        return ENCTYPE_NAMES.get(self.enctype, f"enctype-{self.enctype}")


class _Reader:
    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.pos, self.end = data, start, end

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > self.end:
            raise KeytabError(f"{what} at offset {self.pos} runs past its entry")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int(struct.unpack(">H", self.take(2, what))[0])

    def u32(self, what: str) -> int:
        return int(struct.unpack(">I", self.take(4, what))[0])

    def counted(self, what: str) -> bytes:
        return self.take(self.u16(what + " length"), what)


def parse_keytab(data: bytes) -> list[KeytabEntry]:
    if len(data) > MAX_KEYTAB_BYTES:
        raise KeytabError(f"{len(data)} bytes: larger than any keytab reseal reads "
                          f"({MAX_KEYTAB_BYTES})")
    if data[:2] != MAGIC:
        if data[:1] == b"\x05" and data[1:2] == b"\x01":
            raise KeytabError("keytab format 0x0501 (native byte order) is not read")
        raise KeytabError("not a keytab (no 0x0502 header)")
    entries: list[KeytabEntry] = []
    pos = 2
    while pos + 4 <= len(data):
        (size,) = struct.unpack(">i", data[pos:pos + 4])
        pos += 4
        if size == 0:
            break  # the rest of the file is unused
        if size < 0:
            pos += -size  # a hole left by a removed entry
            continue
        if pos + size > len(data):
            raise KeytabError(f"entry at offset {pos - 4} claims {size} bytes, the file ends "
                              f"after {len(data) - pos}")
        if len(entries) >= MAX_ENTRIES:
            raise KeytabError(f"more than {MAX_ENTRIES} entries")
        entries.append(_parse_entry(_Reader(data, pos, pos + size)))
        pos += size
    return entries


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _parse_entry(reader: _Reader) -> KeytabEntry:
    count = reader.u16("component count")
    if count == 0 or count > MAX_COMPONENTS:
        raise KeytabError(f"principal with {count} components at offset {reader.pos - 2}")
    realm = _text(reader.counted("realm"))
    components = tuple(_text(reader.counted("component")) for _ in range(count))
    name_type = reader.u32("name type")
    timestamp = reader.u32("timestamp")
    kvno = reader.u8("kvno")
    enctype = reader.u16("enctype")
    key = reader.counted("key")
    if reader.end - reader.pos >= 4:
        kvno = reader.u32("32-bit kvno") or kvno
    return KeytabEntry(realm, components, kvno, enctype, key, timestamp, name_type)


def _counted(raw: str | bytes) -> bytes:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(data) > 0xFFFF:
        raise KeytabError("a keytab string is at most 65535 bytes")
    return struct.pack(">H", len(data)) + data


def serialize_keytab(entries: list[KeytabEntry]) -> bytes:
    out = [MAGIC]
    for entry in entries:
        body = b"".join([
            struct.pack(">H", len(entry.components)),
            _counted(entry.realm),
            *(_counted(c) for c in entry.components),
            struct.pack(">IIBH", entry.name_type, entry.timestamp & 0xFFFFFFFF,
                        entry.kvno & 0xFF, entry.enctype),
            _counted(entry.key),
            struct.pack(">I", entry.kvno),
        ])
        out.append(struct.pack(">i", len(body)) + body)
    return b"".join(out)


def machine_principals(name: str, fqdn: str) -> list[tuple[str, ...]]:
    """The principals adcli writes for a computer: NAME$ and its four SPNs."""
    short = name.upper().rstrip("$")
    return [(short + "$",), ("host", short), ("host", fqdn.lower()),
            ("RestrictedKrbHost", short), ("RestrictedKrbHost", fqdn.lower())]


def machine_entries(realm: str, name: str, fqdn: str, kvno: int, keys: list[KerberosKey],
                    timestamp: int | None = None) -> list[KeytabEntry]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return [KeytabEntry(realm.upper(), principal, kvno, key.enctype, key.key, stamp,
                        NT_PRINCIPAL)
            for principal in machine_principals(name, fqdn) for key in keys]


def replace_principals(existing: list[KeytabEntry], new: list[KeytabEntry]) -> list[KeytabEntry]:
    """`existing` without any entry of the principals in `new`, then `new`."""
    replaced = {(e.realm.upper(), tuple(c.lower() for c in e.components)) for e in new}
    kept = [e for e in existing
            if (e.realm.upper(), tuple(c.lower() for c in e.components)) not in replaced]
    return kept + list(new)
