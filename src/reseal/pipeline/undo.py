"""Undo a run: put back every file the journal recorded, newest first, byte for byte, each as
the object it was (a file with its holes, a symbolic link as its link text). The journal is
checked first (ours, writable by nobody else, blob names its own)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from reseal.errors import BadInput, ResealError
from reseal.image.fsuuid import UuidChange, set_fs_uuid
from reseal.image.model import Volume
from reseal.image.rawwrite import restore_disk_bytes
from reseal.image.target import OpenOptions, Target, open_target
from reseal.journal import Journal, JournalEntry, read_entries


@dataclass
class UndoResult:
    restored: int
    removed: int
    directories_removed: int
    uuids_restored: int = 0
    attributes_restored: int = 0  # e.g. NTFS ACLs
    disk_regions_restored: int = 0  # LVM metadata, GPT headers, MBR signature
    litter_removed: int = 0  # temporary files a killed run left beside the files it wrote


def undo_run(target_path: str | Path, journal_dir: Path, *, allow_unclean_ntfs: bool = False,
             allowed_backing: tuple[Path, ...] = ()) -> UndoResult:
    if not (journal_dir / "entries.jsonl").is_file():
        raise BadInput(f"{journal_dir}: not a reseal undo journal (no entries.jsonl)")
    entries = list(read_entries(journal_dir))
    journal = Journal(journal_dir)
    for entry in entries:  # every blob checked before the target is opened for writing
        if entry.blob is not None:
            journal.blob_path(entry)
    restored = removed = dirs = attributes = 0
    options = OpenOptions(writable=True, allow_unclean_ntfs=allow_unclean_ntfs,
                          allowed_backing=allowed_backing, host_paths=(journal_dir,))
    with open_target(target_path, options) as target:
        volumes = {v.key: v for v in target.volumes}
        uuid_entries = [e for e in entries if e.kind == "fs-uuid"]
        disk_entries = [e for e in entries if e.kind == "disk-bytes"]
        entries = [e for e in entries if e.kind not in ("fs-uuid", "disk-bytes")]
        if disk_entries and target.raw_path is None:
            raise BadInput(f"{journal_dir}: the run changed raw disk bytes, but {target_path} "
                           "is a directory; give the disk image the run changed")
        missing = {e.volume for e in entries} - {k for k, v in volumes.items() if v.fs}
        missing |= {e.volume for e in uuid_entries} - set(volumes)
        if missing:
            raise BadInput(
                f"{journal_dir}: journal names volumes {sorted(missing)} that are not on "
                f"{target_path}; is this the target the run changed?"
            )
        for entry in reversed(entries):
            fs = volumes[entry.volume].fs
            assert fs is not None
            if entry.kind == "rmdir":
                fs.restore_removed_dir(entry.path, entry.mode or 0o755)
                continue
            if entry.kind == "xattr":
                assert entry.old_value is not None
                fs.restore_xattr(entry.path, entry.old_value, journal.blob_bytes(entry))
                attributes += 1
                continue
            if entry.kind == "rename":
                assert entry.old_value is not None
                fs.undo_rename(entry.path, entry.old_value)
                restored += 1
                continue
            if entry.kind == "symlink":
                assert entry.old_value is not None
                fs.restore_symlink(entry.path, entry.old_value, entry.uid, entry.gid)
                restored += 1
                continue
            if entry.kind == "dir":
                dirs += fs.remove_created_dir(entry.path)
                continue
            if entry.existed:
                fs.restore_copy(entry.path, journal.blob_path(entry), entry.mode, entry.uid,
                                entry.gid)
                restored += 1
            else:
                fs.restore_from_journal(entry.path, None, None, None, None)
                removed += 1
        litter = _remove_litter(volumes, entries)
        uuids = _restore_uuids(target, uuid_entries)
        regions = (restore_disk_bytes(target.raw_path, journal, disk_entries)
                   if disk_entries and target.raw_path is not None else 0)
    return UndoResult(restored, removed, dirs, uuids, attributes, regions, litter)


def _remove_litter(volumes: dict[str, Volume], entries: list[JournalEntry]) -> int:
    """A run killed in the middle of a write leaves its temporary file beside the file it
    was replacing; every such directory is one the journal names."""
    directories = {(e.volume, str(PurePosixPath(e.path).parent)) for e in entries
                   if e.kind in ("file", "symlink", "dir")}
    count = 0
    for key, directory in sorted(directories):
        fs = volumes[key].fs
        if fs is not None:
            count += len(fs.remove_litter(directory))
    return count


def _restore_uuids(target: Target, entries: list[JournalEntry]) -> int:
    """Set file-system UUIDs back (after the files that name them were restored)."""
    oldest: dict[str, JournalEntry] = {}
    for entry in entries:
        oldest.setdefault(entry.volume, entry)  # the first record holds the original UUID
    changes = [(target.volume(key), entry) for key, entry in oldest.items()
               if target.volume(key).uuid.lower() != (entry.old_value or "").lower()]
    if not changes:
        return 0
    with target.offline([volume for volume, _ in changes]):
        for volume, entry in changes:
            if volume.fstype != entry.path or not entry.old_value:
                raise ResealError(f"{volume.key}: the journal recorded a {entry.path} file system, "
                                  f"the target has {volume.fstype}; its UUID was not restored")
            set_fs_uuid(UuidChange(volume.device, volume.fstype, entry.old_value,
                                   f"{target.source} {volume.key}"))
            volume.uuid = entry.old_value
    return len(changes)
