"""linux-machine-id: stop clones sharing the master's machine-id (and the D-Bus copy of it).

By default /etc/machine-id is left empty: systemd then makes a new id on the first boot and
commits it once the root is writable (machine-id(5)). An empty file is used rather than
"uninitialized" because the latter also triggers first-boot units (systemd-firstboot may
prompt on the console). /var/lib/dbus/machine-id becomes a link to /etc/machine-id, so D-Bus
always reports the same id as systemd instead of the master's stale copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reseal.errors import BadInput
from reseal.image.guestfs import SMALL_LIMIT
from reseal.image.model import OSFamily
from reseal.linux.names import validate_machine_id
from reseal.operations._linux_support import new_hex, preflight
from reseal.operations.base import IdentityRequest, Operation, OperationContext

ORDER = 21
DBUS_ID = "/var/lib/dbus/machine-id"
LINK_TARGETS = ("/etc/machine-id", "../../../etc/machine-id")
EMPTY_MARKERS = ("empty", "uninitialized")
JOURNAL_DIRS = ("/var/log/journal",)


@dataclass
class MachineIdOptions:
    write_new: bool = False  # write a fresh id now instead of leaving it to the first boot
    first_boot_marker: str = "empty"  # or "uninitialized" (systemd >= 247 first-boot semantics)


def validate(request: IdentityRequest, options: Any) -> None:
    if request.machine_id is not None:
        validate_machine_id(request.machine_id)
    if isinstance(options, MachineIdOptions) and options.first_boot_marker not in EMPTY_MARKERS:
        raise BadInput(
            f"linux-machine-id: first_boot_marker {options.first_boot_marker!r} is not one of "
            f"{', '.join(EMPTY_MARKERS)}"
        )


def read_machine_id(fs: Any, path: str = "/etc/machine-id") -> str | None:
    if not fs.is_file(path):
        return None
    value = fs.read_text(path, limit=SMALL_LIMIT).strip()
    return value or None


def apply(ctx: OperationContext) -> None:
    options = ctx.options if isinstance(ctx.options, MachineIdOptions) else MachineIdOptions()
    validate(ctx.request, options)
    preflight(ctx)
    fs = ctx.system.fs
    old = read_machine_id(fs)
    dbus_old = None if fs.is_symlink(DBUS_ID) else read_machine_id(fs, DBUS_ID)

    new: str | None
    if ctx.request.machine_id:
        new = ctx.request.machine_id
    elif options.write_new:
        new = _fresh_id(ctx, avoid={old, dbus_old})
    else:
        new = None
    content = f"{new}\n" if new else ("uninitialized\n" if options.first_boot_marker ==
                                      "uninitialized" else "")
    if fs.exists("/etc/machine-id") or fs.is_dir("/etc"):
        fs.write_text("/etc/machine-id", content, mode=0o444)
        ctx.change("/etc/machine-id", "set", old, new or f"({options.first_boot_marker}: "
                   "new id on first boot)")
    if new is None:
        ctx.note("/etc/machine-id is empty: systemd makes and commits a new id on first boot")

    _link_dbus_id(ctx, dbus_old)
    _note_named_state(ctx, old)
    ctx.identity("machine-id", old, new)
    if dbus_old and dbus_old != old:
        ctx.identity("dbus-machine-id", dbus_old, new)


def _note_named_state(ctx: OperationContext, old: str | None) -> None:
    """The master's journal lives in a directory named after its machine-id; it is the
    master's log, not an identity the clone uses (the clone's journal goes beside it, under
    its own id). Said once, with its path, so `reseal verify` can tell it is known."""
    fs = ctx.system.fs
    if not old:
        return
    for base in JOURNAL_DIRS:
        path = f"{base}/{old}"
        if fs.is_dir(path):
            ctx.note(f"{path}: the master's journal stays (its log, named after the old "
                     "machine-id; the clone journals under its new id beside it); enable "
                     "linux-logfiles if clones must not carry it")


def _fresh_id(ctx: OperationContext, avoid: set[str | None]) -> str:
    while True:
        value = new_hex(ctx, 32)
        # machine-id(5): a v4 UUID formatted as 32 hex digits
        value = value[:12] + "4" + value[13:16] + "89ab"[int(value[16], 16) % 4] + value[17:]
        if value not in avoid and set(value) != {"0"}:
            return value


def _link_dbus_id(ctx: OperationContext, dbus_old: str | None) -> None:
    fs = ctx.system.fs
    if fs.is_symlink(DBUS_ID):
        target = fs.readlink(DBUS_ID)
        if target in LINK_TARGETS:
            return  # already the link D-Bus expects
        before: str | None = f"link to {target}"
    elif fs.exists(DBUS_ID) or fs.is_dir("/var/lib/dbus"):
        before = dbus_old
    else:
        return  # no D-Bus in this image
    fs.symlink(DBUS_ID, "/etc/machine-id")
    ctx.change(DBUS_ID, "set", before, "link to /etc/machine-id")


OPERATION = Operation(
    name="linux-machine-id",
    description="empty /etc/machine-id for a new id on first boot (or write one) and link "
    "/var/lib/dbus/machine-id to it",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
    options_type=MachineIdOptions,
)
