"""Run a generalization on one target: validate, open, apply operations, commit, report.

Order matters for safety: every operation's `validate(request, options)` runs before the
target is opened for writing, so bad input never touches the image. Objects that operations
leave in `ctx.shared` with a `commit()` method (open hives, for instance) are committed once,
after every operation has run.
"""

from __future__ import annotations

import importlib
import os
import secrets
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reseal.errors import BadInput, ResealError
from reseal.image.guestfs import FileChange
from reseal.image.model import LinuxSystem, OSFamily, System
from reseal.image.target import OpenOptions, Target, open_target
from reseal.journal import Journal
from reseal.operations import all_operations
from reseal.operations.base import IdentityRequest, Operation, OperationContext, RunLog
from reseal.pipeline.report import RunReport

DEFAULT_STATE_DIR = Path("/var/lib/reseal")


@dataclass
class RunSettings:
    """What to run: the identity asked for, which operations, with which options."""

    machine: str = ""
    request: IdentityRequest = field(default_factory=IdentityRequest)
    enable: list[str] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)
    only: list[str] | None = None  # exactly these operations (overrides defaults)
    options: dict[str, Any] = field(default_factory=dict)  # op name -> options dataclass
    allow_unclean_ntfs: bool = False
    allowed_backing: tuple[Path, ...] = ()  # backing files a qcow2/vmdk target may use


@dataclass
class RunResult:
    report: RunReport
    report_path: Path | None
    journal_dir: Path | None
    file_changes: list[FileChange]

    @property
    def ok(self) -> bool:
        return self.report.ok


def state_dir() -> Path:
    return Path(os.environ.get("RESEAL_STATE_DIR", DEFAULT_STATE_DIR))


def new_run_dir(machine: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{machine or 'run'}-{secrets.token_hex(3)}"
    return state_dir() / "runs" / name


def select_operations(settings: RunSettings) -> list[Operation]:
    """The operations a run applies, in run order; unknown names are bad input."""
    operations = all_operations()
    known = {op.name for op in operations}
    for name in [*settings.enable, *settings.disable, *(settings.only or [])]:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BadInput(
                f"unknown operation {name!r}{hint}; `reseal operations` lists them"
            )
    if settings.only is not None:
        chosen = set(settings.only)
    else:
        chosen = {op.name for op in operations if op.default_enabled}
        chosen |= set(settings.enable)
        chosen -= set(settings.disable)
    return [op for op in operations if op.name in chosen]


def options_for(operation: Operation, settings: RunSettings) -> Any:
    given = settings.options.get(operation.name)
    if given is not None:
        return given
    return operation.options_type() if operation.options_type is not None else None


def validate(operations: list[Operation], settings: RunSettings,
             families: set[OSFamily] | None = None) -> None:
    """Call each operation module's validate(request, options); raises BadInput.

    With `families`, only operations for those OS families are asked: a Windows target
    is held to the Windows naming rules, a Linux target to RFC 1123.
    """
    for operation in operations:
        if families is not None and operation.os not in families:
            continue
        module = sys.modules.get(operation.apply.__module__) or importlib.import_module(
            operation.apply.__module__
        )
        check = getattr(module, "validate", None)
        if check is not None:
            check(settings.request, options_for(operation, settings))


def system_family(system: System) -> OSFamily:
    return OSFamily.LINUX if isinstance(system, LinuxSystem) else OSFamily.WINDOWS


def apply_operations(
    target: Target, operations: list[Operation], settings: RunSettings, log: RunLog
) -> None:
    """Apply each operation to each system it fits, then commit shared resources."""
    if not target.systems:
        raise ResealError(
            f"{target.source}: no Windows or Linux installation found on the target; "
            "check `reseal inspect` output"
        )
    for system in target.systems:
        family = system_family(system)
        shared: dict[str, Any] = {}
        for operation in operations:
            if operation.os != family:
                log.operations_skipped.setdefault(operation.name, f"applies to {operation.os}")
                continue
            ctx = OperationContext(
                target=target,
                system=system,
                request=settings.request,
                options=options_for(operation, settings),
                log=log,
                operation=operation.name,
                shared=shared,
            )
            operation.apply(ctx)
            log.operations_skipped.pop(operation.name, None)
            if operation.name not in log.operations_run:
                log.operations_run.append(operation.name)
        for resource in shared.values():
            commit = getattr(resource, "commit", None)
            if callable(commit):
                commit()


def run_generalize(
    target_path: str | Path,
    settings: RunSettings,
    *,
    dry_run: bool = False,
    run_dir: Path | None = None,
) -> RunResult:
    """Generalize one target. Raises BadInput before touching anything on bad input."""
    operations = select_operations(settings)
    report = RunReport.start(str(target_path), settings.machine, dry_run)
    file_changes: list[FileChange] = []
    journal: Journal | None = None
    journal_dir: Path | None = None
    report_path: Path | None = None
    if not dry_run:
        run_dir = run_dir or new_run_dir(settings.machine)
        journal_dir = run_dir / "journal"
        journal = Journal(journal_dir)
        report.journal = str(journal_dir)
        report_path = run_dir / "report.json"
    options = OpenOptions(
        writable=not dry_run,
        dry_run=dry_run,
        allow_unclean_ntfs=settings.allow_unclean_ntfs,
        allowed_backing=settings.allowed_backing,
        journal=journal,
        listener=file_changes.append,
    )
    log = RunLog()
    try:
        with open_target(target_path, options) as target:
            # Validation happens before any operation writes: bad input leaves the image as
            # it was and no journal or report behind.
            validate(operations, settings, {system_family(s) for s in target.systems})
            report.systems = [f"{system_family(s)}:{s.volume.key}" for s in target.systems]
            log.warnings.extend(target.warnings)
            apply_operations(target, operations, settings, log)
    except ResealError as exc:
        report.absorb(log)
        report.finish(False, str(exc))
        # A report only when something was written: a refusal leaves no trace behind.
        if report_path is not None and journal_dir is not None and journal_dir.exists():
            report.write(report_path)
        raise
    report.absorb(log)
    report.finish(True)
    if report_path is not None:
        report.write(report_path)
    return RunResult(report, report_path, journal_dir, file_changes)
