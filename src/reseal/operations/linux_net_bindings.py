"""linux-net-bindings: configuration bound to the master's NICs and DHCP state it left behind.

A clone has other MACs, so MAC-bound rules either name a device that never appears (and the
clone comes up without network) or, when they set a MAC, make clones collide on the wire.
Connection UUIDs and DHCP leases/DUIDs are per machine too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from reseal.image.model import OSFamily
from reseal.linux import netconfig
from reseal.linux.guest import files_under
from reseal.linux.names import validate_mac
from reseal.linux.netconfig import NetEdit
from reseal.operations._linux_support import new_uuid, preflight
from reseal.operations.base import IdentityRequest, Operation, OperationContext

ORDER = 23
UDEV_RULES = ("/etc/udev/rules.d/70-persistent-net.rules",)
NM_CONNECTIONS = "/etc/NetworkManager/system-connections"
IFCFG_DIRS = ("/etc/sysconfig/network-scripts", "/etc/sysconfig/network")
NETWORKD_DIR = "/etc/systemd/network"
NETPLAN_DIR = "/etc/netplan"
# Per-machine DHCP/network state: leases carry the master's addresses and client ids,
# DUID files and NetworkManager's secret_key make every clone present the same identity.
STATE_DIRS = ("/var/lib/dhcp", "/var/lib/dhclient", "/var/lib/NetworkManager", "/var/lib/dhcpcd",
              "/var/lib/wicked")
STATE_SUFFIXES = (".lease", ".leases", ".duid")
# NetworkManager's timestamps and seen-bssids are keyed by the master's connection UUIDs.
STATE_FILES = ("/var/lib/NetworkManager/secret_key", "/var/lib/NetworkManager/timestamps",
               "/var/lib/NetworkManager/seen-bssids", "/etc/dhcpcd.duid", "/var/lib/dhcpcd/duid",
               "/var/lib/wicked/duid.xml", "/var/lib/wicked/iaid.xml")


@dataclass
class NetBindingOptions:
    new_mac: str | None = None  # the clone's MAC (single-NIC clones): bindings move to it


def validate(request: IdentityRequest, options: Any) -> None:
    if isinstance(options, NetBindingOptions) and options.new_mac:
        validate_mac(options.new_mac)


def apply(ctx: OperationContext) -> None:
    options = ctx.options if isinstance(ctx.options, NetBindingOptions) else NetBindingOptions()
    validate(ctx.request, options)
    preflight(ctx)
    new_mac = options.new_mac.lower() if options.new_mac else None
    old_macs: list[str] = []
    fs = ctx.system.fs

    for path in UDEV_RULES:
        if fs.is_file(path):
            _udev_rules(ctx, path, new_mac, old_macs)

    for path in files_under(fs, NM_CONNECTIONS):
        _edit(ctx, path, lambda t: netconfig.edit_nm_keyfile(t, new_uuid(ctx), new_mac), old_macs)
    for directory in IFCFG_DIRS:
        for path in files_under(fs, directory):
            if path.rsplit("/", 1)[1].startswith("ifcfg-") and not path.endswith("ifcfg-lo"):
                _edit(ctx, path, lambda t: netconfig.edit_ifcfg(t, new_uuid(ctx), new_mac), old_macs)
    for path in files_under(fs, NETWORKD_DIR, (".link", ".network", ".netdev")):
        _edit(ctx, path, partial(netconfig.edit_networkd, new_mac=new_mac,
                                 is_link=path.endswith(".link")), old_macs)
    for path in files_under(fs, NETPLAN_DIR, (".yaml", ".yml")):
        _edit(ctx, path, lambda t: netconfig.edit_netplan(t, new_mac), old_macs)

    for directory in STATE_DIRS:
        for path in files_under(fs, directory, STATE_SUFFIXES):
            fs.remove(path)
            ctx.change(path, "remove")
    for path in STATE_FILES:
        if fs.is_file(path):
            fs.remove(path)
            ctx.change(path, "remove")

    unique = sorted(set(old_macs) - {new_mac})
    for number, mac in enumerate(unique, start=1):
        ctx.identity(f"mac:{number}", mac, new_mac)
    if unique and not new_mac:
        ctx.note("MAC bindings dropped: configuration now follows any Ethernet device "
                 f"(name {netconfig.ETHERNET_NAME_GLOB}); give new_mac to bind to the clone's NIC")


def _udev_rules(ctx: OperationContext, path: str, new_mac: str | None,
                old_macs: list[str]) -> None:
    """Persistent-net rules bind names to the master's MACs. A clone has other MACs, so the
    names would go (the NIC comes up as ens3 and /etc/network/interfaces' eth0 stays down):
    the rules become ones that keep the names without the MACs."""
    fs = ctx.system.fs
    text = fs.read_text(path)
    macs = netconfig.udev_rule_macs(text)
    old_macs.extend(m.lower() for m in macs)
    nics = netconfig.udev_named_nics(text)
    if not nics:
        fs.remove(path)
        ctx.change(path, "remove", ", ".join(macs) or None)
        return
    fs.write_text(path, netconfig.name_keeping_rules(nics, new_mac))
    for nic in nics:
        ctx.change(f"{path} {nic.name}", "set", f"MAC {nic.mac}",
                   "this clone's MAC" if new_mac and nic is nics[0] else
                   "the kernel's Ethernet device in the same position")
    ctx.note(f"{path}: interface names {', '.join(n.name for n in nics)} kept without the "
             "master's MACs, so configuration that names them still applies")


def _edit(ctx: OperationContext, path: str,
          editor: Callable[[str], tuple[str, list[NetEdit]]], old_macs: list[str]) -> None:
    fs = ctx.system.fs
    text = fs.read_text(path)
    new_text, edits = editor(text)
    if not edits or new_text == text:
        return
    fs.write_text(path, new_text)
    for edit in edits:
        if "mac" in edit.what.lower() or edit.what in ("HWADDR", "LLADDR"):
            old_macs.append(edit.old.lower())
        if edit.what in ("connection uuid", "UUID"):
            ctx.identity(f"connection-uuid:{path}", edit.old, edit.new)
        ctx.change(f"{path} {edit.what}", "set" if edit.new else "remove", edit.old, edit.new)
        if edit.new is None and edit.what in ("cloned-mac-address", "netplan macaddress",
                                              "[link] MACAddress", "MACADDR", "LLADDR"):
            ctx.warn(f"{path}: a fixed MAC {edit.old} was set for the master; removed so "
                     "clones do not collide on the network")


OPERATION = Operation(
    name="linux-net-bindings",
    description="drop or move MAC-bound network configuration (udev, NetworkManager, netplan, "
    "ifcfg, networkd), new connection UUIDs, remove DHCP leases and DUIDs",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
    options_type=NetBindingOptions,
)
