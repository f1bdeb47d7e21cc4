"""Worker processes that run one machine at a time and die with whoever started them.

The local pool and every Dask worker run machines in such processes, so a machine's mounts,
loop devices and FUSE servers belong to a process that can be stopped on its own: SIGTERM
unwinds a busy worker (everything is released), and the worker follows its parent when that
parent dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from types import FrameType
from typing import TypeVar

PR_SET_PDEATHSIG = 1
_Arg = TypeVar("_Arg")
_Result = TypeVar("_Result")


class WorkerTerminated(BaseException):
    """SIGTERM in a busy worker: unwind so that mounts and loop devices are released."""


_busy = False  # this worker process is inside guarded_call


def _on_term(signum: int, frame: FrameType | None) -> None:
    if not _busy:
        os._exit(143)  # idle: nothing to release
    raise WorkerTerminated()


def _watch_parent(parent_pid: int) -> None:
    """Backstop for PR_SET_PDEATHSIG: notice the parent is gone and stop this worker."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


def init_worker_process(parent_pid: int) -> None:
    """Die with the parent: a parent that is gone must not leave workers writing to images."""
    signal.signal(signal.SIGTERM, _on_term)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def guarded_call(function: Callable[[_Arg], _Result], argument: _Arg) -> _Result:
    """Run `function(argument)` in a worker process; a SIGTERM meanwhile unwinds it (its
    `finally` blocks release what it holds) and ends the process."""
    global _busy
    _busy = True
    try:
        return function(argument)
    except WorkerTerminated:
        os._exit(143)  # everything is unwound; whoever wanted the result is gone
    finally:
        _busy = False


def new_pool(slots: int) -> ProcessPoolExecutor:
    """`slots` fresh worker processes (spawned: no state inherited from the parent)."""
    return ProcessPoolExecutor(max_workers=slots, mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_worker_process, initargs=(os.getpid(),))


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and ask busy workers to unwind (SIGTERM), then wait."""
    pool.shutdown(wait=False, cancel_futures=True)
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(OSError, AttributeError):
            process.terminate()
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.join(30)
