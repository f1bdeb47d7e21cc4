"""The JSON report of a run: old and new identity, every change, warnings and notes.

Reports never hold secrets: operations record identities and locations, not passwords or
hashes. They are written 0600 all the same, because old identities are sensitive in a lab.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reseal import __version__
from reseal.errors import BadInput
from reseal.fileio import private_dirs, private_write
from reseal.operations.base import Change, IdentityValue, RunLog

REPORT_FORMAT = "reseal-report/1"


@dataclass
class RunReport:
    target: str
    machine: str
    dry_run: bool
    started: str
    finished: str = ""
    ok: bool = False
    error: str | None = None
    systems: list[str] = field(default_factory=list)
    journal: str | None = None
    operations_run: list[str] = field(default_factory=list)
    operations_skipped: dict[str, str] = field(default_factory=dict)
    identity: dict[str, IdentityValue] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    version: str = __version__
    format: str = REPORT_FORMAT

    @classmethod
    def start(cls, target: str, machine: str, dry_run: bool) -> RunReport:
        return cls(target=target, machine=machine, dry_run=dry_run, started=_now())

    def absorb(self, log: RunLog) -> None:
        self.operations_run = list(log.operations_run)
        self.operations_skipped = dict(log.operations_skipped)
        self.identity = dict(log.identity)
        self.changes = list(log.changes)
        self.warnings = list(log.warnings)
        self.notes = list(log.notes)

    def finish(self, ok: bool, error: str | None = None) -> None:
        self.ok = ok
        self.error = error
        self.finished = _now()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def write(self, path: Path) -> None:
        private_dirs(path.parent)
        private_write(path, self.to_json().encode())

    @classmethod
    def load(cls, path: Path) -> RunReport:
        try:
            raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput(f"{path}: not a readable reseal report ({exc})") from exc
        if raw.get("format") != REPORT_FORMAT:
            raise BadInput(f"{path}: not a reseal report (format {raw.get('format')!r})")
        raw["identity"] = {k: IdentityValue(**v) for k, v in raw.get("identity", {}).items()}
        raw["changes"] = [Change(**c) for c in raw.get("changes", [])]
        return cls(**raw)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
