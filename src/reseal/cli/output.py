"""Shared output helpers: JSON for machines, aligned tables for people."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from reseal.pipeline.report import RunReport


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    return obj


def print_json(obj: Any, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    json.dump(to_jsonable(obj), stream, indent=2, sort_keys=False)
    stream.write("\n")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
        print(f"warning: {warning}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}")


def _short(text: str | None, width: int = 48) -> str:
    if text is None:
        return "-"
    return text if len(text) <= width else text[: width - 1] + "…"
