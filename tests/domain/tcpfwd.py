"""QEMU guestfwd helper: relay one guest connection (stdin/stdout) to HOST:PORT on the host.

QEMU's user networking runs `guestfwd=tcp:IP:PORT-cmd:python3 tcpfwd.py HOST PORT` once per
connection the guest opens to IP:PORT, with the connection on fd 0/1. This lets a booted clone
reach the test DC on its free 127.0.0.x address (the 10.0.2.2 gateway reaches only 127.0.0.1).
Ends when either side closes, or after an hour without traffic.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

IDLE_LIMIT = 3600.0


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    upstream = socket.create_connection((host, port), timeout=10)
    upstream.settimeout(None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, "guest")
    selector.register(upstream, selectors.EVENT_READ, "dc")
    while True:
        events = selector.select(timeout=IDLE_LIMIT)
        if not events:
            return 0
        for key, _mask in events:
            if key.data == "guest":
                data = os.read(0, 65536)
                if not data:
                    return 0
                upstream.sendall(data)
            else:
                data = upstream.recv(65536)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]


if __name__ == "__main__":
    sys.exit(main())
