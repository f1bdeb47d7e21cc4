"""Undo a run: put back every file the journal recorded, newest first, byte for byte."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from reseal.errors import BadInput
from reseal.image.target import OpenOptions, open_target
from reseal.journal import Journal, read_entries


@dataclass
class UndoResult:
    restored: int
    removed: int
    directories_removed: int


def undo_run(target_path: str | Path, journal_dir: Path, *, allow_unclean_ntfs: bool = False
             ) -> UndoResult:
    if not (journal_dir / "entries.jsonl").is_file():
        raise BadInput(f"{journal_dir}: not a reseal undo journal (no entries.jsonl)")
    entries = list(read_entries(journal_dir))
    journal = Journal(journal_dir)
    restored = removed = dirs = 0
    options = OpenOptions(writable=True, allow_unclean_ntfs=allow_unclean_ntfs)
    with open_target(target_path, options) as target:
        volumes = {v.key: v for v in target.volumes}
        missing = {e.volume for e in entries} - {k for k, v in volumes.items() if v.fs}
        if missing:
            raise BadInput(
                f"{journal_dir}: journal names volumes {sorted(missing)} that are not on "
                f"{target_path}; is this the target the run changed?"
            )
        for entry in reversed(entries):
            fs = volumes[entry.volume].fs
            assert fs is not None
            if entry.kind == "rmdir":
                host = fs.resolve(entry.path, follow_last=False)
                os.makedirs(host, mode=entry.mode or 0o755, exist_ok=True)
                continue
            if entry.kind == "dir":
                host = fs.resolve(entry.path, follow_last=False)
                with contextlib.suppress(OSError):
                    os.rmdir(host)
                    dirs += 1
                continue
            if entry.existed:
                fs.restore_from_journal(
                    entry.path, journal.blob_bytes(entry), entry.mode, entry.uid, entry.gid
                )
                restored += 1
            else:
                fs.restore_from_journal(entry.path, None, None, None, None)
                removed += 1
    return UndoResult(restored, removed, dirs)
