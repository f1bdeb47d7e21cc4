"""The operation contract.

Each operation lives in its own module under `reseal.operations` and exposes one module-level
`OPERATION = Operation(...)`: a name, a one-line description, whether it is on by default,
which OS family it applies to, an optional options dataclass, and one `apply(ctx)` function.
Operations never print; they record what they change in the context, which the pipeline turns
into the dry-run plan and the JSON report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reseal.domain.settings import DomainSettings, FirstBootSettings
from reseal.image.model import OSFamily, System
from reseal.image.target import Target


@dataclass(frozen=True)
class Operation:
    name: str
    description: str
    os: OSFamily
    default_enabled: bool
    apply: Callable[[OperationContext], None]
    options_type: type[Any] | None = None  # a dataclass whose fields all have defaults


@dataclass
class IdentityRequest:
    """What the user asked the clone to become; None means "make one up" or "leave alone"."""

    hostname: str | None = None
    machine_sid: str | None = None  # "S-1-5-21-a-b-c" or "random"
    machine_id: str | None = None  # Linux: 32 hex digits; None = empty for first boot
    seed: int | None = None  # deterministic random values (tests, reproducible batches)
    domain: DomainSettings | None = None  # join the clone to this AD domain
    firstboot: FirstBootSettings | None = None  # what the clone does on its first boot


@dataclass(frozen=True)
class Change:
    """One change made (or planned, in a dry run)."""

    operation: str
    where: str  # "/etc/hostname" or "SYSTEM\\ControlSet001\\Control\\ComputerName\\ComputerName"
    action: str  # "set", "remove", "rename", "write", "create", "run"
    old: str | None = None
    new: str | None = None


@dataclass
class IdentityValue:
    """An identity fact before and after the run (hostname, machine SID, machine-id...)."""

    name: str
    old: str | None
    new: str | None


@dataclass
class RunLog:
    """What every operation of a run did; the pipeline renders it as plan or report."""

    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things a user must know (e.g. DPAPI)
    identity: dict[str, IdentityValue] = field(default_factory=dict)
    operations_run: list[str] = field(default_factory=list)
    operations_skipped: dict[str, str] = field(default_factory=dict)  # name -> reason


@dataclass
class OperationContext:
    target: Target
    system: System
    request: IdentityRequest
    options: Any
    log: RunLog
    operation: str = ""
    # Shared state between operations of one run, keyed by owner module (e.g. open hives).
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def dry_run(self) -> bool:
        return self.target.options.dry_run

    def change(self, where: str, action: str, old: object = None, new: object = None) -> None:
        self.log.changes.append(
            Change(self.operation, where, action,
                   None if old is None else str(old), None if new is None else str(new))
        )

    def warn(self, message: str) -> None:
        self.log.warnings.append(f"{self.operation}: {message}")

    def warn_at_most(self, messages: Sequence[str], limit: int, rest: str) -> None:
        """The first `limit` warnings, then one line for the others (`rest` gets {count})."""
        for message in messages[:limit]:
            self.warn(message)
        if len(messages) > limit:
            self.warn(rest.format(count=len(messages) - limit))

    def note(self, message: str) -> None:
        self.log.notes.append(f"{self.operation}: {message}")

    def identity(self, name: str, old: object, new: object) -> None:
        self.log.identity[name] = IdentityValue(
            name, None if old is None else str(old), None if new is None else str(new)
        )
