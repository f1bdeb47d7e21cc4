"""fstab and crypttab: parse entries, rewrite the device field to stable forms."""

from __future__ import annotations

from dataclasses import dataclass

from reseal.linux.devrefs import Rewrite, partition_number


@dataclass(frozen=True)
class FstabEntry:
    line: int
    spec: str  # "UUID=...", "/dev/sda1", "LABEL=..."
    mountpoint: str
    fstype: str


@dataclass(frozen=True)
class CrypttabEntry:
    line: int
    name: str
    device: str


def parse_fstab(text: str) -> list[FstabEntry]:
    entries = []
    for number, line in enumerate(text.splitlines()):
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3:
            entries.append(FstabEntry(number, fields[0], fields[1], fields[2]))
    return entries


def parse_crypttab(text: str) -> list[CrypttabEntry]:
    entries = []
    for number, line in enumerate(text.splitlines()):
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2:
            entries.append(CrypttabEntry(number, fields[0], fields[1]))
    return entries


def root_spec(fstab_text: str) -> str | None:
    """The root file system's spec when it is stable (UUID=, LABEL=, PARTUUID=...)."""
    for entry in parse_fstab(fstab_text):
        if entry.mountpoint == "/" and partition_number(entry.spec) is None:
            return entry.spec
    return None


def swap_spec(fstab_text: str) -> str | None:
    """The only swap's spec when there is exactly one and it is stable."""
    swaps = [e.spec for e in parse_fstab(fstab_text) if e.fstype == "swap"]
    if len(swaps) == 1 and partition_number(swaps[0]) is None:
        return swaps[0]
    return None


def rewrite_device_field(
    text: str, device_map: dict[str, str], field_index: int
) -> tuple[str, list[Rewrite]]:
    """Replace field `field_index` (0 for fstab, 1 for crypttab) when device_map knows it."""
    lines = text.splitlines(keepends=True)
    done: list[Rewrite] = []
    for number, line in enumerate(lines):
        body, hash_, comment = line.partition("#")
        fields = body.split()
        if len(fields) <= field_index:
            continue
        new = device_map.get(fields[field_index])
        if new is None:
            continue
        # replace the first occurrence of the field in place, keeping the spacing
        start = _field_start(body, field_index)
        old = fields[field_index]
        body = body[:start] + new + body[start + len(old):]
        lines[number] = body + hash_ + comment
        done.append(Rewrite(old, new))
    return "".join(lines), done


def _field_start(body: str, index: int) -> int:
    position = 0
    for current in range(index + 1):
        while body[position].isspace():
            position += 1
        if current == index:
            return position
        while position < len(body) and not body[position].isspace():
            position += 1
    return position
