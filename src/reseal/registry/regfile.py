"""regedit version 5 text (.reg): export a key tree, import (merge) one into a hive.

Key lines are written relative to the hive root as `[\\Path\\To\\Key]`; on import a leading
`HKEY_...\\<hive>` prefix is not stripped automatically, so give files made by `hive export`.
"""

from __future__ import annotations

import re

from reseal.errors import BadInput
from reseal.registry.hive import Hive
from reseal.registry.nodes import Key, Value
from reseal.registry.types import RegType

HEADER = "Windows Registry Editor Version 5.00"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hex(raw: bytes) -> str:
    return raw.hex(",")


def format_value(value: Value) -> str:
    return format_raw(value.name, value.type, value.raw)


def format_raw(value_name: str, value_type: int, raw: bytes) -> str:
    """One value line of a .reg file."""
    name = "@" if value_name == "" else _quote(value_name)
    if value_type == RegType.REG_SZ and len(raw) >= 2 and len(raw) % 2 == 0:
        text = raw.decode("utf-16-le", "replace")
        if text.endswith("\0") and "\0" not in text[:-1] and "\ufffd" not in text and "\n" not in text:
            return f"{name}={_quote(text[:-1])}"
    if value_type == RegType.REG_DWORD and len(raw) == 4:
        return f"{name}=dword:{int.from_bytes(raw, 'little'):08x}"
    if value_type == RegType.REG_BINARY:
        return f"{name}=hex:{_hex(raw)}"
    return f"{name}=hex({value_type:x}):{_hex(raw)}"


def export(hive: Hive, start: Key | None = None) -> str:
    lines = [HEADER, ""]
    for path, values in hive.tree(start):
        lines.append(f"[\\{path}]")
        lines.extend(format_raw(name, value_type, raw) for name, value_type, raw in values)
        lines.append("")
    return "\r\n".join(lines) + "\r\n"


_VALUE = re.compile(r'^(@|"(?:[^"\\]|\\.)*")=(.*)$')


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if pending:
            line = pending + line.lstrip()
        else:
            start = number
        if line.endswith("\\") and not line.startswith("[") and "=" in line and "hex" in line:
            pending = line[:-1]
            continue
        pending = ""
        out.append((start, line))
    return out


def _parse_data(data: str, where: str) -> tuple[int, bytes | str | None]:
    if data == "-":
        return 0, None
    if data.startswith('"') and data.endswith('"') and len(data) >= 2:
        return int(RegType.REG_SZ), _unquote(data)
    if data.startswith("dword:"):
        try:
            return int(RegType.REG_DWORD), int(data[6:], 16).to_bytes(4, "little")
        except (ValueError, OverflowError):
            raise BadInput(f"{where}: bad dword {data[6:]!r}; use 8 hex digits") from None
    match = re.match(r"^hex(?:\(([0-9a-fA-F]+)\))?:(.*)$", data)
    if match:
        value_type = int(match.group(1), 16) if match.group(1) else int(RegType.REG_BINARY)
        try:
            return value_type, bytes.fromhex(match.group(2).replace(",", "").replace(" ", ""))
        except ValueError:
            raise BadInput(f"{where}: bad hex data; use comma-separated byte pairs") from None
    raise BadInput(f"{where}: cannot read value data {data[:40]!r}")


def import_text(hive: Hive, text: str, label: str = "reg file") -> int:
    """Apply a .reg file; returns the number of changes. Nothing is saved here."""
    lines = _logical_lines(text.lstrip("\ufeff"))
    if not lines or lines[0][1] not in (HEADER, "REGEDIT4"):
        raise BadInput(f"{label}: first line must be {HEADER!r}")
    current: Key | None = None
    changes = 0
    for number, line in lines[1:]:
        where = f"{label} line {number}"
        if not line or line.startswith(";"):
            continue
        if line.startswith("[") and line.endswith("]"):
            path = line[1:-1]
            if path.startswith("-"):
                hive.delete_key(path[1:].lstrip("\\"))
                current = None
            else:
                current = hive.create_key(path.lstrip("\\")) if path.strip("\\") else hive.root
            changes += 1
            continue
        match = _VALUE.match(line)
        if not match:
            raise BadInput(f"{where}: not a key or value line: {line[:60]!r}")
        if current is None:
            raise BadInput(f"{where}: value line before any [key] line")
        name = "" if match.group(1) == "@" else _unquote(match.group(1))
        value_type, data = _parse_data(match.group(2), where)
        if data is None:
            current.delete_value(name)
        else:
            current.set_value(name, value_type, data)
        changes += 1
    return changes
