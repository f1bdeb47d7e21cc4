"""windows-regback: the registry backup copies in `System32\\config\\RegBack` follow the run.

Windows' `RegIdleBackup` scheduled task copies SYSTEM, SOFTWARE, SAM, SECURITY and DEFAULT to
`RegBack` (Windows 7 to Windows 10 1709); each copy carries the master's SID, name and secrets
and would bring them back on a registry restore. By default every non-empty copy is replaced by
the hive as this run leaves it — what the backup task itself would write next — so a restore
gives the clone's identity. With `remove: true` (answer file `operations.options`) the copies
are removed instead, as Windows 10 1803 and later do not keep them ("The system registry is no
longer backed up to the RegBack folder starting in Windows 10 version 1803",
https://learn.microsoft.com/troubleshoot/windows-client/installing-updates-features-roles/system-registry-no-backed-up-regback-folder).
Zero-byte placeholders (what those versions leave) stay as they are. Both are journaled.
Runs after every operation that edits hives and before the leftover scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reseal.image.guestfs import GuestFS
from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.windows.hives import CONFIG_HIVES, hive_set

ORDER = 88
REGBACK = "System32/config/RegBack"
REFRESH_KEY = "reseal.windows.regback"
MAX_HIVE = 2 << 30


@dataclass
class RegBackOptions:
    remove: bool = False  # remove the copies instead of refreshing them


def validate(request: IdentityRequest, options: RegBackOptions | None) -> None:
    """A boolean option cannot be wrong (the answer-file reader checks its type)."""


def regback_copies(system: WindowsSystem) -> list[tuple[str, str]]:
    """(hive name, guest path) of each RegBack copy present (empty ones included)."""
    fs = system.fs
    directory = fs.find_path(f"{system.system_root}/{REGBACK}")
    if directory is None or not fs.is_dir(directory):
        return []
    copies = []
    for name in CONFIG_HIVES:
        path = fs.find_child(directory, name)
        if path is not None and fs.is_file(path) and not fs.is_symlink(path):
            copies.append((name, path))
    return copies


@dataclass
class RegBackRefresh:
    """Copies the live hive files over their RegBack copies once the run's hives are committed
    (the runner commits shared resources in the order they appeared, the HiveSet first), so
    each copy is byte for byte the hive as written, free space zero-filled included."""

    fs: GuestFS
    copies: list[tuple[str, str]] = field(default_factory=list)  # (live path, RegBack path)

    def commit(self) -> None:
        for live, copy in self.copies:
            self.fs.write_bytes(copy, self.fs.read_bytes(live, limit=MAX_HIVE))
        self.copies.clear()


def apply(ctx: OperationContext) -> None:
    options: RegBackOptions = ctx.options or RegBackOptions()
    assert isinstance(ctx.system, WindowsSystem)
    fs = ctx.system.fs
    hives = hive_set(ctx)  # committed before the refresh below
    refresh = RegBackRefresh(fs)
    refreshed: list[str] = []
    for name, path in regback_copies(ctx.system):
        if fs.stat(path).st_size == 0:
            continue
        if options.remove:
            fs.remove(path)
            ctx.change(path, "remove", f"backup copy of {name}")
            continue
        live = hives.config(name)
        if live is None:
            ctx.warn(f"{path}: no live {name} hive to refresh it from; left as it is")
            continue
        refresh.copies.append((live.path, path))
        refreshed.append(name)
        ctx.change(path, "write", f"backup copy of the master's {name}", f"copy of the new {name}")
    if refresh.copies:
        ctx.shared[REFRESH_KEY] = refresh
        ctx.note(f"RegBack copies of {', '.join(refreshed)} "
                 "refreshed from the generalized hives (what the RegIdleBackup task writes)")


OPERATION = Operation(
    name="windows-regback",
    description="Refresh the System32\\config\\RegBack copies from the generalized hives "
    "(or remove them with the option remove: true)",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=RegBackOptions,
)
