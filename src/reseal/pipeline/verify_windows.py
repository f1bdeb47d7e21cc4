"""`reseal verify` for Windows: the live and user hives (the leftover scan), every file-level
place a run claims, and with --deep the raw disk, as `LeftoverHit` rows.

File-level places, for the old identity a run's report names: the RegBack hive copies, the NTFS
ACL of every file and folder on every NTFS volume of the machine, the scheduled-task XMLs, the
names of files and folders on every volume (`$Recycle.Bin\\<SID>`), and the master's
machine-account secret and cached domain logons in SECURITY. Each hit says what it is and
which operation removes it.
The raw-disk scan is `reseal.windows.deepscan`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reseal.errors import CorruptData, ResealError
from reseal.image.guestfs import GuestFS
from reseal.image.model import WindowsSystem
from reseal.image.target import Target
from reseal.operations.windows_domain_leave import stored_digest
from reseal.operations.windows_leftovers import scan_hives, scan_windows_leftovers
from reseal.operations.windows_regback import regback_copies
from reseal.operations.windows_sid_folders import find_sid_names
from reseal.pipeline.verify import LeftoverHit
from reseal.registry import Hive
from reseal.windows.deepscan import deep_scan
from reseal.windows.domain import CACHE, MACHINE_ACCOUNT_SECRET, cached_logon_times
from reseal.windows.hives import HiveSet, LoadedHive
from reseal.windows.lsa import secret_changed
from reseal.windows.ntfsvolumes import machine_volumes, read_acl, walk_entries
from reseal.windows.secdesc import sid_slots
from reseal.windows.sid import Sid, sid_text_pattern
from reseal.windows.tasks import TASKS_DIR, account_prefix_pattern, decode_task

MAX_TASK_FILE = 4 << 20
DIGEST = re.compile(r"\$MACHINE\.ACC \(stored value (sha256:[0-9a-f]{64})\)")
_REMEDIES = (
    ("machine-sid", "windows-machine-sid"),
    ("computer-name", "windows-computer-name"),
    ("machine-guid", "windows-clone-ids"), ("sqm-machine-id", "windows-clone-ids"),
    ("sus-client-id", "windows-clone-ids"), ("sense-guid", "windows-clone-ids"),
    ("hw-profile-guid", "windows-clone-ids"), ("dhcpv6-duid", "windows-clone-ids"),
    ("msdtc", "windows-clone-ids"),
)


@dataclass(frozen=True)
class FileTrace:
    """One file-level place that still holds an old identity."""

    where: str  # guest path (system volume) or "p4:/path" (another volume), or "HIVE\\key [value]"
    what: str
    identity: str
    match: str
    remedy: str  # the operation that removes it
    same_as: str | None = None  # the live place this is a copy of (RegBack): its explanation holds


def remedy_for(identity: str) -> str:
    for prefix, operation in _REMEDIES:
        if identity.startswith(prefix):
            return operation
    return "windows-leftovers (reported only)"


def scan_windows_files(target: Target, system: WindowsSystem, old: dict[str, str],
                       notes: str = "", started: datetime | None = None) -> list[FileTrace]:
    traces: list[FileTrace] = []
    traces += _regback(system, old)
    sid_text = old.get("machine-sid")
    old_sid = Sid.parse(sid_text) if sid_text else None
    names = [value for key, value in old.items() if key.startswith("computer-name") and value]
    for machine_volume in machine_volumes(target, system, ntfs_only=False):
        prefix = "" if machine_volume.is_system else f"{machine_volume.volume.key}:"
        fs = machine_volume.fs
        if old_sid is not None:
            for item in find_sid_names(fs.walk("/"), old_sid, old_sid, prefix.rstrip(":")):
                traces.append(FileTrace(f"{prefix}{item.path}", "file name holds an old-SID account",
                                        "machine-sid", sid_text or "", "windows-sid-folders"))
            if machine_volume.volume.fstype == "ntfs":
                traces += _acls(fs, prefix, old_sid)
    traces += _tasks(system, old_sid, names)
    traces += _machine_secret(system, notes, started)
    traces += _cached_logons(system, started)
    return traces


def _regback(system: WindowsSystem, old: dict[str, str]) -> list[FileTrace]:
    hives = HiveSet(system)
    loaded = []
    live_name: dict[str, str] = {}
    for name, path in regback_copies(system):
        if system.fs.stat(path).st_size == 0:
            continue
        try:
            copy = hives.user(path)
        except ResealError:
            continue
        if copy is not None:
            loaded.append(copy)
            live_name[copy.label] = name
    traces = []
    for hit in _scan_with_free_space(loaded, old):
        live = live_name[hit.hive] + hit.where[len(hit.hive):]
        traces.append(FileTrace(hit.where, f"RegBack copy: {hit.what}", hit.identity, hit.match,
                                "windows-regback", same_as=live))
    return traces


def _scan_with_free_space(loaded: list[LoadedHive], old: dict[str, str]) -> list[Any]:
    """The hive scan, free cells and cell slack included (a copy there is a trace too)."""
    return list(scan_hives(loaded, old, unused=True))


def _acls(fs: GuestFS, prefix: str, old_sid: Sid) -> list[FileTrace]:
    traces = []
    for guest in walk_entries(fs):
        try:
            descriptor = read_acl(fs, guest)
        except OSError:
            continue
        if descriptor is None:
            continue
        try:
            slots = sid_slots(descriptor, where=guest)
        except CorruptData:
            continue
        roles = sorted({slot.role for slot in slots if slot.sid.starts_with(old_sid)})
        if roles:
            traces.append(FileTrace(f"{prefix}{guest}", f"NTFS ACL ({', '.join(roles)}) names an "
                                    "old-SID account", "machine-sid", str(old_sid),
                                    "windows-file-acls"))
    return traces


def _tasks(system: WindowsSystem, old_sid: Sid | None, names: Iterable[str]) -> list[FileTrace]:
    fs = system.fs
    directory = fs.find_path(f"{system.system_root}/{TASKS_DIR}")
    if directory is None or not fs.is_dir(directory):
        return []
    sid_pattern = sid_text_pattern(old_sid) if old_sid is not None else None
    name_patterns = [(name, account_prefix_pattern(name)) for name in names]
    traces = []
    for folder, _dirs, files in fs.walk(directory):
        for name in files:
            path = f"{folder.rstrip('/')}/{name}"
            if fs.is_symlink(path) or fs.stat(path).st_size > MAX_TASK_FILE:
                continue
            task = decode_task(fs.read_bytes(path))
            if task is None:
                continue
            if sid_pattern is not None and sid_pattern.search(task.text):
                traces.append(FileTrace(path, "scheduled task names an old-SID account",
                                        "machine-sid", str(old_sid), "windows-scheduled-tasks"))
            for old_name, pattern in name_patterns:
                if pattern.search(task.text):
                    traces.append(FileTrace(path, "scheduled task names an account of the old "
                                            "computer", "computer-name", old_name,
                                            "windows-scheduled-tasks"))
    return traces


def _security(system: WindowsSystem) -> Hive | None:
    path = system.hive_path("SECURITY")
    if path is None:
        return None
    try:
        return Hive.from_bytes(system.fs.read_bytes(path), name="SECURITY")
    except ResealError:
        return None


def _machine_secret(system: WindowsSystem, notes: str,
                    started: datetime | None = None) -> list[FileTrace]:
    """The master's $MACHINE.ACC: the value windows-domain-leave removed (its digest is in
    the report), or a secret last set before the run started (a join sets it during the
    run, so an older one came with the master)."""
    digests = set(DIGEST.findall(notes))
    if not digests and started is None:
        return []
    security = _security(system)
    if security is None:
        return []
    key = security.key(f"Policy\\Secrets\\{MACHINE_ACCOUNT_SECRET}\\CurrVal")
    value = key.value("") if key is not None else None
    if value is None:
        return []
    changed = secret_changed(security, MACHINE_ACCOUNT_SECRET)
    older = started is not None and changed is not None and changed < started
    if stored_digest(value.raw) not in digests and not older:
        return []
    return [FileTrace(f"SECURITY\\Policy\\Secrets\\{MACHINE_ACCOUNT_SECRET}",
                      "the master's machine-account secret", "domain-membership",
                      "$MACHINE.ACC", "windows-domain-leave")]


def _cached_logons(system: WindowsSystem, started: datetime | None) -> list[FileTrace]:
    """Cached domain logons (SECURITY Cache\\NL$n) made before the run: the master's users'
    password verifiers, which windows-domain-leave empties. Only the entries' clear header
    is read (its LastWrite time), never the encrypted part."""
    if started is None:
        return []
    security = _security(system)
    if security is None:
        return []
    return [FileTrace(f"SECURITY\\{CACHE}\\{name}", "a cached domain logon of the master "
                      f"(cached {when:%Y-%m-%d %H:%M} UTC)" if when else
                      "a cached domain logon of the master", "domain-membership", name,
                      "windows-domain-leave")
            for name, when in cached_logon_times(security) if when is None or when < started]


def windows_hits(target: Target, system: WindowsSystem, old: dict[str, str], notes: str,
                 started: datetime | None = None) -> list[LeftoverHit]:
    label = f"windows:{system.volume.key}"
    hits = [LeftoverHit(label, h.where, f"{h.identity} ({h.form})", h.match, h.where in notes,
                        remedy_for(h.identity)) for h in scan_windows_leftovers(system, old)]
    for trace in scan_windows_files(target, system, old, notes, started):
        explained = trace.where in notes or (trace.same_as is not None and trace.same_as in notes)
        hits.append(LeftoverHit(label, trace.where, trace.what, trace.match, explained,
                                trace.remedy))
    return hits


def deep_hits(target: Target, old: dict[str, str]) -> list[LeftoverHit]:
    if target.raw_path is None:
        return [LeftoverHit("disk", str(target.source), "--deep needs a disk image or device; a "
                            "directory target has no raw bytes to scan", "", True,
                            beyond_files=True, count=0)]
    hits = []
    for hit in deep_scan(target.raw_path, target.layout, target.volumes, old):
        hits.append(LeftoverHit("disk", hit.region, f"{hit.identity} ({hit.form}): {hit.what}",
                                old.get(hit.identity, ""), hit.in_file is not None, hit.remedy,
                                beyond_files=hit.in_file is None, count=hit.count))
    return hits
