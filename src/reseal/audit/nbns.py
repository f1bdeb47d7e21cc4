"""NetBIOS node status (RFC 1002 4.2.17/18, UDP 137) of many hosts over one socket.

impacket builds the request and parses the answer (`impacket.nmb`); the sending and waiting
are done here so that one socket asks every host at once, each host is asked at most twice,
and the whole exchange ends after `timeout` seconds whatever arrives. An answer that does not
parse is recorded as garbage, never raised.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import time
from dataclasses import dataclass, field

from impacket import nmb

MAX_DATAGRAMS = 10_000
GROUP_FLAG = 0x8000


@dataclass
class NodeStatus:
    status: str  # "ok", "no answer", "garbage", "error"
    names: list[tuple[str, int, bool]] = field(default_factory=list)  # (name, suffix, group)
    mac: str = ""
    detail: str = ""

    def unique(self, suffix: int) -> str | None:
        return next((n for n, s, g in self.names if s == suffix and not g), None)

    def group(self, suffix: int) -> str | None:
        return next((n for n, s, g in self.names if s == suffix and g), None)


def _request(transaction: int) -> bytes:
    packet = nmb.NODE_STATUS_REQUEST()
    packet["NAME_TRN_ID"] = transaction
    packet["QUESTION_NAME"] = nmb.encode_name("*", nmb.TYPE_WORKSTATION, None)[:-1] + b"\x00"
    return packet.getData()


def parse_answer(data: bytes) -> tuple[int, NodeStatus]:
    """(transaction id, status) of one datagram; raises ValueError when it is not an answer."""
    try:
        packet = nmb.NAME_SERVICE_PACKET(data)
        if not packet["FLAGS"] & 0x8000:
            raise ValueError("not a response")
        answer = nmb.NBNodeStatusResponse(packet["ANSWERS"])
        names = []
        for entry in answer.entries:
            raw: bytes = entry["NAME"]
            name = raw.decode("latin-1").rstrip(" \x00")
            names.append((name, int(entry["TYPE"]), bool(entry["NAME_FLAGS"] & GROUP_FLAG)))
        return int(packet["NAME_TRN_ID"]), NodeStatus("ok", names, answer.get_mac().lower()
                                                       .replace("-", ":"))
    except ValueError:
        raise
    except Exception as exc:  # impacket's Structure raises struct/Index/Type errors on junk
        raise ValueError(f"not a node status answer ({type(exc).__name__})") from None


def node_status(addresses: list[ipaddress.IPv4Address], timeout: float,
                port: int = 137) -> dict[ipaddress.IPv4Address, NodeStatus]:
    results: dict[ipaddress.IPv4Address, NodeStatus] = {}
    if not addresses:
        return results
    transactions = {a: (n % 0x7FFF) + 1 for n, a in enumerate(addresses)}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        start = time.monotonic()
        end = start + timeout
        resend_at = start + timeout / 2
        for address in addresses:
            with contextlib.suppress(OSError):
                sock.sendto(_request(transactions[address]), (str(address), port))
        resent = False
        received = 0
        while received < MAX_DATAGRAMS and len(results) < len(addresses):
            now = time.monotonic()
            if now >= end:
                break
            if not resent and now >= resend_at:
                for address in addresses:
                    if address not in results:
                        with contextlib.suppress(OSError):
                            sock.sendto(_request(transactions[address]), (str(address), port))
                resent = True
            limit = (resend_at if not resent else end) - now
            ready, _, _ = select.select([sock], [], [], max(0.0, limit))
            if not ready:
                continue
            try:
                data, (sender, _port) = sock.recvfrom(4096)
            except OSError:
                continue  # ICMP port unreachable surfaces here: the host said no
            received += 1
            try:
                peer = ipaddress.IPv4Address(sender)
            except ValueError:
                continue
            if peer not in transactions or peer in results and results[peer].status == "ok":
                continue
            try:
                transaction, status = parse_answer(data)
            except ValueError as exc:
                results[peer] = NodeStatus("garbage", detail=str(exc))
                continue
            if transaction == transactions[peer]:
                results[peer] = status
    finally:
        sock.close()
    for address in addresses:
        results.setdefault(address, NodeStatus("no answer", detail=f"nothing within {timeout:g} s"))
    return results
