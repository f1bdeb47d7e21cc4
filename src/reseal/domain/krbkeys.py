"""Kerberos long-term keys of an Active Directory computer account, from its password.

AD salts a computer's AES keys with `REALM + "host" + name.lower() + "." + realm.lower()`
(not MIT's default `REALM + "NAME$"`: with that salt kinit fails with "Preauthentication
failed"). The RC4-HMAC key is MD4 of the UTF-16LE password and has no salt.

Keys are derived with impacket's `string_to_key` where impacket is importable (the imaging
host). The first-boot program on the clone has only the guest's python3, so there the same
RFC 3961/3962 derivation runs on `_purecrypto`; the tests compare both on many inputs.
Compatible with Python 3.8+.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from reseal.domain import _purecrypto

AES256 = 18  # aes256-cts-hmac-sha1-96
AES128 = 17  # aes128-cts-hmac-sha1-96
RC4 = 23  # arcfour-hmac
ENCTYPE_NAMES = {AES256: "aes256-cts-hmac-sha1-96", AES128: "aes128-cts-hmac-sha1-96",
                 RC4: "arcfour-hmac"}
# msDS-SupportedEncryptionTypes bits (MS-KILE 2.2.7)
BIT_RC4 = 0x4
BIT_AES128 = 0x8
BIT_AES256 = 0x10
AES_ONLY = BIT_AES128 | BIT_AES256  # 0x18, reseal's default
AES_AND_RC4 = AES_ONLY | BIT_RC4  # 0x1C, adcli's default
_BIT_OF = {AES256: BIT_AES256, AES128: BIT_AES128, RC4: BIT_RC4}
AES_ITERATIONS = 4096


@dataclass(frozen=True)
class KerberosKey:
    enctype: int
    key: bytes

    def __repr__(self) -> str:  # keys are secrets: never in a log line or a traceback
        return f"KerberosKey({ENCTYPE_NAMES.get(self.enctype, self.enctype)}, <secret>)"


def computer_salt(realm: str, name: str) -> str:
    """The AD salt of computer NAME (without the trailing $) in REALM."""
    bare = name[:-1] if name.endswith("$") else name
    return f"{realm.upper()}host{bare.lower()}.{realm.lower()}"


def enctypes_for(supported: int) -> list[int]:
    """Kerberos enctypes (strongest first) for an msDS-SupportedEncryptionTypes value."""
    chosen = [etype for etype in (AES256, AES128, RC4) if supported & _BIT_OF[etype]]
    return chosen or [AES256, AES128]


def derive_keys(password: str, salt: str, enctypes: list[int]) -> list[KerberosKey]:
    try:
        from impacket.krb5.crypto import _enctype_table, string_to_key  # imaging host
    except ImportError:
        return [KerberosKey(etype, derive_pure(etype, password, salt)) for etype in enctypes]
    keys = []
    for etype in enctypes:
        profile = _enctype_table[etype]
        if etype in (AES128, AES256):
            # impacket's AES profile (random-to-key, DK with "kerberos"), fed the PBKDF2 seed
            # from hashlib: the same RFC 3962 string-to-key as impacket's string_to_key, whose
            # pure-Python PBKDF2 takes 0.5 s or more a key (tests check both agree)
            seed = hashlib.pbkdf2_hmac("sha1", password.encode("utf-8"), salt.encode("utf-8"),
                                       AES_ITERATIONS, profile.seedsize)
            keys.append(KerberosKey(etype, profile.derive(profile.random_to_key(seed),
                                                          b"kerberos").contents))
        else:  # RC4: impacket's profile encodes a str itself
            keys.append(KerberosKey(etype, string_to_key(etype, password, salt).contents))
    return keys


# --- RFC 3961 / 3962 in pure Python ----------------------------------------------------


def _nfold(data: bytes, size: int) -> bytes:
    """RFC 3961 n-fold of `data` to `size` bytes."""

    def rotate_right(value: bytes, bits: int) -> bytes:
        bits %= len(value) * 8
        number = int.from_bytes(value, "big")
        width = len(value) * 8
        number = ((number >> bits) | (number << (width - bits))) & ((1 << width) - 1)
        return number.to_bytes(len(value), "big")

    def gcd(a: int, b: int) -> int:
        while b:
            a, b = b, a % b
        return a

    lcm = size * len(data) // gcd(size, len(data))
    big = b"".join(rotate_right(data, 13 * i) for i in range(lcm // len(data)))
    result = bytes(size)
    for offset in range(0, lcm, size):
        chunk = big[offset:offset + size]
        total = int.from_bytes(result, "big") + int.from_bytes(chunk, "big")
        while total >> (size * 8):  # ones' complement addition: carry wraps around
            total = (total & ((1 << (size * 8)) - 1)) + (total >> (size * 8))
        result = total.to_bytes(size, "big")
    return result


def _derive_random(key: bytes, constant: bytes) -> bytes:
    """DR(key, constant) for the AES profiles: enough AES blocks of n-fold(constant)."""
    block = _nfold(constant, 16)
    out = b""
    while len(out) < len(key):
        block = _purecrypto.aes_encrypt_block(key, block)
        out += block
    return out[:len(key)]


def derive_pure(enctype: int, password: str, salt: str,
                iterations: int = AES_ITERATIONS) -> bytes:
    if enctype == RC4:
        return _purecrypto.md4(password.encode("utf-16-le"))
    if enctype not in (AES128, AES256):
        raise ValueError(f"unsupported Kerberos enctype {enctype}")
    size = 32 if enctype == AES256 else 16
    seed = hashlib.pbkdf2_hmac("sha1", password.encode("utf-8"), salt.encode("utf-8"),
                               iterations, size)
    return _derive_random(seed, b"kerberos")
