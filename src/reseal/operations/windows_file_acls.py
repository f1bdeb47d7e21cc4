"""windows-file-acls: follow the machine SID change into NTFS file ACLs.

ntfs-3g exposes each file's security descriptor as the `system.ntfs_acl` extended attribute and
keeps `$Secure` consistent when it is set, so each descriptor naming a local account of the old
machine SID is rewritten through it. Only meaningful on an NTFS volume mounted by ntfs-3g; on a
directory target the operation says so and does nothing. Runs after windows-machine-sid, from
which it takes the old and new SID. Each old descriptor goes into the undo journal first, so
`reseal undo` puts it back.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from reseal.fileio import path_xattr
from reseal.image.model import OSFamily
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.operations.windows_machine_sid import SHARED_SID_KEY, SidChange
from reseal.windows.secdesc import rewrite_descriptor
from reseal.windows.sid import SidRewriter

ORDER = 21
ACL_XATTR = "system.ntfs_acl"


def validate(request: IdentityRequest, options: object) -> None:
    """The SID itself is validated by windows-machine-sid."""


def apply(ctx: OperationContext) -> None:
    change = ctx.shared.get(SHARED_SID_KEY)
    if not isinstance(change, SidChange):
        return  # no SID change in this run
    volume = ctx.system.volume
    if volume.fstype != "ntfs":
        ctx.warn(f"volume {volume.key} is {volume.fstype or 'not NTFS'}, not an ntfs-3g mount: "
                 "file ACLs left as they are")
        return
    rewriter = SidRewriter(change.old, change.new)
    fs = ctx.system.fs
    files = rewritten = 0
    errors: list[str] = []
    for directory, dirnames, filenames in fs.walk("/"):
        for name in [*dirnames, *filenames]:
            guest = directory.rstrip("/") + "/" + name
            host = fs.resolve(guest, follow_last=False)
            if os.path.islink(host):
                continue
            files += 1
            try:
                descriptor = read_ntfs_acl(host)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
                    errors.append(f"{guest}: {exc.strerror}")
                continue
            new = rewrite_descriptor(descriptor, rewriter.map_sid, where=f"{guest} ACL")
            if new is None:
                continue
            rewritten += 1
            ctx.change(guest, "set", f"ACL with {change.old}", change.new)
            fs.set_xattr(guest, ACL_XATTR, new)  # journaled; a dry run only reports it
    for message in errors[:20]:
        ctx.warn(message)
    ctx.note(f"{rewritten} of {files} file ACLs named the old machine SID and were rewritten")


def read_ntfs_acl(host: Path) -> bytes:
    """The NTFS security descriptor ntfs-3g exposes for `host`."""
    return path_xattr(host, ACL_XATTR)


OPERATION = Operation(
    name="windows-file-acls",
    description="Rewrite NTFS file ACLs (system.ntfs_acl via ntfs-3g) for the new machine SID",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=None,
)
