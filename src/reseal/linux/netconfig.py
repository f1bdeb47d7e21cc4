"""MAC-bound network configuration, one function per format (text in, text out).

Each function returns the new text and what it changed. A binding is either moved to the MAC
the clone will have (when the user gave one) or dropped so that the configuration follows
whatever Ethernet device the clone has. Secrets in the files (Wi-Fi keys, 802.1X passwords)
are never read into the change list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reseal.linux import shellvars

MAC_TEXT = r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"
MAC_TOKEN = re.compile(rf"(?<![0-9A-Fa-f:]){MAC_TEXT}(?![0-9A-Fa-f:])")
# Values of NetworkManager's cloned-mac-address that are policies, not addresses.
NM_MAC_POLICIES = {"preserve", "permanent", "random", "stable", "stable-ssid"}
# Dropped MAC matches become a match on any Ethernet-style name.
ETHERNET_NAME_GLOB = "e*"


@dataclass(frozen=True)
class NetEdit:
    what: str  # "mac-address", "connection uuid", "HWADDR"...
    old: str
    new: str | None  # None: removed


# ----------------------------------------------------------------- INI-style (NM, networkd)
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_.-]+)(\s*=\s*)(.*?)\s*$")


def _ini_edit(text: str, handler: IniHandler) -> tuple[str, list[NetEdit]]:
    out: list[str] = []
    edits: list[NetEdit] = []
    section = ""
    for line in text.splitlines(keepends=True):
        header = _SECTION.match(line)
        if header:
            section = header.group(1).strip().lower()
            out.append(line)
            continue
        match = _KEY.match(line.rstrip("\n"))
        if not match or line.lstrip().startswith(("#", ";")):
            out.append(line)
            continue
        result = handler(section, match.group(2), match.group(4))
        if result is None:
            out.append(line)
            continue
        replacement, edit = result
        edits.append(edit)
        if replacement is not None:
            ending = "\n" if line.endswith("\n") else ""
            out.append(f"{match.group(1)}{replacement}{ending}")
    return "".join(out), edits


IniResult = tuple[str | None, NetEdit] | None


class IniHandler:
    def __call__(self, section: str, key: str, value: str) -> IniResult:  # pragma: no cover
        raise NotImplementedError


class _NMHandler(IniHandler):
    def __init__(self, new_uuid: str, new_mac: str | None) -> None:
        self.new_uuid = new_uuid
        self.new_mac = new_mac

    def __call__(self, section: str, key: str, value: str) -> IniResult:
        if section == "connection" and key == "uuid" and value:
            return f"uuid={self.new_uuid}", NetEdit("connection uuid", value, self.new_uuid)
        if section in ("ethernet", "802-3-ethernet", "wifi", "802-11-wireless"):
            if key == "mac-address" and value:
                if self.new_mac:
                    return f"mac-address={self.new_mac}", NetEdit("mac-address", value, self.new_mac)
                return None, NetEdit("mac-address", value, None)
            if key == "cloned-mac-address" and value.lower() not in NM_MAC_POLICIES:
                return None, NetEdit("cloned-mac-address", value, None)
            if key == "mac-address-blacklist" and MAC_TOKEN.search(value):
                return None, NetEdit("mac-address-blacklist", value, None)
        return None


class _NMHostnameHandler(IniHandler):
    def __init__(self, old: str, new: str) -> None:
        self.old = old.lower()
        self.new = new

    def __call__(self, section: str, key: str, value: str) -> IniResult:
        if section not in ("ipv4", "ipv6") or key != "dhcp-hostname" or not value:
            return None
        short_old = self.old.split(".", 1)[0]
        if value.lower() not in (self.old, short_old):
            return None
        # the DHCP name follows the form the master used: short or fully qualified
        new = self.new if "." in value or "." not in self.new else self.new.split(".", 1)[0]
        return f"dhcp-hostname={new}", NetEdit(f"[{section}] dhcp-hostname", value, new)


def set_nm_dhcp_hostname(text: str, old: str, new: str) -> tuple[str, list[NetEdit]]:
    """NetworkManager keyfile: a dhcp-hostname= naming the master names the clone instead."""
    return _ini_edit(text, _NMHostnameHandler(old, new))


def edit_nm_keyfile(text: str, new_uuid: str, new_mac: str | None) -> tuple[str, list[NetEdit]]:
    """NetworkManager keyfile: new connection uuid; MAC binding moved or dropped."""
    return _ini_edit(text, _NMHandler(new_uuid, new_mac))


class _NetworkdHandler(IniHandler):
    def __init__(self, new_mac: str | None, is_link: bool) -> None:
        self.new_mac = new_mac
        self.is_link = is_link

    def __call__(self, section: str, key: str, value: str) -> IniResult:
        if section == "match" and key in ("MACAddress", "PermanentMACAddress") and value:
            if self.new_mac:
                return f"{key}={self.new_mac}", NetEdit(key, value, self.new_mac)
            name_key = "OriginalName" if self.is_link else "Name"
            return f"{name_key}={ETHERNET_NAME_GLOB}", NetEdit(key, value, f"{name_key}={ETHERNET_NAME_GLOB}")
        if section in ("link", "netdev") and key == "MACAddress" and MAC_TOKEN.fullmatch(value):
            return None, NetEdit(f"[{section}] MACAddress", value, None)
        if section in ("dhcp", "dhcpv4", "dhcpv6") and key == "DUIDRawData":
            return None, NetEdit("DUIDRawData", value, None)
        return None


def edit_networkd(text: str, new_mac: str | None, *, is_link: bool) -> tuple[str, list[NetEdit]]:
    """systemd-networkd .link/.network/.netdev: [Match] MAC -> new MAC or a name match."""
    return _ini_edit(text, _NetworkdHandler(new_mac, is_link))


# ----------------------------------------------------------------- netplan (YAML, line-based)
_YAML_KEY = re.compile(r"^(\s*)(macaddress)(\s*:\s*)[\"']?(" + MAC_TEXT + r")[\"']?(\s*(?:#.*)?)$")


def edit_netplan(text: str, new_mac: str | None) -> tuple[str, list[NetEdit]]:
    """netplan: `match: macaddress:` moved or turned into a name match; set MACs dropped.

    Edited line by line so that comments and layout stay; the parent key of each
    `macaddress:` line (found by indentation) tells a match from a MAC being set.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    edits: list[NetEdit] = []
    for index, line in enumerate(lines):
        match = _YAML_KEY.match(line.rstrip("\n"))
        if not match:
            out.append(line)
            continue
        ending = "\n" if line.endswith("\n") else ""
        indent, mac = match.group(1), match.group(4)
        parent = _yaml_parent(lines, index, len(indent))
        if parent == "match":
            if new_mac:
                out.append(f'{indent}macaddress: "{new_mac}"{ending}')
                edits.append(NetEdit("netplan match macaddress", mac, new_mac))
            else:
                out.append(f'{indent}name: "{ETHERNET_NAME_GLOB}"{ending}')
                edits.append(NetEdit("netplan match macaddress", mac, f"name: {ETHERNET_NAME_GLOB}"))
        else:
            edits.append(NetEdit("netplan macaddress", mac, None))
    return "".join(out), edits


