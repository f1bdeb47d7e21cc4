"""Byte-exact removal of a package: put back the hives as they were before its `add`.

Deleting the keys and values `add` wrote restores the registry's content, but not the hive
file's bytes (freed cells stay where they were). `reseal drivers add` therefore leaves a small
record beside its undo journal: which target, which oemN.inf it published, and the SHA-256 of
every hive (and hive log) it changed, as they were after the add. `drivers remove` of that
same single package looks for such a record; when every one of those files is still exactly
as the add left it, nothing else has touched them since, and the journal's copy of their
old bytes is, byte for byte, the hive without the package. Otherwise the logical removal
stands.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from reseal.image.target import Target
from reseal.journal import read_blob, read_entries

RECORD_NAME = "drivers-add.json"


@dataclass(frozen=True)
class HiveFile:
    volume: str
    path: str  # guest path


def _is_hive_file(path: str) -> bool:
    return "/system32/config/" in path.lower()


def _current(target: Target, item: HiveFile) -> bytes | None:
    fs = target.volume(item.volume).fs
    if fs is None or not fs.exists(item.path):
        return None
    return fs.read_bytes(item.path)


def _digest(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def write_add_record(run_dir: Path, journal_dir: Path, target: Target,
                     oem_infs: list[str]) -> None:
    """After `drivers add`: remember the hives as the add left them."""
    after = {}
    for entry in read_entries(journal_dir):
        if entry.kind == "file" and _is_hive_file(entry.path):
            item = HiveFile(entry.volume, entry.path)
            after[f"{entry.volume}:{entry.path}"] = _digest(_current(target, item))
    record = {"target": str(target.source), "oem_infs": sorted(oem_infs), "after": after}
    (run_dir / RECORD_NAME).write_text(json.dumps(record, indent=1, sort_keys=True))


def find_exact_restore(runs_dir: Path, target: Target, oem_inf: str
                       ) -> dict[HiveFile, bytes | None] | None:
    """Old bytes of every hive file the add of `oem_inf` changed, when they are provably the
    image without that package; None when no such add record applies."""
    if not runs_dir.is_dir():
        return None
    for record_path in sorted(runs_dir.glob(f"*/{RECORD_NAME}"), reverse=True):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("target") != str(target.source) or \
                record.get("oem_infs") != [oem_inf.lower()]:
            continue
        after: dict[str, str | None] = record.get("after", {})
        for key, digest in after.items():
            volume, _, path = key.partition(":")
            if _digest(_current(target, HiveFile(volume, path))) != digest:
                return None  # changed since: the newest matching add no longer applies
        old: dict[HiveFile, bytes | None] = {}
        journal_dir = record_path.parent / "journal"
        for entry in read_entries(journal_dir):
            key = f"{entry.volume}:{entry.path}"
            if entry.kind != "file" or key not in after:
                continue
            item = HiveFile(entry.volume, entry.path)
            if item not in old:
                old[item] = read_blob(journal_dir, entry) if entry.existed and entry.blob \
                    else None
        return old if len(old) == len(after) else None
    return None
