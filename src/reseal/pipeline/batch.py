"""Generalize many machines: existing targets, or clones made from one master.

Each machine runs in a worker process, on this host (`--jobs N`) or on the workers of a Dask
cluster (`--cluster ADDRESS`, see `reseal.cluster`); one failing machine does not stop the
others. Both run the same `run_machine`. The batch keeps, in its state directory:

- `state.json`: per-machine status (pending, running, done, failed), replaced atomically;
- `machines.jsonl`: one record per finished attempt, appended and fsynced before the state;
- `runs/<machine>/`: the runner's report and undo journal;
- `lock` and `locks/<machine>.lock`: one batch at a time, one worker per machine.

A batch killed half-way and started again skips what is done, and redoes a machine that was
running: its clone is made again from the master, or an in-place target is first put back
from the undo journal the interrupted attempt left.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from reseal.errors import BadInput, Refused, ResealError
from reseal.fileio import private_dirs, private_write
from reseal.formatting import terminal_safe, to_jsonable
from reseal.pipeline.answerfile import AnswerFile, settings_from_plan
from reseal.pipeline.plan import GeneralizePlan

STATE_FORMAT = "reseal-batch/1"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


@dataclass
class MachineState:
    status: str = PENDING
    attempts: int = 0
    fingerprint: str = ""
    started: str | None = None
    finished: str | None = None
    error: str | None = None


@dataclass
class BatchState:
    answer_file: str
    machines: dict[str, MachineState] = field(default_factory=dict)
    format: str = STATE_FORMAT

    @classmethod
    def load(cls, path: Path, answer_file: str) -> BatchState:
        if not path.exists():
            return cls(answer_file)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("format") != STATE_FORMAT:
                raise ValueError(f"format {raw.get('format')!r}")
            machines = {name: MachineState(**value) for name, value in raw["machines"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"{path}: not a reseal batch state file ({exc}); "
                           "remove the state directory to start the batch afresh") from exc
        return cls(raw.get("answer_file", answer_file), machines)

    def save(self, path: Path) -> None:
        private_write(path, (json.dumps(asdict(self), indent=1) + "\n").encode())


@dataclass
class MachineRecord:
    """One finished attempt, as written to machines.jsonl and printed with --json."""

    machine: str
    status: str  # "ok" or "failed"
    attempt: int
    target: str | None
    mode: str  # "in-place", "copy" or "overlay"
    seconds: float
    bytes: int  # host bytes the clone uses (0 for in-place targets)
    identity: dict[str, str | None] = field(default_factory=dict)  # name -> new value
    changes: int = 0
    warnings: int = 0
    report: str | None = None
    journal: str | None = None
    error: str | None = None
    finished: str = ""
    worker: str | None = None  # the Dask worker that ran it (None: this host)
    recovered: bool = False  # an interrupted attempt was put back first


@dataclass
class BatchResult:
    state_dir: Path
    records: list[MachineRecord]  # the attempts of this run
    skipped: list[str]  # already done before this run
    total: int

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.records)


@dataclass(frozen=True)
class MachineJob:
    """What a worker process needs for one machine (picklable)."""

    plan: GeneralizePlan
    state_dir: Path
    attempt: int
    master_format: str | None
    allowed_backing: tuple[Path, ...] = ()  # --allow-backing, for targets that are overlays


# --- state directory --------------------------------------------------------------------


def default_state_dir(answer: AnswerFile) -> Path:
    if answer.batch is not None and answer.batch.state_dir is not None:
        return answer.batch.state_dir
    if answer.batch is not None and answer.batch.output is not None:
        return answer.batch.output / ".reseal-batch"
    from reseal.pipeline.runner import state_dir

    key = hashlib.sha256(str(answer.path.resolve()).encode()).hexdigest()[:12]
    return state_dir() / "batches" / f"{answer.path.stem}-{key}"


def plan_fingerprint(plan: GeneralizePlan) -> str:
    """A digest of everything that decides what a machine becomes."""
    text = json.dumps(to_jsonable(plan), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _exclusive(path: Path, *, wait_seconds: float, what: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Refused(f"{path}: {what}") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def read_records(state_dir: Path) -> list[dict[str, Any]]:
    """Every record of machines.jsonl; a torn last line (from a kill) is ignored."""
    path = state_dir / "machines.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def _append_record(state_dir: Path, record: MachineRecord) -> None:
    path = state_dir / "machines.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_size:  # a kill may have torn the last line: start a fresh one
            with open(path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    os.write(fd, b"\n")
        os.write(fd, (json.dumps(asdict(record)) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


# --- worker side ----------------------------------------------------------------------


def run_machine(job: MachineJob) -> MachineRecord:
    """Make the clone (if any) and generalize one machine; never raises for its failures.

    Runs in a worker process (local pool or Dask worker, see `reseal.cluster`)."""
    plan = job.plan
    started = time.monotonic()
    mode = plan.clone.mode if plan.clone is not None else "in-place"
    target = plan.target_path
    record = MachineRecord(plan.machine, "failed", job.attempt, str(target) if target else None,
                           mode, 0.0, 0)
    locks = job.state_dir / "locks"
    private_dirs(locks)
    try:
        # An earlier worker for this machine (from a killed batch) may still be unwinding.
        with _exclusive(locks / f"{plan.machine}.lock", wait_seconds=120,
                        what="an earlier attempt on this machine is still running"):
            _run_locked(job, record)
    except ResealError as exc:
        record.error = str(exc).splitlines()[0]
    except Exception as exc:  # a bug must not take the other machines down
        record.error = f"internal error: {type(exc).__name__}: {exc}"
    record.seconds = round(time.monotonic() - started, 3)
    record.finished = _now()
    if plan.clone is not None:
        record.bytes = allocated_bytes_safe(plan.clone.path)
    return record


def _run_locked(job: MachineJob, record: MachineRecord) -> None:
    from reseal.pipeline.clone import make_clone, master_format
    from reseal.pipeline.runner import run_generalize

    plan = job.plan
    run_dir = job.state_dir / "runs" / plan.machine
    if plan.clone is not None:
        fmt = job.master_format or master_format(plan.clone.master)
        make_clone(plan.clone, fmt)  # a fresh copy: whatever an attempt changed is gone
        if run_dir.exists():
            record.recovered = True
            shutil.rmtree(run_dir)
    else:
        if plan.target is None:
            raise BadInput(f"machine {plan.machine}: no target (give machines[].target, or "
                           "batch.master and batch.output)")
        record.recovered = _undo_interrupted(plan.target, run_dir, job.allowed_backing)
    target = plan.target_path
    assert target is not None
    record.target = str(target)
    settings = settings_from_plan(plan)
    settings.allowed_backing = allowed_backing_for(plan, job.allowed_backing)
    result = run_generalize(target, settings, run_dir=run_dir)
    report = result.report
    record.identity = {name: value.new for name, value in report.identity.items()}
    record.changes = len(report.changes)
    record.warnings = len(report.warnings)
    record.report = str(result.report_path) if result.report_path else None
    record.journal = str(result.journal_dir) if result.journal_dir else None
    record.status = "ok" if result.ok else "failed"
    record.error = None if result.ok else report.error


def allowed_backing_for(plan: GeneralizePlan, given: tuple[Path, ...]) -> tuple[Path, ...]:
    """The backing files a machine's target may use: those given, and the master of an
    overlay clone (the one file the batch itself made it name)."""
    if plan.clone is not None and plan.clone.mode == "overlay":
        return (*given, plan.clone.master.resolve())
    return given


def _undo_interrupted(target: Path, run_dir: Path, allowed_backing: tuple[Path, ...]) -> bool:
    """Put back what an interrupted attempt changed before this attempt starts; True when
    there was such an attempt."""
    journal = run_dir / "journal"
    undone = False
    if (journal / "entries.jsonl").is_file():
        from reseal.pipeline.undo import undo_run

        undo_run(target, journal, allowed_backing=allowed_backing)
        undone = True
    if run_dir.exists():
        shutil.rmtree(run_dir)
        undone = True
    return undone


def allocated_bytes_safe(path: Path) -> int:
    from reseal.pipeline.clone import allocated_bytes

    with contextlib.suppress(OSError):
        return allocated_bytes(path)
    return 0


# --- parent side ----------------------------------------------------------------------


class Progress:
    """A one-line bar on a terminal; a plain line per machine otherwise. Both show how many
    machines are done, failed, running and pending, and the rate in clones per minute."""

    def __init__(self, total: int, stream: TextIO, *, bar: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.stream = stream
        self.bar = bar
        self.clock = clock
        self.started_at = clock()
        self.done = 0
        self.failed = 0
        self.running = 0

    def info(self, line: str) -> None:
        """A line about the run itself (cluster, dashboard link), above the bar."""
        print(line, file=self.stream, flush=True)

    @property
    def per_minute(self) -> float:
        elapsed = self.clock() - self.started_at
        return self.done * 60 / elapsed if elapsed > 0 else 0.0

    def started(self, machine: str) -> None:
        self.running += 1
        if self.bar:
            self._draw()

    def finished(self, record: MachineRecord) -> None:
        self.running -= 1
        self.done += 1
        self.failed += record.status != "ok"
        if self.bar:
            self._draw()
        else:
            tail = f": {terminal_safe(record.error)}" if record.error else ""
            where = f" on {record.worker}" if record.worker else ""
            print(f"[{self.done}/{self.total}] {record.machine} {record.status} "
                  f"{record.seconds:.1f}s{where}{tail}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        width = 30
        filled = width * self.done // max(self.total, 1)
        pending = self.total - self.done - self.running
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                          f" done, {self.failed} failed, {self.running} running, {pending} "
                          f"pending, {self.per_minute:.1f}/min ")
        self.stream.flush()


class MachineExecutor(Protocol):
    """Where machines run: `reseal.cluster.local.LocalExecutor` or `.daskcluster.DaskExecutor`."""

    slots: int

    def describe(self) -> list[str]: ...
    def submit(self, job: MachineJob) -> Future[MachineRecord]: ...
    def lost(self) -> str | None: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class ClusterLost(ResealError):
    """The cluster went away mid-batch; the machines it held stay pending in the state."""


def run_batch(answer: AnswerFile, *, jobs: int | None = None, state_dir: Path | None = None,
              progress: Progress | None = None,
              on_record: Callable[[MachineRecord], None] | None = None,
              cluster: str | None = None,
              on_info: Callable[[str], None] | None = None,
              allowed_backing: tuple[Path, ...] = ()) -> BatchResult:
    """Run every machine not yet done, on this host or on the Dask cluster at `cluster`
    (default: batch.cluster of the answer file); returns the records of this run."""
    state_dir = state_dir or default_state_dir(answer)
    cluster = cluster or (answer.batch.cluster if answer.batch is not None else None)
    _check_plans(answer)
    private_dirs(state_dir)
    with _exclusive(state_dir / "lock", wait_seconds=0,
                    what="another `reseal batch` is running with this state directory"):
        return _run_locked_batch(answer, jobs, state_dir, progress, on_record, cluster,
                                 on_info, allowed_backing)


def _check_plans(answer: AnswerFile) -> None:
    batch = answer.batch
    for plan in answer.plans:
        if plan.clone is None and plan.target is None:
            raise BadInput(f"{answer.path}: machine {plan.machine} has no target; give each "
                           "machine a target, or batch.master and batch.output for clones")
    if batch is None or batch.master is None or batch.output is None:
        return
    master, output = batch.master.resolve(), batch.output.resolve()
    if output == master or (master.is_dir() and output.is_relative_to(master)):
        raise BadInput(f"{answer.path}: batch.output must be outside the master")


def _open_executor(answer: AnswerFile, todo: list[GeneralizePlan], jobs: int | None,
                   state_dir: Path, cluster: str | None,
                   allowed_backing: tuple[Path, ...] = ()) -> MachineExecutor:
    """The local pool, or a connection to the cluster whose workers passed the checks."""
    wanted = jobs or (answer.batch.jobs if answer.batch and answer.batch.jobs else None)
    if cluster is None:
        from reseal.cluster.local import LocalExecutor

        slots = wanted or min(os.cpu_count() or 1, 4)
        return LocalExecutor(run_machine, max(1, min(slots, len(todo))))
    from reseal.cluster.daskcluster import DaskExecutor

    token_path = state_dir / "cluster-token"
    token = secrets.token_hex(16)
    private_write(token_path, token.encode())
    readable = sorted({str(p.clone.master) for p in todo if p.clone is not None} |
                      {str(p.target) for p in todo if p.target is not None} |
                      {str(path) for path in allowed_backing})
    writable = sorted({str(state_dir)} | {str(p.clone.path.parent) for p in todo
                                          if p.clone is not None})
    executor = DaskExecutor(cluster, run_machine, readable=readable, writable=writable,
                            token=(str(token_path), token))
    if wanted is not None:
        executor.slots = max(1, min(executor.slots, wanted))
    return executor


def _run_locked_batch(answer: AnswerFile, jobs: int | None, state_dir: Path,
                      progress: Progress | None,
                      on_record: Callable[[MachineRecord], None] | None,
                      cluster: str | None,
                      on_info: Callable[[str], None] | None,
                      allowed_backing: tuple[Path, ...]) -> BatchResult:
    state_path = state_dir / "state.json"
    state = BatchState.load(state_path, str(answer.path))
    _reconcile(state, state_dir)
    fingerprints = {plan.machine: plan_fingerprint(plan) for plan in answer.plans}
    for plan in answer.plans:
        known = state.machines.get(plan.machine)
        if known is not None and known.status == DONE and known.fingerprint != fingerprints[
                plan.machine]:
            raise BadInput(f"{answer.path}: machine {plan.machine} is already done with other "
                           f"settings (state in {state_dir}); use a new batch.output or "
                           "state_dir to make it again")
        state.machines.setdefault(plan.machine, MachineState(fingerprint=fingerprints[
            plan.machine]))
    todo = [p for p in answer.plans if state.machines[p.machine].status != DONE]
    skipped = [p.machine for p in answer.plans if state.machines[p.machine].status == DONE]
    state.save(state_path)
    fmt = None
    if answer.batch is not None and answer.batch.master is not None and todo:
        from reseal.pipeline.clone import master_format

        fmt = master_format(answer.batch.master, answer.batch.master_format)
    records: list[MachineRecord] = []
    if not todo:
        return BatchResult(state_dir, records, skipped, len(answer.plans))
    executor = _open_executor(answer, todo, jobs, state_dir, cluster, allowed_backing)
    for line in executor.describe():
        if on_info is not None:
            on_info(line)
    queue = list(reversed(todo))
    running: dict[Future[MachineRecord], GeneralizePlan] = {}
    try:
        while queue or running:
            while queue and len(running) < executor.slots:
                plan = queue.pop()
                machine_state = state.machines[plan.machine]
                machine_state.status = RUNNING
                machine_state.attempts += 1
                machine_state.fingerprint = fingerprints[plan.machine]
                machine_state.started = _now()
                machine_state.error = None
                state.save(state_path)
                job = MachineJob(plan, state_dir, machine_state.attempts, fmt,
                                 allowed_backing)
                running[executor.submit(job)] = plan
                if progress is not None:
                    progress.started(plan.machine)
            finished, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
            lost = executor.lost()
            for future in finished:
                plan = running.pop(future)
                if lost is not None and _cut_off(future):
                    running[future] = plan  # never ran to an end: stays "running" in the state
                    continue
                record = _result_of(future, plan, state.machines[plan.machine].attempts)
                _append_record(state_dir, record)
                machine_state = state.machines[plan.machine]
                machine_state.status = DONE if record.status == "ok" else FAILED
                machine_state.finished = record.finished
                machine_state.error = record.error
                state.save(state_path)
                records.append(record)
                if progress is not None:
                    progress.finished(record)
                if on_record is not None:
                    on_record(record)
            if lost is not None:
                pending = [p.machine for p in running.values()] + [p.machine for p in
                                                                   reversed(queue)]
                raise ClusterLost(
                    f"{lost}: {len(pending)} machines not finished "
                    f"({', '.join(pending[:8])}{', ...' if len(pending) > 8 else ''}); their "
                    f"state is kept in {state_dir}: run the same `reseal batch` again, with "
                    "or without --cluster, to finish them")
    except BaseException:
        executor.abort()
        if progress is not None:
            progress.close()
        raise
    executor.close()
    if progress is not None:
        progress.close()
    return BatchResult(state_dir, records, skipped, len(answer.plans))


def _cut_off(future: Future[MachineRecord]) -> bool:
    """The future ended because the cluster went away, not because its machine ended."""
    if future.cancelled():
        return True
    error = future.exception()
    return isinstance(error, CancelledError | OSError) or type(error).__name__ in (
        "CommClosedError", "FutureCancelledError")


def _result_of(future: Future[MachineRecord], plan: GeneralizePlan, attempt: int
               ) -> MachineRecord:
    try:
        return future.result()
    except BaseException as exc:  # the worker died (killed, out of memory, ...)
        mode = plan.clone.mode if plan.clone is not None else "in-place"
        target = plan.target_path
        return MachineRecord(plan.machine, "failed", attempt, str(target) if target else None,
                             mode, 0.0, 0, error=f"worker died: {type(exc).__name__}: {exc}",
                             finished=_now())


def _reconcile(state: BatchState, state_dir: Path) -> None:
    """A kill between the record and the state write: trust the record."""
    for raw in read_records(state_dir):
        machine = raw.get("machine")
        if raw.get("status") == "ok" and isinstance(machine, str):
            known = state.machines.get(machine)
            if known is not None and known.status == RUNNING and known.attempts == raw.get(
                    "attempt"):
                known.status = DONE
                known.finished = raw.get("finished")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_progress(total: int, *, json_mode: bool) -> Progress:
    """Bar on a terminal (stderr); plain lines to stdout, or stderr when stdout is JSON."""
    if sys.stderr.isatty():
        return Progress(total, sys.stderr, bar=True)
    return Progress(total, sys.stderr if json_mode else sys.stdout, bar=False)
