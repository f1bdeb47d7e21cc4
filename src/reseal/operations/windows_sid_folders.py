"""windows-sid-folders: files and folders named after a local account's SID follow the new SID.

Windows names some per-user state after the account's SID: the Recycle Bin keeps one folder per
user on every volume (`$Recycle.Bin\\<SID>`, `RECYCLER\\<SID>` before Vista), AppX keeps
per-user package files (`ProgramData\\Microsoft\\Windows\\AppRepository\\...\\<SID>.pckgdep`).
After a SID change Windows looks for the new name, so every such name on every volume of the
machine is renamed (journaled; `reseal undo` renames it back). A name that only looks like the
SID (one more digit, `S-1-5-21-a-b-c5-1001`) is a different SID and stays.

DPAPI is different: `AppData\\Roaming\\Microsoft\\Protect\\<SID>` holds the user's master keys,
which are encrypted with a key derived from the user's password hash *and SID*, and
`Microsoft\\Crypto\\RSA\\<SID>` holds key containers those master keys protect. Renaming the
folders would not make them decryptable under the new SID, so they are never renamed: each is
listed in the report with what stops working (saved credentials, browser and Wi-Fi passwords,
EFS and certificate private keys of that user) — resetting the user's password on the clone
makes Windows start new master keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reseal.errors import ResealError
from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.operations.windows_machine_sid import SHARED_SID_KEY, SidChange
from reseal.windows.ntfsvolumes import machine_volumes
from reseal.windows.sid import Sid, sid_text_pattern

ORDER = 22
EXPLAINED_NAMES_KEY = "reseal.windows.sid-folders.explained"  # guest paths left on purpose
DPAPI_PARENTS = ("/microsoft/protect", "/microsoft/crypto/rsa", "/microsoft/crypto/keys",
                 "/microsoft/credentials", "/microsoft/vault")
DPAPI_REASON = ("DPAPI keys bound to the old SID: the user's master keys are encrypted with a "
                "key derived from the password and the SID, so saved credentials, browser and "
                "Wi-Fi passwords, EFS and certificate private keys of this user cannot be "
                "decrypted after the SID change; left as it is (never renamed), reset the "
                "user's password on the clone to start new keys")


@dataclass(frozen=True)
class SidName:
    """One file or folder whose name holds a SID of the old machine."""

    volume: str
    path: str
    new_name: str
    dpapi: bool


def validate(request: IdentityRequest, options: object) -> None:
    """The SID is validated by windows-machine-sid."""


def find_sid_names(fs_walk: Iterable[tuple[str, list[str], list[str]]], old: Sid, new: Sid,
                   volume: str) -> list[SidName]:
    pattern = sid_text_pattern(old)
    found: list[SidName] = []
    for directory, dirnames, filenames in fs_walk:
        for name in [*dirnames, *filenames]:
            if not pattern.search(name):
                continue
            path = directory.rstrip("/") + "/" + name
            new_name = pattern.sub(str(new), name)
            found.append(SidName(volume, path, new_name, is_dpapi_path(directory)))
    return found


def is_dpapi_path(directory: str) -> bool:
    lowered = directory.lower()
    return any(lowered.endswith(parent) or f"{parent}/" in lowered for parent in DPAPI_PARENTS)


def apply(ctx: OperationContext) -> None:
    change = ctx.shared.get(SHARED_SID_KEY)
    if not isinstance(change, SidChange):
        return
    assert isinstance(ctx.system, WindowsSystem)
    explained: set[str] = ctx.shared.setdefault(EXPLAINED_NAMES_KEY, set())
    renamed = 0
    for machine_volume in machine_volumes(ctx.target, ctx.system, ntfs_only=False):
        fs = machine_volume.fs
        if machine_volume.volume.read_only and not ctx.dry_run:
            continue
        names = find_sid_names(fs.walk("/"), change.old, change.new,
                               machine_volume.volume.key)
        # deepest first, so a renamed folder's children are renamed under their old path
        for item in sorted(names, key=lambda n: -n.path.count("/")):
            where = item.path if machine_volume.is_system else f"{item.volume}:{item.path}"
            if item.dpapi:
                explained.add(where)
                ctx.note(f"{where}: {DPAPI_REASON}")
                continue
            try:
                fs.rename(item.path, item.new_name)
            except ResealError as exc:
                ctx.warn(str(exc))
                continue
            renamed += 1
            ctx.change(where, "rename", item.path.rsplit("/", 1)[-1], item.new_name)
    if renamed:
        ctx.note(f"{renamed} files and folders named after old-SID accounts were renamed")


OPERATION = Operation(
    name="windows-sid-folders",
    description="Rename files and folders named after old-SID accounts ($Recycle.Bin\\<SID>) on "
    "every volume; report DPAPI Protect\\<SID> folders, never rename them",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=None,
)
