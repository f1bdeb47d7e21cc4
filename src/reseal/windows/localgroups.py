"""Members of the SAM's built-in aliases (local groups), as a domain join adds them.

A Builtin alias keeps its members twice: in its `C` value (`SAM\\Domains\\Builtin\\Aliases\\
<RID>`, member SID list at 0x28/0x2C/0x30, see `reseal.windows.sam`) and in the reverse map
`SAM\\Domains\\Builtin\\Aliases\\Members\\<domain SID>\\<member RID, 8 hex digits>`, whose
default value lists the alias RIDs as DWORDs and whose value *type* is their count (the
domain key's default-value type counts its member keys). The real domain members in
../shared (Windows 7 and 10) hold the domain's Domain Admins (RID 512) in Administrators
(0x220) and Domain Users (513) in Users (0x221) exactly that way.
"""

from __future__ import annotations

import struct

from reseal.errors import CorruptData
from reseal.registry import Hive
from reseal.windows.sam import ALIAS_C_BASE, alias_members, parse_alias_c
from reseal.windows.sid import Sid

BUILTIN_ALIASES = "SAM\\Domains\\Builtin\\Aliases"
ADMINISTRATORS = 0x220
USERS = 0x221
DOMAIN_ADMINS = 512
DOMAIN_USERS = 513
# header fields of an alias C value that hold offsets into its data (relative to 0x34)
_OFFSET_FIELDS = (0x04, 0x10, 0x1C, 0x28)


def add_member_to_c(data: bytes, member: Sid, *, where: str) -> bytes:
    """The alias `C` value with `member` appended to its SID list (offsets after it moved)."""
    alias = parse_alias_c(data, where=where)
    insert_at = alias.members.end
    relative = insert_at - ALIAS_C_BASE
    added = member.to_bytes()
    out = bytearray(data[:insert_at] + added + data[insert_at:])
    for field in _OFFSET_FIELDS:
        (offset,) = struct.unpack_from("<I", out, field)
        if field != 0x28 and offset >= relative and offset:
            struct.pack_into("<I", out, field, offset + len(added))
    struct.pack_into("<II", out, 0x2C, alias.members.length + len(added),
                     alias.member_count + 1)
    return bytes(out)


def add_alias_member(sam: Hive, alias_rid: int, member: Sid) -> bool:
    """Make `member` a member of the Builtin alias `alias_rid`; False when it already is."""
    key = sam.key(f"{BUILTIN_ALIASES}\\{alias_rid:08X}")
    value = key.value("C") if key is not None else None
    if key is None or value is None:
        raise CorruptData(f"SAM {BUILTIN_ALIASES}\\{alias_rid:08X}: the built-in alias is "
                          "missing; is this a complete SAM hive?")
    where = f"SAM {key.path}\\C"
    if member in alias_members(value.raw, where=where):
        return False
    key.set_value("C", value.type, add_member_to_c(value.raw, member, where=where))
    domain = Sid(member.authority, member.sub_authorities[:-1], member.revision)
    domain_path = f"{BUILTIN_ALIASES}\\Members\\{domain}"
    domain_key = sam.key(domain_path)
    if domain_key is None:
        domain_key = sam.create_key(domain_path)
        domain_key.set_value("", 0, b"")
    member_path = f"{domain_path}\\{member.rid():08X}"
    member_key = sam.key(member_path)
    if member_key is None:
        member_key = sam.create_key(member_path)
        member_key.set_value("", 0, b"")
        count = len(domain_key.subkeys())
        current = domain_key.value("")
        domain_key.set_value("", count, current.raw if current is not None else b"")
    listed = member_key.value("")
    raw = listed.raw if listed is not None else b""
    rids = [struct.unpack_from("<I", raw, i)[0] for i in range(0, len(raw) - len(raw) % 4, 4)]
    if alias_rid not in rids:
        rids.append(alias_rid)
        member_key.set_value("", len(rids), struct.pack(f"<{len(rids)}I", *rids))
    return True
