"""A hostile lab host: `responder.py BEHAVIOUR ADDRESS NAME`, run inside a lab namespace.

Behaviours (what a scanner meets on a real LAN now and then):
- `garbage`: TCP 22/139/445 send random bytes and close; UDP 137 answers random bytes.
- `reset`: TCP 22/139/445 accept and reset the connection at once; UDP 137 stays silent.
- `silent`: TCP 22/139/445 accept and never say a word; UDP 137 stays silent.
- `names`: UDP 137 answers node status with hostile names (`<script>`, quotes, ampersands),
  TCP ports closed.
- `quiet`: nothing listens; the host only answers ARP (and refuses TCP).
It runs until killed (the lab kills its PID namespace); it never sends first.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import struct
import sys
import time

TCP_PORTS = (22, 139, 445)
HOSTILE_NAMES = (b"<script>x", b"\"&'<b>", b"WORKGRP<i>")


def node_status_answer(request: bytes, names: tuple[bytes, ...]) -> bytes:
    """RFC 1002 4.2.18 NODE STATUS RESPONSE to `request` (its transaction id and name)."""
    trn_id = request[:2]
    question = request[12:12 + 34]
    entries = b""
    for n, name in enumerate(names):
        suffix = 0x20 if n == 1 else 0x00
        flags = 0x0400 | (0x8000 if n == 2 else 0)
        entries += name[:15].ljust(15, b" ") + bytes([suffix]) + struct.pack(">H", flags)
    statistics = bytes.fromhex("525400de ad01") + bytes(40)
    rdata = bytes([len(names)]) + entries + statistics
    return (trn_id + struct.pack(">HHHHH", 0x8400, 0, 1, 0, 0) + question
            + struct.pack(">HHIH", 0x21, 1, 0, len(rdata)) + rdata)


def main() -> int:
    behaviour, address = sys.argv[1], sys.argv[2]
    if behaviour == "quiet":
        while True:
            time.sleep(3600)
    selector = selectors.DefaultSelector()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((address, 137))
    selector.register(udp, selectors.EVENT_READ, "udp")
    if behaviour != "names":
        for port in TCP_PORTS:
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((address, port))
            server.listen(64)
            selector.register(server, selectors.EVENT_READ, "listen")
    held: list[socket.socket] = []
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "udp":
                data, peer = sock.recvfrom(2048)
                if behaviour == "garbage":
                    sock.sendto(os.urandom(60), peer)
                elif behaviour == "names" and len(data) >= 50:
                    sock.sendto(node_status_answer(data, HOSTILE_NAMES), peer)
            elif key.data == "listen":
                conn, _ = sock.accept()
                if behaviour == "garbage":
                    with contextlib.suppress(OSError):
                        conn.sendall(os.urandom(512))
                    conn.close()
                elif behaviour == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()
                else:
                    held.append(conn)
                    if len(held) > 256:
                        held.pop(0).close()


if __name__ == "__main__":
    sys.exit(main())
