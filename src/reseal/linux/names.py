"""Validation of the identity values a Linux clone is given: host names, machine ids, MACs."""

from __future__ import annotations

import re

from reseal.errors import BadInput

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", re.IGNORECASE)
# Linux keeps the host name in a 64-byte field (HOST_NAME_MAX); systemd enforces the same.
LINUX_HOSTNAME_MAX = 64


def validate_hostname(name: str) -> str:
    """Return `name` if it is an RFC 1123 host name a Linux kernel can hold; else BadInput."""
    where = f"hostname {name!r}"
    if not name:
        raise BadInput("hostname is empty; give a name such as web-01")
    if len(name) > LINUX_HOSTNAME_MAX:
        raise BadInput(
            f"{where}: {len(name)} characters, Linux allows at most {LINUX_HOSTNAME_MAX}; "
            "use a shorter name"
        )
    if name.endswith("."):
        raise BadInput(f"{where}: a trailing dot is not allowed in a host name; drop it")
    for label in name.split("."):
        if not label:
            raise BadInput(f"{where}: empty label (two dots in a row); RFC 1123 needs 1-63 characters")
        if len(label) > 63:
            raise BadInput(f"{where}: label {label[:16]!r}... is longer than 63 characters (RFC 1123)")
        if not LABEL.match(label):
            raise BadInput(
                f"{where}: label {label!r} breaks RFC 1123: use letters, digits and hyphens, "
                "not starting or ending with a hyphen"
            )
    return name


def validate_machine_id(value: str) -> str:
    """Return a machine id (32 lower-case hex digits, not all zero); else BadInput."""
    if not MACHINE_ID.match(value) or set(value) == {"0"}:
        raise BadInput(
            f"machine-id {value!r}: must be 32 lower-case hexadecimal digits, not all zero "
            "(see machine-id(5))"
        )
    return value


def validate_mac(value: str) -> str:
    if not MAC.match(value):
        raise BadInput(f"MAC address {value!r}: expected six hex pairs such as 52:54:00:12:34:56")
    octets = [int(part, 16) for part in value.split(":")]
    if not any(octets) or octets[0] & 1:
        raise BadInput(f"MAC address {value!r}: all zero, broadcast or multicast; a machine "
                       "needs a unicast address such as 52:54:00:12:34:56")
    return value.lower()


def short_name(hostname: str) -> str:
    return hostname.split(".", 1)[0]
