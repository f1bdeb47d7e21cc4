"""windows-file-acls: follow the machine SID change into the NTFS ACLs of every volume.

ntfs-3g exposes each file's security descriptor as the `system.ntfs_acl` extended attribute and
keeps `$Secure` consistent when it is set, so each descriptor naming a local account of the old
machine SID (owner, group, DACL and SACL entries, object ACEs included) is rewritten through it.
Every local NTFS partition of the machine is covered: the system volume and each data volume no
other Windows installation holds; the report lists each volume with its counts. Domain SIDs and
other SIDs are never touched. On a directory target the system "volume" is no ntfs-3g mount:
the operation says so and does nothing there. Runs after windows-machine-sid, from which it
takes the old and new SID. Each old descriptor goes into the undo journal first, so
`reseal undo` puts it back; ntfs-3g keeps the old descriptor in `$Secure:$SDS` until it is
reused (`reseal verify --deep` labels what it finds there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reseal.errors import CorruptData
from reseal.fileio import path_xattr
from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.operations.windows_machine_sid import SHARED_SID_KEY, SidChange
from reseal.windows.ntfsvolumes import (
    ACL_XATTR,
    MachineVolume,
    machine_volumes,
    read_acl,
    walk_entries,
)
from reseal.windows.secdesc import rewrite_descriptor
from reseal.windows.sid import SidRewriter

ORDER = 21
MAX_WARNINGS = 20


@dataclass
class VolumeAcls:
    """What one volume's ACL pass found."""

    volume: str
    files: int = 0
    rewritten: int = 0
    errors: list[str] = field(default_factory=list)


def validate(request: IdentityRequest, options: object) -> None:
    """The SID itself is validated by windows-machine-sid."""


def apply(ctx: OperationContext) -> None:
    change = ctx.shared.get(SHARED_SID_KEY)
    if not isinstance(change, SidChange):
        return  # no SID change in this run
    assert isinstance(ctx.system, WindowsSystem)
    rewriter = SidRewriter(change.old, change.new)
    results: list[VolumeAcls] = []
    for machine_volume in machine_volumes(ctx.target, ctx.system, ntfs_only=False):
        volume = machine_volume.volume
        if volume.fstype != "ntfs":
            if machine_volume.is_system:
                ctx.warn(f"volume {volume.key} is {volume.fstype or 'not NTFS'}, not an ntfs-3g "
                         "mount: file ACLs left as they are")
            continue
        if volume.read_only and not ctx.dry_run:
            ctx.warn(f"volume {machine_volume.label} is mounted read-only: its file ACLs were "
                     "not rewritten")
            continue
        results.append(rewrite_volume(ctx, machine_volume, rewriter))
    for result in results:
        ctx.warn_at_most(result.errors, MAX_WARNINGS,
                         f"volume {result.volume}: {{count}} more files whose ACL could not be read")
        ctx.note(f"volume {result.volume}: {result.rewritten} of {result.files} file ACLs named "
                 "the old machine SID and were rewritten")


def rewrite_volume(ctx: OperationContext, machine_volume: MachineVolume,
                   rewriter: SidRewriter) -> VolumeAcls:
    fs = machine_volume.fs
    result = VolumeAcls(machine_volume.label)
    for guest in walk_entries(fs):
        try:
            descriptor = read_acl(fs, guest)
            if descriptor is None:
                continue
            result.files += 1
            new = rewrite_descriptor(descriptor, rewriter.map_sid, where=f"{guest} ACL")
        except (OSError, CorruptData) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            result.errors.append(f"{machine_volume.volume.key}:{guest}: {reason}")
            continue
        if new is None:
            continue
        result.rewritten += 1
        where = guest if machine_volume.is_system else f"{machine_volume.volume.key}:{guest}"
        ctx.change(where, "set", f"ACL with {rewriter.old}", rewriter.new)
        fs.set_xattr(guest, ACL_XATTR, new)  # journaled; a dry run only reports it
    return result


def read_ntfs_acl(host: Path) -> bytes:
    """The NTFS security descriptor ntfs-3g exposes for the host path `host`."""
    return path_xattr(host, ACL_XATTR)


OPERATION = Operation(
    name="windows-file-acls",
    description="Rewrite NTFS file ACLs (system.ntfs_acl via ntfs-3g) on every NTFS volume of "
    "the machine for the new machine SID",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=None,
)
