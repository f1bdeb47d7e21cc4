"""/etc/fstab entries, parsed from text read through GuestFS (never a host path)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_FSTAB_LINES = 10_000


@dataclass(frozen=True)
class FstabEntry:
    spec: str  # "UUID=...", "LABEL=...", "PARTUUID=...", "/dev/sda1", ...
    mountpoint: str
    fstype: str
    options: str
    dump: str = "0"
    passno: str = "0"


def parse_fstab(text: str) -> list[FstabEntry]:
    entries = []
    for line in text.splitlines()[:MAX_FSTAB_LINES]:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        fields = [_unescape(f) for f in fields] + ["", "defaults", "0", "0"][len(fields) - 2 :]
        entries.append(FstabEntry(*fields[:6]))
    return entries


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t")
