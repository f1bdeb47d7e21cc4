"""How a run's report reads on a terminal (the shapes themselves are in reseal.formatting)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from reseal.formatting import format_table, terminal_safe

if TYPE_CHECKING:
    from reseal.pipeline.report import RunReport


def print_report(report: RunReport) -> None:
    """A run's identity table and change list (the plan, in a dry run); warnings to stderr."""
    heading = "plan (dry run: nothing written)" if report.dry_run else "changes"
    if report.identity:
        print(format_table(("IDENTITY", "OLD", "NEW"),
                           [(v.name, v.old or "-", v.new or "-") for v in report.identity.values()]))
        print()
    print(f"{heading}: {len(report.changes)}")
    if report.changes:
        print(format_table(
            ("OPERATION", "ACTION", "WHERE", "OLD", "NEW"),
            [(c.operation, c.action, c.where, _short(c.old), _short(c.new))
             for c in report.changes],
        ))
    for warning in report.warnings:
        print(f"warning: {terminal_safe(warning)}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {terminal_safe(note)}")


def _short(text: str | None, width: int = 48) -> str:
    if text is None:
        return "-"
    return text if len(text) <= width else text[: width - 1] + "…"
