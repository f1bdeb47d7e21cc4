"""The default executor: worker processes on this host (`--jobs N`)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from reseal.cluster.process import guarded_call, new_pool, stop_pool


class LocalExecutor:
    """Runs machines in `slots` local worker processes."""

    kind = "local"

    def __init__(self, run: Callable[[Any], Any], slots: int) -> None:
        self.run = run
        self.slots = slots
        self.pool = new_pool(slots)

    def describe(self) -> list[str]:
        return []

    def submit(self, job: Any) -> Future[Any]:
        return self.pool.submit(guarded_call, self.run, job)

    def lost(self) -> str | None:
        """Why no more machines can run here (never, for a local pool)."""
        return None

    def abort(self) -> None:
        stop_pool(self.pool)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
