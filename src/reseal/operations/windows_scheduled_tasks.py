"""windows-scheduled-tasks: task definitions follow the new SID and computer name.

Every XML file under `%SystemRoot%\\System32\\Tasks` (see `reseal.windows.tasks`): a principal
or SDDL naming an account of the old machine SID gets the new SID (the whole SID only: a
longer look-alike stays), an account written `OLDNAME\\user` becomes `NEWNAME\\user`. The file
keeps its encoding and byte-order mark. Where TaskCache holds the file's SHA-256 (`Hash`,
Windows 7/8), it is updated so the Task Scheduler does not reject the task as tampered with;
TaskCache's own values (`Author`, binary `Triggers`/`Actions`/`SD`) follow the SID through
windows-machine-sid and the name through windows-computer-name, which run before this one.
"""

from __future__ import annotations

from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.operations.windows_machine_sid import SHARED_SID_KEY, SidChange
from reseal.windows.hives import hive_set
from reseal.windows.sid import sid_text_pattern
from reseal.windows.tasks import (
    TASK_CACHE,
    TASKS_DIR,
    account_prefix_pattern,
    cache_entry_for,
    decode_task,
    file_hash,
)

ORDER = 32  # after windows-machine-sid (20) and windows-computer-name (30)
MAX_TASK_FILE = 4 << 20


def validate(request: IdentityRequest, options: object) -> None:
    """Nothing to check: the SID and name are validated by their own operations."""


def renamed_computers(ctx: OperationContext) -> list[tuple[str, str]]:
    """(old, new) computer names of this run."""
    pairs = []
    for name, value in ctx.log.identity.items():
        if name.startswith("computer-name") and value.old and value.new \
                and value.old.upper() != value.new.upper():
            pairs.append((value.old, value.new.upper()))
    return pairs


def apply(ctx: OperationContext) -> None:
    assert isinstance(ctx.system, WindowsSystem)
    fs = ctx.system.fs
    tasks_dir = fs.find_path(f"{ctx.system.system_root}/{TASKS_DIR}")
    if tasks_dir is None or not fs.is_dir(tasks_dir):
        return
    change = ctx.shared.get(SHARED_SID_KEY)
    sid = (sid_text_pattern(change.old), str(change.new)) if isinstance(change, SidChange) else None
    names = [(account_prefix_pattern(old), new) for old, new in renamed_computers(ctx)]
    if sid is None and not names:
        return
    hives = hive_set(ctx)
    software = hives.config("SOFTWARE")
    rewritten = hashed = 0
    stale_hash: list[str] = []
    for directory, _dirs, files in fs.walk(tasks_dir):
        for name in files:
            path = f"{directory.rstrip('/')}/{name}"
            if fs.is_symlink(path) or fs.stat(path).st_size > MAX_TASK_FILE:
                continue
            data = fs.read_bytes(path)
            task = decode_task(data)
            if task is None:
                continue
            text = task.text
            if sid is not None:
                text = sid[0].sub(sid[1], text)
            for pattern, new in names:
                text = pattern.sub(new, text)
            if text == task.text:
                continue
            new_data = task.encode(text)
            fs.write_bytes(path, new_data)
            rewritten += 1
            ctx.change(path, "set", "task principal/author of the old machine", "new SID and name")
            relative = path[len(tasks_dir):]
            entry = cache_entry_for(software.hive, relative) if software is not None else None
            held = entry.value("Hash") if entry is not None else None
            if entry is None or held is None or software is None:
                continue
            if held.raw == file_hash(data):
                entry.set_value("Hash", held.type, file_hash(new_data))
                hives.mark_changed(software)
                ctx.change(software.where(entry.path, "Hash"), "set", "SHA-256 of the old file",
                           "SHA-256 of the new file")
                hashed += 1
            else:
                stale_hash.append(relative)
    if rewritten:
        ctx.note(f"{rewritten} scheduled-task definitions follow the new SID and name"
                 + (f"; {hashed} TaskCache hashes updated" if hashed else ""))
    if stale_hash:
        ctx.note(f"{len(stale_hash)} TaskCache entries ({TASK_CACHE}\\Tasks) hold no SHA-256 of "
                 "their file (Windows 10 keeps the definition in the registry), left as they are")


OPERATION = Operation(
    name="windows-scheduled-tasks",
    description="Scheduled-task XML principals, authors and SDDL follow the new SID and name; "
    "TaskCache file hashes follow the files",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=None,
)
