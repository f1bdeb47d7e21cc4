"""systemd-networkd's default DHCP DUID, derived from the machine-id.

networkd's default `DUIDType=vendor` makes a DUID-EN: type 2, enterprise number 43793
(systemd), and as identifier the 64-bit SipHash-2-4 of the 16 machine-id bytes under a fixed
key, little-endian (systemd src/libsystemd-network/dhcp-identifier.c, `dhcp_identifier_set_
duid_en`). DHCPv4's client identifier defaults to that DUID too, so two machines with one
machine-id present one DHCP identity (networkd.conf(5)). Computing it here lets the audit show
the DUID a host uses without running anything but `cat` on it, and lets images be compared.
"""

from __future__ import annotations

import struct

SYSTEMD_PEN = 43793
HASH_KEY = bytes.fromhex("80118cc2fe4a03ee3ed60c6f36391409")
MASK = (1 << 64) - 1


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & MASK


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 (Aumasson and Bernstein), 128-bit key, 64-bit result."""
    k0, k1 = struct.unpack("<QQ", key)
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(count: int) -> None:
        for _ in range(count):
            v[0] = (v[0] + v[1]) & MASK
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & MASK
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & MASK
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & MASK
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    whole = len(data) - len(data) % 8
    for offset in range(0, whole, 8):
        (m,) = struct.unpack_from("<Q", data, offset)
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    tail = data[whole:] + b"\x00" * (7 - len(data) % 8)
    m = (len(data) & 0xFF) << 56 | int.from_bytes(tail[:7], "little")
    v[3] ^= m
    rounds(2)
    v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return (v[0] ^ v[1] ^ v[2] ^ v[3]) & MASK


def networkd_duid(machine_id: str) -> str:
    """The DUID-EN networkd uses by default, as hex with colons (how networkctl shows it)."""
    identifier = struct.pack("<Q", siphash24(HASH_KEY, bytes.fromhex(machine_id)))
    raw = struct.pack(">HI", 2, SYSTEMD_PEN) + identifier
    return ":".join(f"{b:02x}" for b in raw)
