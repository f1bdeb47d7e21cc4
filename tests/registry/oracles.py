"""Independent readers (python-registry, regipy, hivexregedit) dumping a hive as a plain tree.

A tree is {upper-cased key path: {upper-cased value name: (type, raw bytes)}}; paths are given
without the root key's name.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from reseal.registry import Hive

Tree = dict[str, dict[str, tuple[int, bytes]]]


def ours(hive: Hive) -> Tree:
    tree: Tree = {}
    for key in hive.walk():
        tree[key.path] = {v.name: (v.type, v.raw) for v in key.values()}
    return tree


def python_registry(path: Path) -> Tree:
    from Registry import Registry  # type: ignore[import-untyped]

    reg = Registry.Registry(str(path))
    tree: Tree = {}
    stack = [(reg.root(), "")]
    while stack:
        key, prefix = stack.pop()
        values: dict[str, tuple[int, bytes]] = {}
        for value in key.values():
            raw = bytes(value.raw_data())
            length = value._vkrecord.unpack_dword(0x4)  # the stored length: inline data is cut to it
            if length & 0x80000000:  # inline data: python-registry drops it for types it does not know
                raw = value._vkrecord.unpack_dword(0x8).to_bytes(4, "little")[: length & 0x7FFFFFFF]
            name = _latin1(value.name()) if value._vkrecord.has_ascii_name() else value.name()
            values["" if name == "(default)" else name] = (value._vkrecord.unpack_dword(0xC), raw)
        tree[prefix] = values
        for sub in key.subkeys():
            sub_name = _latin1(sub.name()) if sub._nkrecord.has_ascii_name() else sub.name()
            stack.append((sub, f"{prefix}\\{sub_name}" if prefix else sub_name))
    return tree


def _latin1(name: str) -> str:
    """python-registry decodes compressed names as cp1252; Windows reads them as Latin-1."""
    try:
        return name.encode("cp1252").decode("latin-1")
    except UnicodeError:
        return name


def regipy_names(path: Path) -> dict[str, set[str]]:
    """regipy decodes values, so it is compared on key paths and value names only."""
    from regipy.registry import RegistryHive

    reg = RegistryHive(str(path))
    out: dict[str, set[str]] = {}
    stack = [(reg.root, "")]
    while stack:
        key, prefix = stack.pop()
        names = set()
        for value in key.iter_values(trim_values=False) or []:
            names.add("" if value.name == "(default)" else value.name)
        out[prefix] = names
        for sub in key.iter_subkeys() or []:
            stack.append((sub, f"{prefix}\\{sub.name}" if prefix else sub.name))
    return out


_KEY_LINE = re.compile(r"^\[\\(.*)\]$")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def hivex(path: Path) -> Tree:
    """Parse `hivexregedit --export` (every value as hex(N): raw bytes, or dword:)."""
    out = subprocess.run(
        ["hivexregedit", "--export", str(path), "\\"], capture_output=True, check=True
    ).stdout
    text_lines = []
    for raw_line in out.split(b"\n"):
        try:
            text_lines.append(raw_line.decode("utf-8"))
        except UnicodeDecodeError:
            text_lines.append(raw_line.decode("latin-1"))
    tree: Tree = {}
    current: dict[str, tuple[int, bytes]] | None = None
    pending = ""
    for line in text_lines:
        if pending:
            line = pending + line.strip()
            pending = ""
        if line.endswith("\\") and "=" in line and not line.startswith("["):
            pending = line[:-1]
            continue
        match = _KEY_LINE.match(line)
        if match:
            current = tree.setdefault(match.group(1), {})
            continue
        if current is None or "=" not in line:
            continue
        if line.startswith("@="):
            name, data = "", line[2:]
        else:
            m = re.match(r'^"((?:[^"\\]|\\.)*)"=(.*)$', line)
            assert m, line
            name, data = _unescape(m.group(1)), m.group(2)
        if data.startswith("dword:"):
            current[name] = (4, int(data[6:], 16).to_bytes(4, "little"))
        elif data.startswith("hex("):
            kind, _, hexes = data[4:].partition("):")
            current[name] = (int(kind, 16), bytes.fromhex(hexes.replace(",", "")))
        elif data.startswith("hex:"):
            current[name] = (3, bytes.fromhex(data[4:].replace(",", "")))
        else:
            raise AssertionError(f"unparsed hivex value line: {line[:80]}")
    return tree


def ascii_text(text: str) -> str:
    """regipy decodes compressed (Latin-1) names as ASCII with replacement characters."""
    return "".join(ch if ord(ch) < 0x80 else "\ufffd" for ch in text)


def ascii_names(names: set[str]) -> set[str]:
    return {ascii_text(n) for n in names}
