"""The few block-cipher and hash primitives Kerberos key derivation needs, in pure Python.

Why: the first-boot program runs on the clone with nothing but the guest's python3, whose
standard library has PBKDF2 but neither AES nor (under OpenSSL 3) MD4. Only key *derivation*
is needed (two AES block encryptions per key, one MD4 per RC4 key), never bulk encryption, so
speed does not matter. On the imaging host reseal derives keys with impacket; the tests check
both give the same keys (tests/domain/test_keys.py). Written from FIPS-197 and RFC 1320.
Compatible with Python 3.8+ (the guest's python3 may be old).
"""

from __future__ import annotations

import struct

# --- AES (FIPS-197), encryption only ---------------------------------------------------


def _xtime(value: int) -> int:
    value <<= 1
    return (value ^ 0x11B) if value & 0x100 else value


def _build_sbox() -> list[int]:
    sbox = [0] * 256
    p = q = 1
    while True:  # walk the multiplicative group with generator 3, inverse with 0xF6
        p = p ^ _xtime(p)
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ (q << 1 | q >> 7) ^ (q << 2 | q >> 6) ^ (q << 3 | q >> 5) ^ (q << 4 | q >> 4)
        sbox[p] = (x ^ 0x63) & 0xFF
        if p == 1:
            break
    sbox[0] = 0x63
    return sbox


SBOX = _build_sbox()


def _expand_key(key: bytes) -> list[list[int]]:
    if len(key) not in (16, 24, 32):
        raise ValueError("AES keys are 16, 24 or 32 bytes")
    nk = len(key) // 4
    rounds = nk + 6
    words = [list(key[4 * i:4 * i + 4]) for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (rounds + 1)):
        temp = list(words[i - 1])
        if i % nk == 0:
            temp = temp[1:] + temp[:1]
            temp = [SBOX[b] for b in temp]
            temp[0] ^= rcon
            rcon = _xtime(rcon) & 0xFF
        elif nk > 6 and i % nk == 4:
            temp = [SBOX[b] for b in temp]
        words.append([a ^ b for a, b in zip(words[i - nk], temp)])  # noqa: B905 (Python 3.8)
    return [sum(words[4 * r:4 * r + 4], []) for r in range(rounds + 1)]


def aes_encrypt_block(key: bytes, block: bytes) -> bytes:
    """One 16-byte block encrypted with AES-128/192/256."""
    if len(block) != 16:
        raise ValueError("AES blocks are 16 bytes")
    round_keys = _expand_key(key)
    state = [b ^ k for b, k in zip(block, round_keys[0])]  # noqa: B905 (Python 3.8)
    last = len(round_keys) - 1
    for rnd in range(1, last + 1):
        state = [SBOX[b] for b in state]
        # ShiftRows: state is column-major (byte 4*c + r)
        state = [state[4 * ((c + r) % 4) + r] for c in range(4) for r in range(4)]
        if rnd != last:
            mixed = []
            for c in range(4):
                a = state[4 * c:4 * c + 4]
                total = a[0] ^ a[1] ^ a[2] ^ a[3]
                mixed += [a[r] ^ total ^ (_xtime(a[r] ^ a[(r + 1) % 4]) & 0xFF)
                          for r in range(4)]
            state = mixed
        state = [b ^ k for b, k in zip(state, round_keys[rnd])]  # noqa: B905 (Python 3.8)
    return bytes(state)


# --- MD4 (RFC 1320) --------------------------------------------------------------------


def _rotl(value: int, shift: int) -> int:
    value &= 0xFFFFFFFF
    return ((value << shift) | (value >> (32 - shift))) & 0xFFFFFFFF


def md4(data: bytes) -> bytes:
    length = len(data)
    data = data + b"\x80" + b"\0" * ((55 - length) % 64) + struct.pack("<Q", length * 8)
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for offset in range(0, len(data), 64):
        x = struct.unpack("<16I", data[offset:offset + 64])
        a, b, c, d = h

        def f(x1: int, y: int, z: int) -> int:
            return (x1 & y) | (~x1 & z)

        def g(x1: int, y: int, z: int) -> int:
            return (x1 & y) | (x1 & z) | (y & z)

        for i in range(16):
            k, s = i, (3, 7, 11, 19)[i % 4]
            a, b, c, d = d, _rotl(a + f(b, c, d) + x[k], s), b, c
        for i in range(16):
            k, s = (i % 4) * 4 + i // 4, (3, 5, 9, 13)[i % 4]
            a, b, c, d = d, _rotl(a + g(b, c, d) + x[k] + 0x5A827999, s), b, c
        order = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
        for i in range(16):
            k, s = order[i], (3, 9, 11, 15)[i % 4]
            a, b, c, d = d, _rotl(a + (b ^ c ^ d) + x[k] + 0x6ED9EBA1, s), b, c
        h = [(hv + v) & 0xFFFFFFFF for hv, v in zip(h, (a, b, c, d))]  # noqa: B905 (Python 3.8)
    return struct.pack("<4I", *h)
