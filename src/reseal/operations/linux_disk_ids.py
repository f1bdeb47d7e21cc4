"""linux-disk-ids (off by default): a new GPT disk GUID and partition GUIDs, or a new MBR disk
signature, with every `PARTUUID=` reference following.

Clones of one master share the disk's identity: two of them in one machine make
`/dev/disk/by-partuuid` ambiguous, and a `root=PARTUUID=` kernel may boot the other disk.
GPT: both headers and both entry arrays are rewritten (backup first, primary last), CRCs
recomputed; MBR: the 32-bit signature at byte 440 (a Linux PARTUUID there is
`<signature>-<partition number>`). The old bytes go into the undo journal first. References
follow in fstab, crypttab, GRUB (`root=PARTUUID=`, `search --part-uuid`), /etc/default/grub,
/etc/kernel/cmdline, systemd-boot entries on /boot and the ESP, and LILO.

Refused on a disk that holds Windows: Windows finds its volumes by the disk signature or the
partition GUIDs in MountedDevices and in the BCD store, which this operation does not rewrite.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from reseal.errors import CorruptData, ResealError
from reseal.image.guestfs import GuestFS
from reseal.image.model import DiskLayout, LinuxSystem, OSFamily
from reseal.image.partitions import (
    gpt_identity_writes,
    mbr_signature_write,
    partuuid,
    read_layout,
)
from reseal.image.rawwrite import DiskWrite, write_disk
from reseal.linux.bootrefs import boot_files
from reseal.linux.devrefs import replace_uuids
from reseal.operations._linux_support import new_uuid, preflight, rng
from reseal.operations._references import rewrite_references
from reseal.operations.base import IdentityRequest, Operation, OperationContext

ORDER = 27
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LOADER_DIRS = ("/boot/loader/entries", "/boot/efi/loader/entries", "/efi/loader/entries")
EXTRA_CMDLINE_FILES = ("/boot/refind_linux.conf",)
MBR_PARTUUID = re.compile(r"(?<![0-9A-Za-z-])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{2}(?![0-9A-Za-z-])")


def validate(request: IdentityRequest, options: Any) -> None:
    return None


def apply(ctx: OperationContext) -> None:
    preflight(ctx)
    target = ctx.target
    if target.linux and ctx.system is not target.linux[0]:
        return  # one disk, changed once, with every Linux system's references
    layout = target.layout
    if layout is None or target.raw_path is None or layout.table == "none":
        ctx.warn(f"no partition table to give a new identity (the target is a {target.kind}"
                 f"{', without a partition table' if layout is not None else ''}); nothing "
                 "changed")
        return
    if target.windows:
        where = ", ".join(system.volume.key for system in target.windows)
        ctx.warn(f"disk identity unchanged: Windows on {where} finds its volumes by the disk "
                 "signature and partition GUIDs (MountedDevices, the BCD store), which this "
                 "operation does not rewrite; leave it off for disks that hold Windows")
        return
    new_layout, writes = _plan(ctx, layout)
    map_ = _partuuid_map(layout, new_layout)
    if layout.table == "gpt":
        ctx.change("GPT disk GUID", "set", layout.disk_guid, new_layout.disk_guid)
        ctx.identity("disk-guid", layout.disk_guid, new_layout.disk_guid)
    else:
        old_sig = f"{layout.mbr_signature or 0:08x}"
        new_sig = f"{new_layout.mbr_signature or 0:08x}"
        ctx.change("MBR disk signature", "set", old_sig, new_sig)
        ctx.identity("disk-signature", old_sig, new_sig)
    for old_part, new_part in zip(layout.partitions, new_layout.partitions, strict=True):
        old, new = partuuid(layout, old_part), partuuid(new_layout, new_part)
        if old and new and old != new:
            ctx.change(f"partition {old_part.index} PARTUUID", "set", old, new)
            ctx.identity(f"partuuid:p{old_part.index}", old, new)
    write_disk(target, writes)
    if not ctx.dry_run:
        _check_written(ctx, new_layout)
    _adopt(ctx, new_layout)
    for system in target.linux:
        _follow(ctx, system, map_)
    if any(p.type_id == ESP_TYPE for p in layout.partitions):
        ctx.note("UEFI boot entries kept in a machine's firmware name the ESP by its partition "
                 "GUID: a clone boots through the fallback path \\EFI\\BOOT\\BOOTX64.EFI or "
                 "needs its boot entry made again (efibootmgr)")


def _plan(ctx: OperationContext, layout: DiskLayout) -> tuple[DiskLayout, list[DiskWrite]]:
    target = ctx.target
    assert target.raw_path is not None
    if layout.table == "gpt":
        guids = {part.index: new_uuid(ctx) for part in layout.partitions}
        disk_guid = new_uuid(ctx)
        try:
            with open(target.raw_path, "rb") as stream:
                raw = gpt_identity_writes(stream, layout.size, str(target.source), disk_guid,
                                          guids)
        except CorruptData as exc:
            raise ResealError(f"{exc}; nothing written") from None
        new_parts = tuple(dataclasses.replace(p, guid=guids[p.index]) for p in layout.partitions)
        writes = [DiskWrite(offset, data, "GPT header and partition entries")
                  for offset, data in raw]
        return dataclasses.replace(layout, disk_guid=disk_guid, partitions=new_parts), writes
    signature = 0
    while signature in (0, layout.mbr_signature):
        signature = rng(ctx).getrandbits(32)
    offset, data = mbr_signature_write(signature)
    return (dataclasses.replace(layout, mbr_signature=signature),
            [DiskWrite(offset, data, "MBR disk signature")])


def _partuuid_map(old: DiskLayout, new: DiskLayout) -> dict[str, str]:
    mapping = {}
    for old_part, new_part in zip(old.partitions, new.partitions, strict=True):
        before, after = partuuid(old, old_part), partuuid(new, new_part)
        if before and after:
            mapping[before.lower()] = after
    if old.disk_guid and new.disk_guid:
        mapping[old.disk_guid.lower()] = new.disk_guid
    return mapping


def _check_written(ctx: OperationContext, wanted: DiskLayout) -> None:
    """reseal's own parser reads the table again: every CRC right, the new ids in place."""
    target = ctx.target
    assert target.raw_path is not None
    with open(target.raw_path, "rb") as stream:
        found = read_layout(stream, wanted.size, str(target.source))
    if (found.disk_guid, found.mbr_signature, [p.guid for p in found.partitions]) != (
            wanted.disk_guid, wanted.mbr_signature, [p.guid for p in wanted.partitions]):
        raise ResealError(f"{target.source}: the partition table does not read back with the new "
                          "identity; `reseal undo` puts the old one back")


