"""Consistent SYSTEM+SECURITY pairs for LSA tests, and impacket's offline LSA dump as the reader.

No SYSTEM hive in ../shared opens any of its SECURITY hives (SOURCES.md), so a pair is made
consistent by writing a new LSA key into the real SECURITY, encrypted with the boot key of the
SYSTEM beside it; the key keeps the GUID the hive's secrets name. The secrets encrypted under the
lost key are then unreadable, so tests give each one a known value before reading back.
"""

from __future__ import annotations

import struct
from pathlib import Path

from reseal.registry import Hive
from reseal.windows.lsa import (
    LsaForm,
    LsaSecrets,
    aes_value_key_id,
    install_lsa_key,
    secret_names,
)

DOMAIN_MEMBERS = {
    "dfir-artifact-museum/Win10-BelkasoftCTF/SECURITY": "PRAIVACYMATRIX",
    "dfir-artifact-museum/Win7-EZ/SECURITY": "PRWUA",
    "dfwinreg/SECURITY": "INTERNAL",
}
REAL_SECURITY = [*DOMAIN_MEMBERS, "dfir-artifact-museum/Win10-RathbunVM/SECURITY",
                 "dfir-artifact-museum/Win11-RathbunVM/SECURITY", "regipy/SECURITY"]


def make_consistent(security: Hive, boot: bytes, form: LsaForm = LsaForm.AES) -> LsaSecrets:
    """Give `security` a new LSA key under the boot key `boot` (keeping the key GUID)."""
    key_id = None
    for name in secret_names(security):
        value = security.key(f"Policy\\Secrets\\{name}\\CurrVal")
        stored = value.value("") if value is not None else None
        if stored is not None and len(stored.raw) > 28:
            key_id = aes_value_key_id(stored.raw)
            break
    if form is LsaForm.RC4:
        security.delete_key("Policy\\PolEKList")
    lsa_key = install_lsa_key(security, boot, form, key_id=key_id)
    return LsaSecrets(security, lsa_key)


def known_value(name: str, which: str) -> bytes:
    """A value impacket can format for secret `name` (which = "cur" or "old")."""
    upper = name.upper()
    if upper.startswith("DPAPI_SYSTEM"):
        fill = b"m" if which == "cur" else b"M"
        return struct.pack("<I", 1) + fill * 20 + fill.swapcase() * 20
    if upper.startswith("$MACHINE.ACC"):
        return (f"{which}-machine-password-" * 12)[:120].encode("utf-16-le")
    return f"{which}-{name}".encode("utf-16-le")


def impacket_dump(config: Path, history: bool = True, *, cached: bool = False) -> list[str]:
    """Every line impacket's offline LSASecrets prints for SYSTEM+SECURITY in `config`: the
    secrets, or with `cached` the cached domain logons."""
    from impacket.examples.secretsdump import LocalOperations, LSASecrets

    lines: list[str] = []
    boot = LocalOperations(str(config / "SYSTEM")).getBootKey()
    dump = LSASecrets(str(config / "SECURITY"), boot, isRemote=False, history=history,
                      perSecretCallback=lambda _kind, secret: lines.append(secret))
    try:
        if cached:
            dump.dumpCachedHashes()
        else:
            dump.dumpSecrets()
    finally:
        dump.finish()
    return lines


def expected_lines(name: str, value: bytes, suffix: str = "") -> list[str]:
    """What impacket prints for `value` of secret `name` (suffix "_history" for OldVal)."""
    upper = name.upper()
    if upper.startswith("DPAPI_SYSTEM"):
        return [f"dpapi_machinekey:0x{value[4:24].hex()}\ndpapi_userkey:0x{value[24:44].hex()}"]
    if upper.startswith(("DEFAULTPASSWORD", "_SC_")):
        return [f"(Unknown User):{value.decode('utf-16-le')}"]
    if upper.startswith("$MACHINE.ACC"):
        return [f":plain_password_hex:{value.hex()}"]
    return [f"{name}{suffix}:{value.hex()}"]