def _yaml_parent(lines: list[str], index: int, indent: int) -> str:
    for previous in range(index - 1, -1, -1):
        line = lines[previous]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        own = len(line) - len(line.lstrip())
        if own < indent:
            return stripped.split(":", 1)[0].strip().strip("\"'")
    return ""


# ----------------------------------------------------------------- ifcfg (RHEL, SUSE)
def edit_ifcfg(text: str, new_uuid: str, new_mac: str | None) -> tuple[str, list[NetEdit]]:
    """ifcfg-*: HWADDR moved or dropped, MACADDR/LLADDR dropped, UUID renewed."""
    edits: list[NetEdit] = []
    for key in ("HWADDR",):
        old = shellvars.get(text, key)
        if old:
            if new_mac:
                text = shellvars.set_value(text, key, new_mac, add=False)
                edits.append(NetEdit(key, old, new_mac))
            else:
                text = shellvars.remove(text, key)
                edits.append(NetEdit(key, old, None))
    for key in ("MACADDR", "LLADDR"):
        old = shellvars.get(text, key)
        if old:
            text = shellvars.remove(text, key)
            edits.append(NetEdit(key, old, None))
    old_uuid = shellvars.get(text, "UUID")
    if old_uuid:
        text = shellvars.set_value(text, "UUID", new_uuid, add=False)
        edits.append(NetEdit("UUID", old_uuid, new_uuid))
    return text, edits


# ----------------------------------------------------------------- udev rules
def udev_rule_macs(text: str) -> list[str]:
    """MACs that udev rules match on (ATTR{address}==...)."""
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"ATTRS?\{address\}\s*==\s*\"(" + MAC_TEXT + ")\"", line):
            found.append(match.group(1))
    return found


_UDEV_NAME = re.compile(r"\bNAME\s*:?=\s*\"([^\"]+)\"")
_UDEV_MAC = re.compile(r"ATTRS?\{address\}\s*==\s*\"(" + MAC_TEXT + ")\"")
KERNEL_NAME = re.compile(r"eth(\d+)")
NAME_RULES_HEADER = ("# Interface names kept by reseal for this clone, without the MAC matches of\n"
                     "# the machine it was cloned from: the first Ethernet device the kernel finds\n"
                     "# gets the first name, and so on, so configuration naming them\n"
                     "# (/etc/network/interfaces, ifcfg, NetworkManager) still applies.\n")


@dataclass(frozen=True)
class NamedNic:
    mac: str
    name: str


def udev_named_nics(text: str) -> list[NamedNic]:
    """The MAC -> interface name pairs of persistent-net rules, in file order."""
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        mac, name = _UDEV_MAC.search(line), _UDEV_NAME.search(line)
        if mac and name:
            found.append(NamedNic(mac.group(1).lower(), name.group(1)))
    return found


def name_keeping_rules(nics: list[NamedNic], new_mac: str | None) -> str:
    """udev rules that give the clone's NICs the master's names without its MACs.

    With `new_mac` (a single-NIC clone whose MAC is known) the first name is bound to that
    MAC. Otherwise each name goes to the Ethernet device the kernel enumerates in the same
    position (ethN, before any renaming), which is stable for the one-NIC machines clones
    usually are; a name that is itself ethN stays with kernel device ethN."""
    rules = [NAME_RULES_HEADER]
    taken: set[int] = {int(m.group(1)) for nic in nics
                       if (m := KERNEL_NAME.fullmatch(nic.name))}
    free = (n for n in range(len(nics) * 2 + 1) if n not in taken)
    for position, nic in enumerate(nics):
        if position == 0 and new_mac:
            match = f'ATTR{{address}}=="{new_mac.lower()}"'
        else:
            kernel = KERNEL_NAME.fullmatch(nic.name)
            number = int(kernel.group(1)) if kernel else next(free)
            match = f'ATTR{{type}}=="1", KERNEL=="eth{number}"'
        rules.append(f'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", {match}, '
                     f'NAME="{nic.name}"\n')
    return "".join(rules)


def macs_in(text: str) -> list[str]:
    return [m.group(0).lower() for m in MAC_TOKEN.finditer(text)]