def _adopt(ctx: OperationContext, layout: DiskLayout) -> None:
    """Later operations of the run see the new identity."""
    target = ctx.target
    by_index = {part.index: part for part in layout.partitions}
    target.layout = layout
    for volume in target.volumes:
        part = volume.partition
        if part is not None and part.table in ("gpt", "mbr") and part.index in by_index:
            volume.partition = by_index[part.index]


# ------------------------------------------------------------------------- references
def replace_partuuids(text: str, mapping: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """GPT GUIDs (token-exact, any case) and MBR `<signature>-<nn>` PARTUUIDs of `mapping`
    replaced by the new values; nothing else changes."""
    text, rewrites = replace_uuids(text, mapping)
    done = [(r.old, r.new) for r in rewrites]

    def swap(match: re.Match[str]) -> str:
        new = mapping.get(match.group(0).lower())
        if new is None:
            return match.group(0)
        done.append((match.group(0), new))
        return new

    return MBR_PARTUUID.sub(swap, text), done


def _reference_files(system: LinuxSystem) -> list[tuple[GuestFS, str, str]]:
    files = [(item.fs, item.path, item.label) for item in boot_files(system)]
    roots: list[tuple[GuestFS, str]] = [(system.fs, d) for d in LOADER_DIRS]
    for volume in system.extra_volumes.values():
        if volume.fs is not None and volume.fstype == "vfat":
            roots.append((volume.fs, "/loader/entries"))
    for fs, directory in roots:
        for name in fs.listdir(directory):
            if name.endswith(".conf"):
                files.append((fs, f"{directory}/{name}", f"{fs.key}:{directory}/{name}"))
    files += [(system.fs, path, path) for path in EXTRA_CMDLINE_FILES]
    seen: set[str] = set()
    unique = []
    for fs, path, label in files:
        try:
            if fs.is_symlink(path) or not fs.is_file(path):
                continue
            key = str(fs.resolve(path))
        except ResealError:
            continue
        if key not in seen:
            seen.add(key)
            unique.append((fs, path, label))
    return unique


def _follow(ctx: OperationContext, system: LinuxSystem, mapping: dict[str, str]) -> None:
    changed = rewrite_references(ctx, _reference_files(system),
                                 lambda text: replace_partuuids(text, mapping),
                                 "PARTUUID references")
    if "/etc/lilo.conf" in changed:
        ctx.warn("/etc/lilo.conf names a changed PARTUUID: LILO keeps each image's command "
                 "line in its map, so run `lilo` in the clone before it boots")


OPERATION = Operation(
    name="linux-disk-ids",
    description="new GPT disk and partition GUIDs (both headers and entry arrays) or MBR disk "
    "signature, with PARTUUID= references in fstab, GRUB, kernel command lines and "
    "systemd-boot entries following; refused on disks holding Windows",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=None,
)
