"""Layer 2 facts for the LAN audit: which targets share a network with one of our interfaces,
who answers ARP for them (every MAC that answers: two MACs for one address is a duplicate
address), and the kernel's neighbour table as a second source.

The sweep sends one ARP request per on-link target through a raw packet socket (root), repeats
it once for the silent ones, and listens for a bounded time. Only targets on a directly
attached network are asked; a routed target has no MAC of its own on our segment (the table
would show the router's), so none is recorded for it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import select
import socket
import struct
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
MAX_REPLIES = 100_000  # frames read in one sweep, whatever the LAN sends


@dataclass(frozen=True)
class LocalInterface:
    name: str
    address: ipaddress.IPv4Address
    network: ipaddress.IPv4Network


@dataclass
class Sweep:
    macs: dict[ipaddress.IPv4Address, list[str]] = field(default_factory=dict)  # in reply order
    asked: set[ipaddress.IPv4Address] = field(default_factory=set)  # on-link targets ARPed
    warnings: list[str] = field(default_factory=list)


def format_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def local_interfaces() -> list[LocalInterface]:
    """IPv4 addresses of the interfaces that are up, loopback left out (`ip -j addr`)."""
    try:
        proc = subprocess.run(["ip", "-j", "-4", "addr", "show", "up"], capture_output=True,
                              text=True, timeout=10, check=False)
        entries = json.loads(proc.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    found = []
    for entry in entries:
        if "LOOPBACK" in entry.get("flags", []):
            continue
        for info in entry.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                iface = ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
                found.append(LocalInterface(entry["ifname"], iface.ip, iface.network))
    return found


def on_link(targets: list[ipaddress.IPv4Address],
            interfaces: list[LocalInterface]) -> dict[ipaddress.IPv4Address, LocalInterface]:
    """The interface through which each on-link target is reached directly."""
    result = {}
    for target in targets:
        for iface in interfaces:
            if target in iface.network and target != iface.address:
                result[target] = iface
                break
    return result


def _request(own_mac: bytes, own_ip: ipaddress.IPv4Address,
             target: ipaddress.IPv4Address) -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, own_mac, own_ip.packed,
                      b"\x00" * 6, target.packed)
    return BROADCAST + own_mac + struct.pack("!H", ETH_P_ARP) + arp


def _reply(frame: bytes) -> tuple[ipaddress.IPv4Address, bytes] | None:
    """(sender address, sender MAC) of an ARP reply frame, None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 2):
        return None
    sha = frame[22:28]
    spa = ipaddress.IPv4Address(frame[28:32])
    return spa, sha


def sweep(targets: dict[ipaddress.IPv4Address, LocalInterface], wait: float) -> Sweep:
    """ARP for every target on its interface; two rounds, `wait` seconds of listening each."""
    result = Sweep()
    by_iface: dict[LocalInterface, list[ipaddress.IPv4Address]] = defaultdict(list)
    for target, iface in targets.items():
        by_iface[iface].append(target)
    seen: dict[ipaddress.IPv4Address, list[str]] = defaultdict(list)
    sockets: list[tuple[socket.socket, LocalInterface, bytes]] = []
    try:
        for iface in by_iface:
            try:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            except PermissionError:
                result.warnings.append("no raw socket (not root): MACs come from the "
                                       "neighbour table only and duplicate addresses are "
                                       "not detected")
                return result
            sock.bind((iface.name, ETH_P_ARP))
            sock.setblocking(False)
            sockets.append((sock, iface, sock.getsockname()[4]))
        wanted = set(targets)
        for round_number in range(2):
            for sock, iface, own_mac in sockets:
                for target in by_iface[iface]:
                    if round_number == 0 or target not in seen:
                        with contextlib.suppress(OSError):
                            sock.send(_request(own_mac, iface.address, target))
                        result.asked.add(target)
            _listen(sockets, wanted, seen, time.monotonic() + wait)
    finally:
        for sock, _, _ in sockets:
            sock.close()
    result.macs = dict(seen)
    return result


def _listen(sockets: list[tuple[socket.socket, LocalInterface, bytes]],
            wanted: set[ipaddress.IPv4Address], seen: dict[ipaddress.IPv4Address, list[str]],
            until: float) -> None:
    frames = 0
    by_fd = {s.fileno(): s for s, _, _ in sockets}
    while frames < MAX_REPLIES:
        left = until - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select(list(by_fd), [], [], left)
        for fd in ready:
            while frames < MAX_REPLIES:
                try:
                    frame = by_fd[fd].recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                frames += 1
                parsed = _reply(frame)
                if parsed is None or parsed[0] not in wanted:
                    continue
                mac = format_mac(parsed[1])
                if mac not in seen[parsed[0]]:
                    seen[parsed[0]].append(mac)


def neighbour_table() -> dict[ipaddress.IPv4Address, str]:
    """Complete entries of the kernel's IPv4 neighbour table (/proc/net/arp)."""
    table: dict[ipaddress.IPv4Address, str] = {}
    try:
        with open("/proc/net/arp", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return table
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        with contextlib.suppress(ValueError):
            if int(fields[2], 16) & 0x2 and fields[3] != "00:00:00:00:00:00":
                table[ipaddress.IPv4Address(fields[0])] = fields[3].lower()
    return table
