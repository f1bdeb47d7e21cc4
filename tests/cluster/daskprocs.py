"""A real Dask cluster for the tests: `dask scheduler` and `dask worker` as separate
processes on loopback, each worker in its own working directory; everything is stopped at
the end, also when a test fails."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DaskWorker:
    name: str
    process: subprocess.Popen[bytes]
    directory: Path

    def address(self) -> str | None:
        """The worker's address once it has registered (read from its log)."""
        log = (self.directory / "worker.log").read_text(errors="replace")
        for line in log.splitlines():
            if "Start worker at:" in line:
                return line.rsplit(" ", 1)[-1].strip()
        return None

    def kill(self) -> None:
        """SIGKILL to the worker and every process of its group (its machine processes)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    directory: Path
    workers: list[DaskWorker] = field(default_factory=list)

    def add_worker(self, name: str, env: dict[str, str] | None = None) -> DaskWorker:
        directory = self.directory / name
        directory.mkdir()
        with open(directory / "worker.log", "wb") as log:
            process = subprocess.Popen(
                [str(DASK), "worker", self.address, "--name", name, "--nthreads", "1",
                 "--no-nanny", "--host", "127.0.0.1", "--local-directory", str(directory),
                 "--no-dashboard"],
                cwd=directory, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env)
        worker = DaskWorker(name, process, directory)
        self.workers.append(worker)
        deadline = time.monotonic() + START_TIMEOUT
        while worker.address() is None:
            assert process.poll() is None, (directory / "worker.log").read_text()
            assert time.monotonic() < deadline, "dask worker did not start"
            time.sleep(0.1)
        return worker

    def kill_scheduler(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait(timeout=30)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.kill()
        if self.scheduler.poll() is None:
            self.kill_scheduler()


@contextlib.contextmanager
def dask_cluster(directory: Path, workers: int = 2) -> Iterator[DaskCluster]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "scheduler.log", "wb") as log:
        scheduler = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--dashboard-address", f"127.0.0.1:{free_port()}"],
            cwd=directory, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    cluster = DaskCluster(address, scheduler, directory)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert scheduler.poll() is None, (directory / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        for n in range(workers):
            cluster.add_worker(f"w{n + 1}")
        yield cluster
    finally:
        cluster.stop()
