"""os-release parsing and the distribution family it implies (which files hold what)."""

from __future__ import annotations

import enum
import shlex
from dataclasses import dataclass


class Family(enum.StrEnum):
    DEBIAN = "debian"  # Debian, Ubuntu, Mint...
    REDHAT = "redhat"  # RHEL, Fedora, CentOS, Rocky, Alma...
    SUSE = "suse"
    ARCH = "arch"
    OTHER = "other"


@dataclass(frozen=True)
class OSRelease:
    id: str = ""
    id_like: tuple[str, ...] = ()
    version_id: str = ""
    pretty_name: str = ""

    @property
    def family(self) -> Family:
        for name in (self.id, *self.id_like):
            found = _FAMILIES.get(name)
            if found is not None:
                return found
        return Family.OTHER


_FAMILIES = {
    "debian": Family.DEBIAN, "ubuntu": Family.DEBIAN,
    "rhel": Family.REDHAT, "fedora": Family.REDHAT, "centos": Family.REDHAT,
    "suse": Family.SUSE, "opensuse": Family.SUSE, "sles": Family.SUSE,
    "arch": Family.ARCH, "archlinux": Family.ARCH,
}


def parse_shell_assignments(text: str) -> dict[str, str]:
    """KEY=VALUE lines with shell quoting (os-release, sysconfig files); bad lines skipped."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        try:
            parts = shlex.split(raw, comments=True)
        except ValueError:
            continue
        values[key] = parts[0] if parts else ""
    return values


def parse_os_release(text: str) -> OSRelease:
    values = parse_shell_assignments(text)
    return OSRelease(
        id=values.get("ID", "").lower(),
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
        version_id=values.get("VERSION_ID", ""),
        pretty_name=values.get("PRETTY_NAME", values.get("NAME", "")),
    )
