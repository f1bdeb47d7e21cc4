"""Output shapes shared by every layer: JSON for machines, aligned tables for people.

Lives outside `cli` because inspection renderers, the batch runner and the benchmarks
format tables and JSON too, and lower layers must not import the CLI.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO


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


# What a terminal must never receive from an image: C0 controls (ESC starts the sequences
# that retitle a terminal or clear it; a newline forges a line), DEL and C1 controls, the
# Unicode bidirectional overrides and line separators, and lone surrogates (bytes that were
# not UTF-8, kept by surrogateescape).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                     "\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def terminal_safe(value: object) -> str:
    """`value` as text that may be printed: every character in `_UNSAFE` shown as an escape
    (`\\x1b`, `\\n`, `\\u202e`; a byte that was not UTF-8 as `\\xNN`). Table and plain
    output use this for every string that came from an image; JSON output stays exact."""
    return _UNSAFE.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape of the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_lines(value: object) -> str:
    """Like `terminal_safe`, but the text's own line breaks stay (messages made of several
    lines of reseal's, such as the list of an answer file's errors)."""
    return "\n".join(terminal_safe(line) for line in str(value).split("\n"))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned columns; every cell escaped for the terminal, so a cell is always one line."""
    cells = [[terminal_safe(h) for h in headers]] + [
        ["" if c is None else terminal_safe(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
