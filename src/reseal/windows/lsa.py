"""LSA secrets of an offline SECURITY hive: read, write, delete, list.

Windows keeps machine secrets (the domain machine-account password `$MACHINE.ACC`, the
cached-logon key `NL$KM`, `DPAPI_SYSTEM`, service passwords `_SC_*`, `DefaultPassword`) under
SECURITY `Policy\\Secrets\\<name>`, each with `CurrVal`/`OldVal` (the encrypted current and
previous value) and `CupdTime`/`OupdTime` (FILETIMEs of the last change), plus `SecDesc`.

Two layers of keys protect them:

* the **boot key** (syskey), 16 bytes scattered over the class names of SYSTEM
  `ControlSet00N\\Control\\Lsa\\{JD,Skew1,GBG,Data}`;
* the **LSA key**, stored in SECURITY encrypted with the boot key:
  - Vista and later, `Policy\\PolEKList`: header (version, key GUID, algorithm 3, flags), a
    32-byte salt, then AES-256 blocks (each block on its own, i.e. ECB) under
    SHA-256(boot key + salt x 1000). The clear text is `{size, 12 zero bytes, keys}` where keys
    is `{3, current key GUID, 3, count, [GUID, type 3, size 32, 32-byte key]...}`;
  - XP/2003, `Policy\\PolSecretEncryptionKey`: 12-byte header, 48 bytes RC4-encrypted under
    MD5(boot key + salt x 1000) with the 16-byte salt at offset 60; the LSA key is clear-text
    bytes 16..32.

A secret value is encrypted with the LSA key the same way: AES form (header naming the LSA
key's GUID, salt, AES-256 blocks under SHA-256(LSA key + salt x 1000), clear text
`{size, 12 zero bytes, secret, zero padding to the next 16 bytes}`), or, in the RC4 form,
`{length, maximum length, 0}` followed by DES blocks whose 7-byte keys walk along the 16-byte LSA
key, over `{length, version 1, secret}` padded to 8 bytes.

Format references (read, no code taken): impacket `examples/secretsdump.py` (LSASecrets),
[MS-LSAD] 5.1.2 for the DES walk, and the decrypted Windows 10 and XP values published with
dissect.target's LSA plugin tests (which confirm the zero fields and padding of the clear text).

The API, for operations (domain leave, offline join):

    key = boot_key(system_hive)                      # bytes(16)
    lsa = LsaSecrets.open(security_hive, key)        # BadInput if the boot key does not fit
    lsa.names()                                      # ["$MACHINE.ACC", "DPAPI_SYSTEM", ...]
    lsa.read("$MACHINE.ACC") -> Secret | None        # .current/.old bytes, .current_time...
    lsa.write("$MACHINE.ACC", new, old=new)          # encrypts, stamps CupdTime/OupdTime
    lsa.delete("NL$KM")                              # the whole Secrets\\<name> key
    secret_names(security_hive), delete_secret(...)  # no key needed

Secrets never reach logs: `Secret.__repr__` shows sizes only.
"""

from __future__ import annotations

import enum
import hashlib
import secrets as random_source
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from Cryptodome.Cipher import AES, ARC4, DES

from reseal.errors import BadInput, CorruptData
from reseal.registry import Hive, Key

SECRETS = "Policy\\Secrets"
POL_EK_LIST = "Policy\\PolEKList"
POL_SECRET_ENCRYPTION_KEY = "Policy\\PolSecretEncryptionKey"
BOOT_KEY_CLASSES = ("JD", "Skew1", "GBG", "Data")
BOOT_KEY_ORDER = (8, 5, 4, 2, 11, 9, 13, 3, 0, 6, 1, 12, 14, 10, 15, 7)
REG_NONE = 0
AES_ALGORITHM = 3
AES_HEADER = struct.Struct("<4s16sII")  # version, key GUID, algorithm, flags
AES_VERSION = b"\x00\x00\x00\x01"
SALT_SIZE = 32
CLEAR_HEADER = 16  # size + 12 zero bytes
# the GUID PolEKList's header names (the boot key), as Windows writes it
SYSKEY_GUID = bytes.fromhex("ecffe17b2a997440aa939adbff26f1fc")
# first 16 clear bytes of PolSecretEncryptionKey on every XP/2003 install
RC4_KEY_MAGIC = bytes.fromhex("803acef05f15d311b7e600805f48caeb")
RC4_HEADER = struct.pack("<III", 1, 1, 0)
XP_SECRET_VERSION = 1
XP_MAXIMUM_FLAG = 0x20000000  # seen in the maximum-length field Windows writes
KEY_TYPE_AES = 3
# SecDesc of a secret as Windows creates it (owner Administrators, group SYSTEM; DACL:
# Administrators and SYSTEM full access, Everyone query); used for secrets reseal creates.
DEFAULT_SECRET_SECDESC = bytes.fromhex(
    "010004804800000058000000000000001400000002003400020000000000180003000f00010200000000"
    "0005200000002002000000001400000002000101000000000001000000000102000000000005200000"
    "0020020000010100000000000512000000"
)
SECRET_SUBKEYS = ("CurrVal", "CupdTime", "OldVal", "OupdTime", "SecDesc")
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


