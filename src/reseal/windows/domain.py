"""A Windows installation's domain membership, as SECURITY's LSA policy records it.

`Policy\\PolPrDmN` (primary domain: NetBIOS name, or the workgroup name) and `PolPrDmS` (its SID;
empty for a workgroup member), the DNS domain information `PolDnDDN` (DNS name), `PolDnTrN`
(forest), `PolDnDmG` (domain GUID), `PolMachineAccountS`/`R` (the computer account's SID and
RID, Windows 10), the machine-account secret `$MACHINE.ACC` and the cached logons (`Cache`,
`NL$1..NL$n`, encrypted with the `NL$KM` secret). Names use the UNICODE_STRING layout of
`reseal.windows.sam.encode_policy_name`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from reseal.errors import CorruptData
from reseal.registry import Hive
from reseal.windows.lsa import secret_changed, secret_names
from reseal.windows.sam import decode_policy_name
from reseal.windows.sid import Sid

MACHINE_ACCOUNT_SECRET = "$MACHINE.ACC"
CACHE_KEY_SECRET = "NL$KM"
CACHE = "Cache"
CACHE_CONTROL_VALUES = ("NL$Control", "NL$IterationCount")
CACHE_ENTRY_REVISION_OFFSET = 40
CACHE_ENTRY_SIZE = 168  # an unused slot as Windows keeps it: zeros and the entry revision
CACHE_USER_LENGTH_OFFSET = 0
CACHE_IV = slice(64, 80)
CACHE_LAST_WRITE_OFFSET = 32  # NL_RECORD: FILETIME of the logon, in clear before the IV


@dataclass
class DomainState:
    """What SECURITY says about membership (never a secret's value)."""

    primary_name: str | None = None  # NetBIOS domain or workgroup name
    domain_sid: str | None = None  # None: a workgroup member
    dns_name: str | None = None
    forest: str | None = None
    domain_guid: str | None = None
    account_sid: str | None = None  # PolMachineAccountS: the computer account (Windows 10+)
    machine_secret: bool = False
    machine_secret_changed: datetime | None = None
    cached_logons: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def member(self) -> bool:
        return self.domain_sid is not None

    def describe(self) -> str:
        if not self.member:
            return f"workgroup {self.primary_name or '(unnamed)'}"
        dns = f", DNS {self.dns_name}" if self.dns_name else ""
        return f"domain {self.primary_name} ({self.domain_sid}{dns})"


def policy_bytes(security: Hive, name: str) -> bytes | None:
    key = security.key(f"Policy\\{name}")
    value = key.value("") if key is not None else None
    return value.raw if value is not None else None


def read_domain_state(security: Hive) -> DomainState:
    state = DomainState()
    for name, attribute in (("PolPrDmN", "primary_name"), ("PolDnDDN", "dns_name"),
                            ("PolDnTrN", "forest")):
        raw = policy_bytes(security, name)
        if raw:
            try:
                setattr(state, attribute, decode_policy_name(raw, where=f"SECURITY Policy\\{name}")
                        .rstrip("\0") or None)
            except CorruptData as exc:
                state.problems.append(str(exc))
    for name, attribute in (("PolPrDmS", "domain_sid"), ("PolMachineAccountS", "account_sid")):
        raw = policy_bytes(security, name)
        if raw:
            try:
                setattr(state, attribute,
                        str(Sid.from_bytes(raw, where=f"SECURITY Policy\\{name}")[0]))
            except CorruptData as exc:
                state.problems.append(str(exc))
    raw = policy_bytes(security, "PolDnDmG")
    if raw and len(raw) == 16 and any(raw):
        a, b, c = struct.unpack_from("<IHH", raw)
        state.domain_guid = f"{a:08x}-{b:04x}-{c:04x}-{raw[8:10].hex()}-{raw[10:16].hex()}"
    names = {n.upper() for n in secret_names(security)}
    state.machine_secret = MACHINE_ACCOUNT_SECRET in names
    if state.machine_secret:
        state.machine_secret_changed = secret_changed(security, MACHINE_ACCOUNT_SECRET)
    state.cached_logons = len(used_cache_entries(security))
    return state


def cache_entry_names(security: Hive) -> list[str]:
    key = security.key(CACHE)
    if key is None:
        return []
    return [v.name for v in key.values() if v.name not in CACHE_CONTROL_VALUES]


def used_cache_entries(security: Hive) -> list[str]:
    """NL$n values that hold a logon (a non-zero user name length or IV)."""
    key = security.key(CACHE)
    used: list[str] = []
    for name in cache_entry_names(security):
        value = key.value(name) if key is not None else None
        if value is not None and not is_empty_cache_entry(value.raw):
            used.append(name)
    return used


def cached_logon_times(security: Hive) -> list[tuple[str, datetime | None]]:
    """(NL$n, when the logon was cached) for every used cache slot; the time is the entry's
    LastWrite FILETIME, stored in clear in the NL_RECORD header (impacket's secretsdump
    reads the same header). Nothing is decrypted."""
    key = security.key(CACHE)
    found: list[tuple[str, datetime | None]] = []
    for name in used_cache_entries(security):
        value = key.value(name) if key is not None else None
        raw = value.raw if value is not None else b""
        when = None
        if len(raw) >= CACHE_LAST_WRITE_OFFSET + 8:
            (ticks,) = struct.unpack_from("<Q", raw, CACHE_LAST_WRITE_OFFSET)
            if ticks:
                try:
                    when = datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=ticks // 10)
                except OverflowError:
                    when = None
        found.append((name, when))
    return found


def is_empty_cache_entry(raw: bytes) -> bool:
    if len(raw) < 80:
        return not any(raw)
    return raw[0:2] == b"\0\0" and not any(raw[CACHE_IV])


def empty_cache_entry(revision: int) -> bytes:
    """An unused cache slot, byte for byte as Windows keeps one."""
    entry = bytearray(CACHE_ENTRY_SIZE)
    struct.pack_into("<I", entry, CACHE_ENTRY_REVISION_OFFSET, revision)
    return bytes(entry)


def cache_revision(security: Hive) -> int:
    """The cache revision (NL$Control's first dword; 0x00010004 since Windows Vista)."""
    key = security.key(CACHE)
    control = key.value("NL$Control") if key is not None else None
    if control is not None and len(control.raw) >= 4:
        return int(struct.unpack_from("<I", control.raw)[0])
    return 0x00010004
