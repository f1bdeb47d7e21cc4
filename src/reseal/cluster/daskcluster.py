"""Run a batch's machines on a Dask cluster (`reseal batch F --cluster tcp://HOST:8786`).

Each machine is one Dask task. On the worker the task hands the machine to a worker process
of that Dask worker (`reseal.cluster.process`), exactly as the local pool does, so both paths
run the same `run_machine`. When a Dask worker dies mid-machine, the scheduler gives the task
to another worker; `run_machine` there first puts back what the dead attempt changed. Records,
reports and journals are written by the submitting side and into the batch's state directory,
which every worker must see at the same path (checked before any machine is handed out).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import Any

from reseal.cluster.process import guarded_call, new_pool
from reseal.cluster.requirements import worker_problems
from reseal.errors import BadInput, ResealError

CONNECT_TIMEOUT = 10.0

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _worker_pool() -> ProcessPoolExecutor:
    """This Dask worker's machine processes: one per Dask thread, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None or getattr(_pool, "_broken", False):
            from distributed import get_worker

            _pool = new_pool(max(1, get_worker().state.nthreads))
        return _pool


def call_in_worker_process(run: Callable[[Any], Any], job: Any) -> Any:
    """The Dask task: run one machine in a worker process of this Dask worker."""
    from distributed import get_worker

    try:
        result = _worker_pool().submit(guarded_call, run, job).result()
    except BrokenExecutor:
        raise ResealError("the machine's worker process died (killed or out of memory)") from None
    if hasattr(result, "worker"):
        result.worker = get_worker().address
    return result


class DaskExecutor:
    """Runs machines as tasks of a Dask cluster; only on workers that passed the checks."""

    kind = "cluster"

    def __init__(self, address: str, run: Callable[[Any], Any], *, readable: Sequence[str],
                 writable: Sequence[str], token: tuple[str, str] | None) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise BadInput("--cluster needs Dask distributed: pip install 'reseal[cluster]' "
                           "(the README's set-up installs it)") from None
        self.address = address
        self.run = run
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ResealError(f"{address}: cannot reach the Dask scheduler ({exc}); check that "
                              "`dask scheduler` runs there, or run the batch without --cluster"
                              ) from None
        try:
            answers = self.client.run(worker_problems, list(readable), list(writable), token)
        except Exception as exc:
            self.client.close()
            raise ResealError(f"{address}: the cluster's workers could not be checked: {exc}"
                              ) from None
        self.refused: dict[str, list[str]] = {a: p for a, p in answers.items() if p}
        self.workers = sorted(a for a, p in answers.items() if not p)
        if not self.workers:
            self.client.close()
            if not answers:
                raise ResealError(f"{address}: no Dask worker is connected to the scheduler; "
                                  "start `dask worker " + address + "` on the imaging servers")
            reasons = "; ".join(f"{a}: {', '.join(p)}" for a, p in sorted(self.refused.items()))
            raise ResealError(f"{address}: no worker can run reseal ({reasons})")
        info = self.client.scheduler_info().get("workers", {})
        self.slots = sum(int(info.get(a, {}).get("nthreads", 1)) for a in self.workers)
        self.executor = self.client.get_executor(pure=False, workers=self.workers,
                                                 allow_other_workers=False)

    def describe(self) -> list[str]:
        lines = [f"cluster {self.address}: {len(self.workers)} workers, {self.slots} slots"]
        link = getattr(self.client, "dashboard_link", None)
        if link:
            lines.append(f"dashboard: {link}")
        for address, problems in sorted(self.refused.items()):
            lines.append(f"worker {address} refused: {'; '.join(problems)}")
        return lines

    def submit(self, job: Any) -> Future[Any]:
        future: Future[Any] = self.executor.submit(call_in_worker_process, self.run, job)
        return future

    def lost(self) -> str | None:
        """Why no more machines can run (the scheduler is gone), or None."""
        if self.client.status in ("running", "newly-created"):
            return None
        return f"the Dask scheduler at {self.address} is gone ({self.client.status})"

    def abort(self) -> None:
        """Stop handing out machines. Machines already running on a worker finish there; the
        batch's per-machine locks keep a resumed batch from taking them meanwhile."""
        self.executor.shutdown(wait=False)
        self.close()

    def close(self) -> None:
        self.client.close(timeout=CONNECT_TIMEOUT)

