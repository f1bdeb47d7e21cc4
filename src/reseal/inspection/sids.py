"""Binary SIDs as found in SAM and SECURITY, decoded with every length checked."""

from __future__ import annotations

import struct

from reseal.errors import CorruptData

SID_HEADER = 8
MAX_SUBAUTHORITIES = 15


def sid_to_string(raw: bytes) -> str:
    if len(raw) < SID_HEADER:
        raise CorruptData(f"SID of {len(raw)} bytes is too short")
    revision, count = raw[0], raw[1]
    if revision != 1 or count > MAX_SUBAUTHORITIES or len(raw) < SID_HEADER + 4 * count:
        raise CorruptData("malformed SID (revision or sub-authority count)")
    authority = int.from_bytes(raw[2:8], "big")
    subs = struct.unpack_from(f"<{count}I", raw, SID_HEADER)
    return "S-1-" + "-".join(str(v) for v in (authority, *subs))


def sam_account_domain_sid(v_value: bytes) -> str:
    """Machine SID from SAM\\Domains\\Account value V: its last 24 bytes (S-1-5-21-a-b-c)."""
    if len(v_value) < 24:
        raise CorruptData("SAM Domains\\Account value V is too short to hold the machine SID")
    return sid_to_string(v_value[-24:])
