"""SAM and LSA policy values that embed the machine SID or the computer name.

SAM `V` values start with a table of (offset, length, flags) entries; offsets count from the end
of that table. The domain `V` (SAM\\Domains\\Account) has four entries: its security descriptor
and the machine SID. A user `V` has seventeen: entry 0 is the user object's security descriptor.
An alias `C` value has a fixed header: descriptor offset/length at 4/8, name at 0x10, comment at
0x1C, member SID list offset/length/count at 0x28/0x2C/0x30, data from 0x34.
Every offset is checked against the value's size before use.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from reseal.errors import CorruptData
from reseal.windows.secdesc import rewrite_descriptor
from reseal.windows.sid import Sid

DOMAIN_V_ENTRIES = 4
USER_V_ENTRIES = 17
DOMAIN_V_SD, DOMAIN_V_SID = 0, 1
USER_V_SD, USER_V_NAME = 0, 1
ALIAS_C_BASE = 0x34

SidMap = Callable[[Sid], Sid | None]


@dataclass(frozen=True)
class Field:
    """One entry of a SAM offset table, as absolute positions in the value."""

    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


def offset_table(data: bytes, entries: int, *, where: str) -> list[Field]:
    """Parse the (offset, length, flags) table of a SAM `V` value into absolute fields."""
    base = entries * 12
    if len(data) < base:
        raise CorruptData(f"{where}: {len(data)} bytes is shorter than its {base}-byte offset table")
    fields: list[Field] = []
    for index in range(entries):
        offset, length, _flags = struct.unpack_from("<III", data, index * 12)
        start = base + offset
        if length and (start > len(data) or start + length > len(data)):
            raise CorruptData(
                f"{where}: field {index} (offset {offset:#x}, length {length}) runs past the "
                f"end of the {len(data)}-byte value"
            )
        fields.append(Field(start, length))
    return fields


def domain_sid_from_v(data: bytes, *, where: str = "SAM\\Domains\\Account\\V") -> Sid:
    """The machine SID stored in the account domain's `V` value (entry 1 of its table)."""
    field = offset_table(data, DOMAIN_V_ENTRIES, where=where)[DOMAIN_V_SID]
    sid, size = Sid.from_bytes(data[: field.end], field.start, where=where)
    if size != field.length:
        raise CorruptData(f"{where}: SID field is {field.length} bytes but holds {size}")
    return sid


def rewrite_domain_v(data: bytes, map_sid: SidMap, *, where: str = "SAM\\Domains\\Account\\V") -> bytes:
    """New domain `V` with its SID and its descriptor's SIDs mapped (same size)."""
    fields = offset_table(data, DOMAIN_V_ENTRIES, where=where)
    out = bytearray(data)
    sid_field = fields[DOMAIN_V_SID]
    sid = domain_sid_from_v(data, where=where)
    new_sid = map_sid(sid)
    if new_sid is not None:
        if new_sid.size != sid_field.length:
            raise CorruptData(f"{where}: replacement SID {new_sid} does not fit the SID field")
        out[sid_field.start : sid_field.end] = new_sid.to_bytes()
    _rewrite_sd_field(out, fields[DOMAIN_V_SD], map_sid, where)
    return bytes(out)


def rewrite_user_v(data: bytes, map_sid: SidMap, *, where: str) -> bytes:
    """New user `V` with the SIDs of its security descriptor mapped; hashes are untouched."""
    fields = offset_table(data, USER_V_ENTRIES, where=where)
    out = bytearray(data)
    _rewrite_sd_field(out, fields[USER_V_SD], map_sid, where)
    return bytes(out)


def user_name_from_v(data: bytes, *, where: str) -> str:
    field = offset_table(data, USER_V_ENTRIES, where=where)[USER_V_NAME]
    return data[field.start : field.end].decode("utf-16-le", errors="replace")


def _rewrite_sd_field(out: bytearray, field: Field, map_sid: SidMap, where: str) -> None:
    if not field.length:
        return
    descriptor = bytes(out[field.start : field.end])
    new = rewrite_descriptor(descriptor, map_sid, where=f"{where} descriptor")
    if new is not None:
        out[field.start : field.end] = new


@dataclass(frozen=True)
class AliasC:
    """The parts of an alias `C` value a SID change touches."""

    descriptor: Field
    members: Field
    member_count: int


def parse_alias_c(data: bytes, *, where: str) -> AliasC:
    if len(data) < ALIAS_C_BASE:
        raise CorruptData(f"{where}: {len(data)} bytes is too short for an alias C value")
    sd_offset, sd_length = struct.unpack_from("<II", data, 0x04)
    members_offset, members_length, count = struct.unpack_from("<III", data, 0x28)
    descriptor = Field(ALIAS_C_BASE + sd_offset, sd_length)
    members = Field(ALIAS_C_BASE + members_offset, members_length)
    for name, field in (("descriptor", descriptor), ("member list", members)):
        if field.length and field.end > len(data):
            raise CorruptData(f"{where}: {name} (length {field.length}) runs past the end of the value")
    if count > members_length // 8:
        raise CorruptData(f"{where}: {count} members cannot fit in {members_length} bytes")
    return AliasC(descriptor, members, count)


def alias_members(data: bytes, *, where: str) -> list[Sid]:
    """The member SIDs listed in an alias `C` value."""
    alias = parse_alias_c(data, where=where)
    view = data[: alias.members.end]
    sids: list[Sid] = []
    pos = alias.members.start
    for _ in range(alias.member_count):
        sid, size = Sid.from_bytes(view, pos, where=f"{where} member list")
        sids.append(sid)
        pos += size
    return sids


def rewrite_alias_c(data: bytes, map_sid: SidMap, *, where: str) -> bytes:
    """New alias `C` with member SIDs and descriptor SIDs mapped (same size)."""
    alias = parse_alias_c(data, where=where)
    out = bytearray(data)
    pos = alias.members.start
    view = data[: alias.members.end]
    for _ in range(alias.member_count):
        sid, size = Sid.from_bytes(view, pos, where=f"{where} member list")
        new = map_sid(sid)
        if new is not None:
            if new.size != size:
                raise CorruptData(f"{where}: replacement member SID {new} changes the list size")
            out[pos : pos + size] = new.to_bytes()
        pos += size
    _rewrite_sd_field(out, alias.descriptor, map_sid, where)
    return bytes(out)


# ---------------------------------------------------------------- LSA policy (SECURITY hive)
def decode_policy_name(data: bytes, *, where: str = "Policy\\PolAcDmN") -> str:
    """PolAcDmN / PolPrDmN: UNICODE_STRING header (length, max length, offset) + UTF-16LE."""
    if len(data) < 8:
        raise CorruptData(f"{where}: {len(data)} bytes is too short for a policy name")
    length, _max, offset = struct.unpack_from("<HHI", data, 0)
    if offset + length > len(data):
        raise CorruptData(f"{where}: name of {length} bytes at offset {offset} runs past the end")
    return data[offset : offset + length].decode("utf-16-le", errors="replace")


def encode_policy_name(name: str) -> bytes:
    """The PolAcDmN layout Windows writes: header, UTF-16LE name, NUL terminator."""
    encoded = name.encode("utf-16-le")
    return struct.pack("<HHI", len(encoded), len(encoded) + 2, 8) + encoded + b"\0\0"