class LsaForm(enum.StrEnum):
    AES = "aes"  # Vista and later: Policy\PolEKList
    RC4 = "rc4"  # XP/2003: Policy\PolSecretEncryptionKey


@dataclass(frozen=True)
class LsaKey:
    """The decrypted LSA key (never printed)."""

    form: LsaForm
    key: bytes = field(repr=False)
    key_id: bytes = b""  # AES form: the key GUID every secret's header names

    def __repr__(self) -> str:
        return f"LsaKey({self.form}, id={self.key_id.hex() or '-'})"


@dataclass(frozen=True)
class Secret:
    """One secret's values as stored (None: no value); repr shows sizes, never contents."""

    name: str
    current: bytes | None = field(repr=False)
    old: bytes | None = field(repr=False)
    current_time: datetime | None = None
    old_time: datetime | None = None

    def __repr__(self) -> str:
        def size(value: bytes | None) -> str:
            return "none" if value is None else f"{len(value)} bytes"

        return (f"Secret({self.name!r}, current={size(self.current)}, old={size(self.old)}, "
                f"changed={self.current_time})")


# ------------------------------------------------------------------ boot key
def boot_key(system: Hive) -> bytes:
    """The boot key spelled by the Lsa class names of the control set Windows boots with."""
    select = system.key("Select")
    numbers: list[int] = []
    for name in ("Current", "Default"):
        value = select.value(name) if select is not None else None
        if value is not None and isinstance(value.data, int):
            numbers.append(value.data)
    candidates = [f"ControlSet{n:03d}" for n in numbers] + sorted(
        k.name for k in system.root.subkeys() if k.name.lower().startswith("controlset"))
    for control_set in candidates:
        lsa = system.key(f"{control_set}\\Control\\Lsa")
        if lsa is None:
            continue
        parts = []
        for name in BOOT_KEY_CLASSES:
            child = lsa.subkey(name)
            parts.append(child.class_name if child is not None else None)
        if any(part is None for part in parts):
            continue
        text = "".join(p for p in parts if p is not None)
        try:
            scrambled = bytes.fromhex(text)
        except ValueError:
            raise CorruptData(f"SYSTEM {control_set}\\Control\\Lsa: class names {text!r} are not "
                              "hexadecimal; the boot key cannot be read") from None
        if len(scrambled) != 16:
            raise CorruptData(f"SYSTEM {control_set}\\Control\\Lsa: class names give "
                              f"{len(scrambled)} bytes, a boot key has 16")
        return bytes(scrambled[i] for i in BOOT_KEY_ORDER)
    raise CorruptData("SYSTEM: no Control\\Lsa\\{JD,Skew1,GBG,Data} keys with class names; "
                      "the boot key cannot be read (is this a SYSTEM hive?)")


def scramble_boot_key(key: bytes) -> tuple[str, str, str, str]:
    """The four Lsa class names that spell `key` (for building SYSTEM hives)."""
    if len(key) != 16:
        raise BadInput(f"a boot key has 16 bytes, not {len(key)}")
    scrambled = bytearray(16)
    for index, source in enumerate(BOOT_KEY_ORDER):
        scrambled[source] = key[index]
    text = scrambled.hex()
    return text[0:8], text[8:16], text[16:24], text[24:32]


