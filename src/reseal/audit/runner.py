"""A bounded pool for network probes: at most `concurrency` at once, each within its budget,
all within a hard deadline.

impacket and paramiko block in socket calls, so probes run in threads. A thread cannot be
stopped from outside, so a probe that overruns its budget (a server that drips one byte just
before each read times out) is abandoned: its result is recorded as "no answer", its slot is
given to the next probe, and the daemon thread ends on its own when its socket times out,
without holding the audit or the process open. Probes not started when the deadline passes
are recorded as not probed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    key: Any
    value: Any = None
    error: BaseException | None = None
    overran: bool = False  # abandoned after its budget
    not_started: bool = False  # the deadline passed first
    seconds: float = 0.0


@dataclass
class _Task:
    key: Any
    run: Callable[[], Any]
    budget: float


class BoundedRunner:
    def __init__(self, concurrency: int, deadline: float,
                 on_done: Callable[[Outcome], None] | None = None) -> None:
        self.concurrency = max(1, concurrency)
        self.deadline = deadline  # time.monotonic() value
        self.on_done = on_done
        self.tasks: list[_Task] = []

    def add(self, key: Any, run: Callable[[], Any], budget: float) -> None:
        self.tasks.append(_Task(key, run, budget))

    def run(self) -> dict[Any, Outcome]:
        results: dict[Any, Outcome] = {}
        done: queue.Queue[tuple[Any, Any, BaseException | None, float]] = queue.Queue()
        pending = list(reversed(self.tasks))
        running: dict[Any, tuple[float, float]] = {}  # key -> (started, budget end)

        def worker(task: _Task) -> None:
            started = time.monotonic()
            try:
                value, error = task.run(), None
            except BaseException as exc:  # a probe's failure is its result, never the audit's
                value, error = None, exc
            done.put((task.key, value, error, time.monotonic() - started))

        def finish(outcome: Outcome) -> None:
            results[outcome.key] = outcome
            if self.on_done is not None:
                self.on_done(outcome)

        while pending or running:
            now = time.monotonic()
            while pending and len(running) < self.concurrency and now < self.deadline:
                task = pending.pop()
                end = min(now + task.budget, self.deadline)
                running[task.key] = (now, end)
                threading.Thread(target=worker, args=(task,), daemon=True,
                                 name=f"probe {task.key}").start()
            if now >= self.deadline:
                for task in reversed(pending):
                    finish(Outcome(task.key, not_started=True))
                pending.clear()
            if not running:
                continue
            wait = max(0.0, min(end for _, end in running.values()) - time.monotonic())
            try:
                key, value, error, seconds = done.get(timeout=wait)
            except queue.Empty:
                now = time.monotonic()
                for key, (started, end) in list(running.items()):
                    if now >= end:
                        del running[key]
                        finish(Outcome(key, overran=True, seconds=now - started))
                continue
            if key in running:  # else: abandoned earlier, its late answer is dropped
                del running[key]
                finish(Outcome(key, value, error, seconds=seconds))
        return results
