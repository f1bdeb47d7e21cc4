"""Kerberos keys and keytabs: reseal's pure-Python derivation equals impacket's (the host path)
and RFC 3962's vectors; keytabs are read back by MIT's klist; hostile keytabs fail cleanly."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from impacket.krb5.crypto import string_to_key

from reseal.domain import _purecrypto, keytab, krbkeys
from reseal.domain.passwords import ALPHABET


@pytest.mark.parametrize("enctype", [krbkeys.AES256, krbkeys.AES128, krbkeys.RC4])
def test_pure_derivation_equals_impacket(enctype: int) -> None:
    for _ in range(2):  # impacket's PBKDF2 is pure Python: 0.5 s a key
        password = "".join(secrets.choice(ALPHABET) for _ in range(120))
        salt = krbkeys.computer_salt("CORP.EXAMPLE.COM", "WS" + secrets.token_hex(3))
        assert krbkeys.derive_pure(enctype, password, salt) == \
            string_to_key(enctype, password, salt).contents


def test_host_derivation_equals_impacket_string_to_key() -> None:
    salt = krbkeys.computer_salt("RESEAL.TEST", "clone7")
    for password in ("x" * 120, "pässwörd", "".join(secrets.choice(ALPHABET) for _ in range(120))):
        keys = krbkeys.derive_keys(password, salt, [krbkeys.AES256, krbkeys.AES128, krbkeys.RC4])
        assert [k.key for k in keys] == [string_to_key(e, password, salt).contents
                                         for e in (krbkeys.AES256, krbkeys.AES128, krbkeys.RC4)]


@settings(max_examples=8, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_pure_aes_equals_impacket_on_any_text(password: str, salt: str) -> None:
    assert krbkeys.derive_pure(krbkeys.AES128, password, salt) == \
        string_to_key(krbkeys.AES128, password, salt).contents


def test_rfc3962_vectors() -> None:
    # RFC 3962 appendix B, iteration count 1200
    key = krbkeys.derive_pure(krbkeys.AES256, "password", "ATHENA.MIT.EDUraeburn", 1200)
    assert key.hex() == "55a6ac740ad17b4846941051e1e8b0a7548d93b0ab30a8bc3ff16280382b8c2a"
    key = krbkeys.derive_pure(krbkeys.AES128, "password", "ATHENA.MIT.EDUraeburn", 1200)
    assert key.hex() == "4c01cd46d632d01e6dbe230a01ed642a"


def test_aes_and_md4_reference_vectors() -> None:
    block = bytes.fromhex("00112233445566778899aabbccddeeff")  # FIPS-197 appendix C
    assert _purecrypto.aes_encrypt_block(bytes(range(16)), block).hex() == \
        "69c4e0d86a7b0430d8cdb78070b4c55a"
    assert _purecrypto.aes_encrypt_block(bytes(range(32)), block).hex() == \
        "8ea2b7ca516745bfeafc49904b496089"
    assert _purecrypto.md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"  # RFC 1320
    assert _purecrypto.md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"


def test_computer_salt() -> None:
    assert krbkeys.computer_salt("reseal.test", "CLONE01$") == "RESEAL.TESThostclone01.reseal.test"
    assert krbkeys.enctypes_for(0x18) == [krbkeys.AES256, krbkeys.AES128]
    assert krbkeys.enctypes_for(0x1C) == [krbkeys.AES256, krbkeys.AES128, krbkeys.RC4]
    assert "secret" in repr(krbkeys.KerberosKey(18, b"k" * 32))
    assert "kkkk" not in repr(krbkeys.KerberosKey(18, b"k" * 32))


@pytest.mark.skipif(shutil.which("klist") is None, reason="klist (krb5-user) not installed")
def test_keytab_round_trip_read_by_klist(tmp_path: Path) -> None:
    keys = krbkeys.derive_keys("x" * 120, krbkeys.computer_salt("REALM.TEST", "pc1"),
                               [krbkeys.AES256, krbkeys.AES128, krbkeys.RC4])
    entries = keytab.machine_entries("REALM.TEST", "PC1", "pc1.realm.test", 300, keys,
                                     timestamp=1_700_000_000)
    path = tmp_path / "kt"
    path.write_bytes(keytab.serialize_keytab(entries))
    listing = subprocess.run(["klist", "-k", "-e", "-K", str(path)], capture_output=True,
                             text=True, check=True).stdout
    assert listing.count("PC1$@REALM.TEST") == 3
    assert "host/pc1.realm.test@REALM.TEST" in listing
    assert "RestrictedKrbHost/PC1@REALM.TEST" in listing
    assert " 300 " in listing  # the 32-bit kvno, beyond the 8-bit field
    assert f"0x{keys[0].key.hex()}" in listing
    assert keytab.parse_keytab(path.read_bytes()) == entries


def test_keytab_written_by_ktutil_is_read(tmp_path: Path) -> None:
    if shutil.which("ktutil") is None:
        pytest.skip("ktutil (krb5-user) not installed")
    path = tmp_path / "kt"
    script = (f"addent -password -p WS1$@REALM.TEST -k 7 -e aes256-cts-hmac-sha1-96 "
              f"-s REALM.TESThostws1.realm.test\nsecret-pw\nwkt {path}\nquit\n")
    subprocess.run(["ktutil"], input=script, text=True, capture_output=True, check=True)
    (entry,) = keytab.parse_keytab(path.read_bytes())
    assert entry.principal == "WS1$@REALM.TEST" and entry.kvno == 7
    assert entry.key == krbkeys.derive_pure(krbkeys.AES256, "secret-pw",
                                            "REALM.TESThostws1.realm.test")


def test_hostile_keytabs_fail_cleanly() -> None:
    good = keytab.serialize_keytab(keytab.machine_entries(
        "R.TEST", "A", "a.r.test", 2, [krbkeys.KerberosKey(18, b"k" * 32)], timestamp=0))
    cases = [
        b"",
        b"\x05\x01" + good[2:],
        good[:-3],  # truncated last entry
        good[:2] + struct.pack(">i", 1 << 30) + good[6:],  # entry larger than the file
        good[:2] + struct.pack(">i", 8) + struct.pack(">H", 0) + b"\0" * 6,  # no components
        good[:2] + struct.pack(">i", 8) + struct.pack(">HH", 1, 0xFFFF) + b"\0" * 4,
        b"\x05\x02" + b"\0" * (5 << 20),
    ]
    for data in cases:
        with pytest.raises(keytab.KeytabError):
            keytab.parse_keytab(data)
    # holes are skipped, trailing zero size ends the file
    holed = good[:2] + struct.pack(">i", -10) + b"\0" * 10 + good[2:] + b"\0" * 4
    assert len(keytab.parse_keytab(holed)) == 5


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_keytab_parser_never_crashes(data: bytes) -> None:
    with contextlib.suppress(keytab.KeytabError):
        keytab.parse_keytab(b"\x05\x02" + data)