# ------------------------------------------------------------------ ciphers
def _sha256_rounds(key: bytes, salt: bytes) -> bytes:
    digest = hashlib.sha256(key)
    for _ in range(1000):
        digest.update(salt)
    return digest.digest()


def _aes_blocks(key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = AES.new(key, AES.MODE_ECB)
    return cipher.encrypt(data) if encrypt else cipher.decrypt(data)


def aes_encrypt_value(key: bytes, key_id: bytes, clear: bytes,
                      random_bytes: Callable[[int], bytes] = random_source.token_bytes) -> bytes:
    """An AES-form stored value of `clear` under `key` (the boot key or the LSA key)."""
    body = struct.pack("<I", len(clear)) + bytes(12) + clear
    body += bytes((len(body) // 16 + 1) * 16 - len(body))
    salt = random_bytes(SALT_SIZE)
    header = AES_HEADER.pack(AES_VERSION, key_id, AES_ALGORITHM, 0)
    return header + salt + _aes_blocks(_sha256_rounds(key, salt), body, encrypt=True)


def aes_decrypt_value(key: bytes, stored: bytes, *, where: str) -> bytes:
    """The clear bytes of an AES-form stored value; BadInput when `key` does not open it."""
    start = AES_HEADER.size + SALT_SIZE
    if len(stored) < start + 16 or (len(stored) - start) % 16:
        raise CorruptData(f"{where}: {len(stored)} bytes is not an AES-encrypted LSA value")
    salt = stored[AES_HEADER.size:start]
    body = _aes_blocks(_sha256_rounds(key, salt), stored[start:], encrypt=False)
    (size,) = struct.unpack_from("<I", body)
    if size > len(body) - CLEAR_HEADER or any(body[4:CLEAR_HEADER]):
        raise BadInput(f"{where}: the key does not decrypt this value (its clear header is not "
                       "well formed); SYSTEM and SECURITY may come from different machines")
    return body[CLEAR_HEADER:CLEAR_HEADER + size]


def aes_value_key_id(stored: bytes) -> bytes:
    return stored[4:20] if len(stored) >= AES_HEADER.size else b""


def _des_key(seven: bytes) -> bytes:
    """Spread 7 key bytes over the high 7 bits of 8 DES key bytes."""
    bits = int.from_bytes(seven, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def _des_walk(lsa_key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    """[MS-LSAD] 5.1.2: 8-byte DES blocks, each keyed by the next 7 bytes of the LSA key,
    wrapping to the key's start (offset by what was left over) when fewer than 7 remain."""
    out = bytearray()
    window = lsa_key
    for start in range(0, len(data), 8):
        cipher = DES.new(_des_key(window[:7]), DES.MODE_ECB)
        block = data[start:start + 8]
        out += cipher.encrypt(block) if encrypt else cipher.decrypt(block)
        window = window[7:]
        if len(window) < 7:
            window = lsa_key[len(window):]
    return bytes(out)


def des_encrypt_value(lsa_key: bytes, clear: bytes) -> bytes:
    body = struct.pack("<II", len(clear), XP_SECRET_VERSION) + clear
    body += bytes(-len(body) % 8)
    encrypted = _des_walk(lsa_key, body, encrypt=True)
    return struct.pack("<III", len(encrypted), len(encrypted) | XP_MAXIMUM_FLAG, 0) + encrypted


def des_decrypt_value(lsa_key: bytes, stored: bytes, *, where: str) -> bytes:
    if len(stored) < 12:
        raise CorruptData(f"{where}: {len(stored)} bytes is too short for an LSA secret value")
    (size,) = struct.unpack_from("<I", stored)
    if size > len(stored) - 12 or size % 8 or size < 8:
        raise CorruptData(f"{where}: encrypted size {size} does not fit the {len(stored)}-byte value")
    body = _des_walk(lsa_key, stored[len(stored) - size:], encrypt=False)
    length, version = struct.unpack_from("<II", body)
    if length > len(body) - 8 or version != XP_SECRET_VERSION:
        raise BadInput(f"{where}: the LSA key does not decrypt this value; SYSTEM and SECURITY "
                       "may come from different machines")
    return body[8:8 + length]


# ------------------------------------------------------------------ the LSA key
def read_lsa_key(security: Hive, boot: bytes) -> LsaKey:
    """Decrypt the LSA key with the boot key (PolEKList first, then PolSecretEncryptionKey)."""
    stored = _default_value(security, POL_EK_LIST)
    if stored:
        clear = aes_decrypt_value(boot, stored, where=f"SECURITY {POL_EK_LIST}")
        return _parse_key_list(clear)
    stored = _default_value(security, POL_SECRET_ENCRYPTION_KEY)
    if stored:
        if len(stored) < 76:
            raise CorruptData(f"SECURITY {POL_SECRET_ENCRYPTION_KEY}: {len(stored)} bytes, "
                              "expected at least 76")
        rc4_key = hashlib.md5(boot + stored[60:76] * 1000).digest()
        clear = ARC4.new(rc4_key).decrypt(stored[12:60])
        if clear[:16] != RC4_KEY_MAGIC:
            raise BadInput(f"SECURITY {POL_SECRET_ENCRYPTION_KEY}: the boot key does not decrypt "
                           "the LSA key; SYSTEM and SECURITY come from different machines")
        return LsaKey(LsaForm.RC4, clear[16:32])
    raise CorruptData("SECURITY: neither Policy\\PolEKList nor Policy\\PolSecretEncryptionKey "
                      "holds an LSA key (is this a SECURITY hive?)")


def _parse_key_list(clear: bytes) -> LsaKey:
    where = f"SECURITY {POL_EK_LIST}"
    if len(clear) < 28:
        raise CorruptData(f"{where}: decrypted key list of {len(clear)} bytes is too short")
    current = clear[4:20]
    (count,) = struct.unpack_from("<I", clear, 24)
    pos = 28
    keys: dict[bytes, bytes] = {}
    for _ in range(min(count, 64)):
        if pos + 24 > len(clear):
            break
        key_id = clear[pos:pos + 16]
        (size,) = struct.unpack_from("<I", clear, pos + 20)
        if pos + 24 + size > len(clear):
            raise CorruptData(f"{where}: key {key_id.hex()} of {size} bytes runs past the list")
        keys[key_id] = clear[pos + 24:pos + 24 + size]
        pos += 24 + size
    if current not in keys or len(keys[current]) != 32:
        raise CorruptData(f"{where}: the current key {current.hex()} is not in the list of "
                          f"{count} key(s)")
    return LsaKey(LsaForm.AES, keys[current], current)


def install_lsa_key(security: Hive, boot: bytes, form: LsaForm = LsaForm.AES, *,
                    key: bytes | None = None, key_id: bytes | None = None,
                    random_bytes: Callable[[int], bytes] = random_source.token_bytes) -> LsaKey:
    """Write a (new) LSA key into SECURITY, encrypted with `boot`.

    For building consistent SYSTEM+SECURITY pairs (tests, sample images): every secret
    encrypted under the previous LSA key becomes unreadable, so a real run never calls this.
    """
    if form is LsaForm.AES:
        lsa = LsaKey(form, key or random_bytes(32), key_id or random_bytes(16))
        entry = lsa.key_id + struct.pack("<II", KEY_TYPE_AES, len(lsa.key)) + lsa.key
        clear = struct.pack("<I16sII", 3, lsa.key_id, 3, 1) + entry
        stored = aes_encrypt_value(boot, SYSKEY_GUID, clear, random_bytes)
        _set_default(security, POL_EK_LIST, stored)
        return lsa
    lsa = LsaKey(form, key or random_bytes(16))
    salt = random_bytes(16)
    clear = RC4_KEY_MAGIC + lsa.key + random_bytes(16)
    rc4_key = hashlib.md5(boot + salt * 1000).digest()
    _set_default(security, POL_SECRET_ENCRYPTION_KEY,
                 RC4_HEADER + ARC4.new(rc4_key).encrypt(clear) + salt)
    return lsa


# ------------------------------------------------------------------ secrets
def secret_names(security: Hive) -> list[str]:
    """Names of the secrets in `security` (no key needed)."""
    key = security.key(SECRETS)
    return sorted((k.name for k in key.subkeys()), key=str.lower) if key is not None else []


def delete_secret(security: Hive, name: str) -> bool:
    """Remove `Policy\\Secrets\\<name>` with its values (no key needed)."""
    return security.delete_key(f"{SECRETS}\\{name}")


def secret_changed(security: Hive, name: str) -> datetime | None:
    """When the secret's current value was set (CupdTime), without decrypting anything."""
    return _filetime(_default_value(security, f"{SECRETS}\\{name}\\CupdTime"))


class LsaSecrets:
    """The secrets of one SECURITY hive, with the LSA key that opens them."""

    def __init__(self, security: Hive, lsa_key: LsaKey,
                 random_bytes: Callable[[int], bytes] = random_source.token_bytes) -> None:
        self.security = security
        self.lsa_key = lsa_key
        self.random_bytes = random_bytes

    @classmethod
    def open(cls, security: Hive, boot: bytes) -> LsaSecrets:
        return cls(security, read_lsa_key(security, boot))

    def names(self) -> list[str]:
        return secret_names(self.security)

    def read(self, name: str) -> Secret | None:
        key = self.security.key(f"{SECRETS}\\{name}")
        if key is None:
            return None
        return Secret(key.name, self._decrypt(key, "CurrVal"), self._decrypt(key, "OldVal"),
                      _filetime(_default_value(self.security, f"{key.path}\\CupdTime")),
                      _filetime(_default_value(self.security, f"{key.path}\\OupdTime")))

    def write(self, name: str, current: bytes | None, old: bytes | None = None, *,
              when: datetime | None = None) -> None:
        """Set both values (None: no value) and stamp CupdTime/OupdTime with `when` (now).

        A secret that does not exist is created with Windows' default SecDesc.
        """
        base = f"{SECRETS}\\{name}"
        stamp = _to_filetime(when or datetime.now(UTC))
        existing = self.security.key(base)
        if existing is None:
            self.security.create_key(base)
            for sub in SECRET_SUBKEYS:
                self.security.create_key(f"{base}\\{sub}")
            _set_default(self.security, f"{base}\\SecDesc", DEFAULT_SECRET_SECDESC)
        for value_key, time_key, data in (("CurrVal", "CupdTime", current),
                                          ("OldVal", "OupdTime", old)):
            _set_default(self.security, f"{base}\\{value_key}", self._encrypt(data, name))
            _set_default(self.security, f"{base}\\{time_key}", stamp)

    def delete(self, name: str) -> bool:
        return delete_secret(self.security, name)

    # ---------------------------------------------------------------- values
    def _encrypt(self, data: bytes | None, name: str) -> bytes:
        if data is None:
            return b""
        if self.lsa_key.form is LsaForm.AES:
            return aes_encrypt_value(self.lsa_key.key, self.lsa_key.key_id, data, self.random_bytes)
        return des_encrypt_value(self.lsa_key.key, data)

    def _decrypt(self, key: Key, which: str) -> bytes | None:
        stored = _default_value(self.security, f"{key.path}\\{which}")
        if not stored:
            return None
        where = f"SECURITY {key.path}\\{which}"
        if self.lsa_key.form is LsaForm.AES:
            named = aes_value_key_id(stored)
            if named != self.lsa_key.key_id:
                raise BadInput(f"{where}: encrypted with LSA key {named.hex()}, the current key "
                               f"is {self.lsa_key.key_id.hex()}; it cannot be read")
            return aes_decrypt_value(self.lsa_key.key, stored, where=where)
        return des_decrypt_value(self.lsa_key.key, stored, where=where)


# ------------------------------------------------------------------ helpers
def _default_value(hive: Hive, path: str) -> bytes | None:
    key = hive.key(path)
    value = key.value("") if key is not None else None
    return value.raw if value is not None else None


def _set_default(hive: Hive, path: str, data: bytes) -> None:
    key = hive.key(path) or hive.create_key(path)
    current = key.value("")
    key.set_value("", current.type if current is not None else REG_NONE, data)


def _filetime(raw: bytes | None) -> datetime | None:
    if raw is None or len(raw) != 8:
        return None
    (ticks,) = struct.unpack("<Q", raw)
    if ticks == 0:
        return None
    try:
        return FILETIME_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def _to_filetime(when: datetime) -> bytes:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - FILETIME_EPOCH
    ticks = (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10
    return struct.pack("<Q", ticks)
