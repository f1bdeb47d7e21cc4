"""windows-event-logs: empty the master's event logs (off by default).

The event logs record the master's computer name, its accounts' SIDs, its logons and network
identities in every event; a clone that keeps them carries that history (like the log files
virt-sysprep's `logfiles` operation removes on Linux guests). Each channel file
(`System32\\winevt\\Logs\\*.evtx`, Vista and later; `System32\\config\\*.evt` before) is removed,
journaled so `reseal undo` brings it back; the Windows Event Log service starts a new file for a
channel whose file is missing when it opens the channel, which is the state
`wevtutil clear-log` leaves behind online
(https://learn.microsoft.com/windows-server/administration/windows-commands/wevtutil).
"""

from __future__ import annotations

from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext

ORDER = 86
LOG_PLACES = (("System32/winevt/Logs", ".evtx"), ("System32/config", ".evt"))


def validate(request: IdentityRequest, options: object) -> None:
    """No input."""


def event_log_files(system: WindowsSystem) -> list[str]:
    fs = system.fs
    found: list[str] = []
    for directory, suffix in LOG_PLACES:
        path = fs.find_path(f"{system.system_root}/{directory}")
        if path is None or not fs.is_dir(path):
            continue
        for name in fs.listdir(path):
            candidate = f"{path}/{name}"
            if name.lower().endswith(suffix) and fs.is_file(candidate) \
                    and not fs.is_symlink(candidate):
                found.append(candidate)
    return found


def apply(ctx: OperationContext) -> None:
    assert isinstance(ctx.system, WindowsSystem)
    removed = 0
    size = 0
    for path in event_log_files(ctx.system):
        size += ctx.system.fs.stat(path).st_size
        ctx.system.fs.remove(path)
        removed += 1
    if removed:
        ctx.change(f"{ctx.system.system_root}/System32/winevt/Logs", "remove",
                   f"{removed} event log files ({size} bytes)")
        ctx.note(f"{removed} event log files removed; Windows starts new ones at boot")


OPERATION = Operation(
    name="windows-event-logs",
    description="Remove the master's event log files (winevt\\Logs\\*.evtx); Windows starts "
    "new ones",
    os=OSFamily.WINDOWS,
    default_enabled=False,
    apply=apply,
    options_type=None,
)
