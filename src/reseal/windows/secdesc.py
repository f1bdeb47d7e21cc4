"""Self-relative security descriptors (registry sk cells, SAM values, NTFS `system.ntfs_acl`).

Only what a SID change needs: find every SID (owner, group, and the SID of each ACE in the DACL
and SACL, object ACEs included) and rewrite it in place. Every offset read from the descriptor
is checked against its size before use.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from reseal.errors import CorruptData
from reseal.windows.sid import Sid

SE_SELF_RELATIVE = 0x8000
SE_DACL_PRESENT = 0x0004
SE_SACL_PRESENT = 0x0010

# ACE types whose body is ACCESS_MASK followed by a SID (application data may follow the SID)
_PLAIN_ACE_TYPES = {0x00, 0x01, 0x02, 0x03, 0x09, 0x0A, 0x0D, 0x0E, 0x11, 0x12, 0x13}
# object ACEs: ACCESS_MASK, flags, optional object-type GUID, optional inherited GUID, SID
_OBJECT_ACE_TYPES = {0x05, 0x06, 0x07, 0x08, 0x0B, 0x0C, 0x0F, 0x10}
ACE_OBJECT_TYPE_PRESENT = 0x1
ACE_INHERITED_OBJECT_TYPE_PRESENT = 0x2


@dataclass(frozen=True)
class SidSlot:
    """Where a SID sits inside a descriptor, and what it is."""

    offset: int
    sid: Sid
    role: str  # "owner", "group", "dacl", "sacl"


def sid_slots(descriptor: bytes, *, where: str = "security descriptor") -> list[SidSlot]:
    """Every SID of a self-relative descriptor, with its offset."""
    data = descriptor
    if len(data) < 20:
        raise CorruptData(f"{where}: {len(data)} bytes is too short for a security descriptor")
    revision, _sbz, control, off_owner, off_group, off_sacl, off_dacl = struct.unpack_from(
        "<BBHIIII", data, 0
    )
    if revision != 1:
        raise CorruptData(f"{where}: descriptor revision {revision} (expected 1)")
    if not control & SE_SELF_RELATIVE:
        raise CorruptData(f"{where}: descriptor is not self-relative (control {control:#06x})")
    slots: list[SidSlot] = []
    for role, offset in (("owner", off_owner), ("group", off_group)):
        if offset:
            sid, _ = Sid.from_bytes(data, offset, where=f"{where} {role}")
            slots.append(SidSlot(offset, sid, role))
    if control & SE_SACL_PRESENT and off_sacl:
        slots.extend(_acl_slots(data, off_sacl, "sacl", where))
    if control & SE_DACL_PRESENT and off_dacl:
        slots.extend(_acl_slots(data, off_dacl, "dacl", where))
    return slots


def _acl_slots(data: bytes, offset: int, role: str, where: str) -> list[SidSlot]:
    if offset + 8 > len(data):
        raise CorruptData(f"{where}: {role} at offset {offset} runs past the end ({len(data)} bytes)")
    _rev, _sbz, acl_size, ace_count, _sbz2 = struct.unpack_from("<BBHHH", data, offset)
    end = offset + acl_size
    if acl_size < 8 or end > len(data):
        raise CorruptData(f"{where}: {role} size {acl_size} at offset {offset} runs past the end")
    slots: list[SidSlot] = []
    pos = offset + 8
    for index in range(ace_count):
        if pos + 4 > end:
            raise CorruptData(f"{where}: {role} ACE {index} at offset {pos} runs past the ACL")
        ace_type, _flags, ace_size = struct.unpack_from("<BBH", data, pos)
        if ace_size < 4 or pos + ace_size > end:
            raise CorruptData(f"{where}: {role} ACE {index} size {ace_size} at offset {pos} is wrong")
        sid_offset: int | None = None
        if ace_type in _PLAIN_ACE_TYPES:
            sid_offset = pos + 8
        elif ace_type in _OBJECT_ACE_TYPES:
            if pos + 12 > pos + ace_size:
                raise CorruptData(f"{where}: {role} object ACE {index} at offset {pos} is truncated")
            (object_flags,) = struct.unpack_from("<I", data, pos + 8)
            sid_offset = pos + 12
            if object_flags & ACE_OBJECT_TYPE_PRESENT:
                sid_offset += 16
            if object_flags & ACE_INHERITED_OBJECT_TYPE_PRESENT:
                sid_offset += 16
        if sid_offset is not None:
            ace_view = data[: pos + ace_size]
            sid, _ = Sid.from_bytes(ace_view, sid_offset, where=f"{where} {role} ACE {index}")
            slots.append(SidSlot(sid_offset, sid, role))
        pos += ace_size
    return slots


def rewrite_descriptor(
    descriptor: bytes, map_sid: Callable[[Sid], Sid | None], *, where: str = "security descriptor"
) -> bytes | None:
    """Apply `map_sid` to every SID; returns the new descriptor, or None when nothing changed.

    A replacement SID must have the same size as the one it replaces (machine SIDs always do), so
    no offset inside the descriptor moves.
    """
    out: bytearray | None = None
    for slot in sid_slots(descriptor, where=where):
        new = map_sid(slot.sid)
        if new is None or new == slot.sid:
            continue
        if new.size != slot.sid.size:
            raise CorruptData(f"{where}: replacement for {slot.sid} has a different size")
        if out is None:
            out = bytearray(descriptor)
        out[slot.offset : slot.offset + new.size] = new.to_bytes()
    return None if out is None else bytes(out)


def descriptor_sids(descriptor: bytes, *, where: str = "security descriptor") -> list[Sid]:
    return [slot.sid for slot in sid_slots(descriptor, where=where)]


def build_descriptor(
    owner: Sid, group: Sid, dacl: list[tuple[int, int, int, Sid]] | None = None
) -> bytes:
    """A self-relative descriptor with owner, group and a DACL of (type, flags, mask, SID) ACEs.

    Used to build fixture hives and tests; object ACEs are not needed there.
    """
    aces = b""
    for ace_type, flags, mask, sid in dacl or []:
        body = struct.pack("<I", mask) + sid.to_bytes()
        aces += struct.pack("<BBH", ace_type, flags, 4 + len(body)) + body
    control = SE_SELF_RELATIVE | (SE_DACL_PRESENT if dacl is not None else 0)
    header_size = 20
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(aces), len(dacl or []), 0) + aces
    off_dacl = header_size if dacl is not None else 0
    off_owner = header_size + (len(acl) if dacl is not None else 0)
    off_group = off_owner + owner.size
    header = struct.pack("<BBHIIII", 1, 0, control, off_owner, off_group, 0, off_dacl)
    return header + (acl if dacl is not None else b"") + owner.to_bytes() + group.to_bytes()
