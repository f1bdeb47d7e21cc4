"""Line-preserving edits of shell-style KEY=VALUE files (sysconfig, ifcfg, /etc/default/grub).

Only the assignment lines named are touched; comments, order and other lines stay as they were.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_ASSIGN = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class Assignment:
    line: int  # 0-based line number
    key: str
    value: str  # unquoted


def assignments(text: str) -> list[Assignment]:
    found = []
    for number, line in enumerate(text.splitlines()):
        match = _ASSIGN.match(line)
        if not match:
            continue
        try:
            parts = shlex.split(match.group(3), comments=True)
        except ValueError:
            continue
        found.append(Assignment(number, match.group(2), parts[0] if parts else ""))
    return found


def get(text: str, key: str) -> str | None:
    value = None
    for item in assignments(text):
        if item.key == key:
            value = item.value
    return value


def quote(value: str) -> str:
    if value and re.fullmatch(r"[A-Za-z0-9_.:/@%+=,-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`") + '"'


def set_value(text: str, key: str, value: str, *, add: bool = True) -> str:
    """Replace every assignment of `key` (or append one when `add` and none exists)."""
    lines = text.splitlines(keepends=True)
    hit = False
    for item in assignments(text):
        if item.key == key:
            prefix = _ASSIGN.match(lines[item.line]).group(1)  # type: ignore[union-attr]
            ending = "\n" if lines[item.line].endswith("\n") else ""
            lines[item.line] = f"{prefix}{key}={quote(value)}{ending}"
            hit = True
    if not hit and add:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{key}={quote(value)}\n")
    return "".join(lines)


def remove(text: str, key: str) -> str:
    drop = {item.line for item in assignments(text) if item.key == key}
    return "".join(line for n, line in enumerate(text.splitlines(keepends=True)) if n not in drop)
