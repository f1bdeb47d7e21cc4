"""Clone identifiers beyond the inspect report, read offline for `reseal audit images`:
Windows' WSUS SusClientId and DHCPv6 DUID, and a Linux dhclient's saved DUID.

Separate small functions so that `reseal inspect` stays as it is; each returns what it found
and never raises for a missing or unreadable hive or file (the audit lists the image anyway).
"""

from __future__ import annotations

import re

from reseal.errors import ResealError
from reseal.image.model import LinuxSystem, WindowsSystem
from reseal.registry import Hive

HIVE_READ_LIMIT = 512 << 20
LEASE_READ_LIMIT = 1 << 20
DHCLIENT_LEASES = ("/var/lib/dhcp/dhclient6.leases", "/var/lib/dhcp/dhclient.leases")
DEFAULT_DUID = re.compile(r'default-duid\s+"([^"]{1,400})"')


def _hive(system: WindowsSystem, name: str) -> Hive | None:
    path = system.hive_path(name)
    if path is None:
        return None
    try:
        return Hive.from_bytes(system.fs.read_bytes(path, limit=HIVE_READ_LIMIT), name=name)
    except (OSError, ResealError):
        return None


def _string(hive: Hive | None, key: str, name: str) -> str | None:
    found = hive.key(key) if hive is not None else None
    value = found.value(name) if found is not None else None
    if value is None:
        return None
    data = value.data
    if isinstance(data, bytes):
        return data.hex() or None
    text = str(data).rstrip("\x00").strip()
    return text or None


def windows_clone_ids(system: WindowsSystem, control_set: int | None) -> dict[str, str]:
    """{"sus-client-id": ..., "dhcp-duid": ...} for what the image holds."""
    found: dict[str, str] = {}
    software = _hive(system, "SOFTWARE")
    sus = _string(software, r"Microsoft\Windows\CurrentVersion\WindowsUpdate", "SusClientId")
    if sus:
        found["sus-client-id"] = sus
    if control_set is not None:
        hive = _hive(system, "SYSTEM")
        duid = _string(hive, rf"ControlSet{control_set:03d}\Services\Tcpip6\Parameters",
                       "Dhcpv6DUID")
        if duid:
            found["dhcp-duid"] = duid
    return found


def linux_saved_duids(system: LinuxSystem) -> list[str]:
    """DUIDs dhclient saved in its lease files (ifupdown's DHCP client on Debian)."""
    duids: list[str] = []
    for path in DHCLIENT_LEASES:
        try:
            if not system.fs.is_file(path):
                continue
            text = system.fs.read_bytes(path, limit=LEASE_READ_LIMIT).decode("utf-8", "replace")
        except (OSError, ResealError):
            continue
        for match in DEFAULT_DUID.finditer(text):
            if match.group(1) not in duids:
                duids.append(match.group(1))
    return duids
