"""A one-line progress bar for a terminal (stderr); silent when stderr is not a terminal, so
logs and pipes get only the report."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, total: int, what: str, stream: TextIO | None = None,
                 bar: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if bar is None else bar
        self.total = max(total, 1)
        self.what = what
        self.done = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.last = ""

    def set_total(self, total: int) -> None:
        self.total = max(total, 1)
        self.draw()

    def advance(self, label: str = "") -> None:
        with self.lock:
            self.done += 1
            self.last = label
        self.draw()

    def draw(self) -> None:
        if not self.enabled:
            return
        filled = min(WIDTH, WIDTH * self.done // self.total)
        elapsed = time.monotonic() - self.started
        line = (f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} "
                f"{self.what} {elapsed:5.1f}s {self.last[:30]:30}")
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (WIDTH + 80) + "\r")
            self.stream.flush()
