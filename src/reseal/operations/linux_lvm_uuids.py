"""linux-lvm-uuids (off by default): new PV, VG and LV UUIDs, like virt-sysprep's lvm-uuids.

Clones that share LVM UUIDs cannot be attached to one host together: LVM sees duplicate PVs
and refuses the volume group. reseal rewrites the metadata itself (no device-mapper here):
every PV label gets its new UUID (label CRC recomputed), and every metadata area of every PV
gets the new text (all ids replaced, seqno + 1), written after the current copy before the
area header is switched to it, checksums recomputed. The old bytes of every region go into
the undo journal first. Names do not change, so `/dev/mapper/VG-LV`, `/dev/VG/LV` and
`rd.lvm.lv=` stay right; references by UUID follow: `dm-uuid-LVM-…` and `lvm-pv-uuid-…`
links, GRUB's `lvmid/…`, and LVM's own backup, archive and devices files in the image.

Kept, with the reason in a warning: a VG whose UUID GRUB's installed boot code names
(`lvmid/…` in core.img), and PV UUIDs when `/etc/lvm/devices/system.devices` exists (dracut
copies it into the initramfs, whose LVM would then not find the root VG) unless
`force_pv_uuids` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reseal.errors import CorruptData, ResealError
from reseal.image.disk import rescan_lvm
from reseal.image.guestfs import GuestFS
from reseal.image.lvm import (
    SECTOR,
    GroupOnDisk,
    metadata_ids,
    metadata_writes,
    new_id,
    new_label_sector,
    rewrite_text,
    undashed,
)
from reseal.image.model import LinuxSystem, OSFamily
from reseal.image.rawwrite import DiskWrite, write_disk
from reseal.linux.bootrefs import boot_files
from reseal.operations._linux_support import preflight, rng
from reseal.operations._references import rewrite_references
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.operations.linux_fs_uuids import _boot_code as grub_boot_code

ORDER = 26
DEVICES_FILE = "/etc/lvm/devices/system.devices"
LVM_TEXT_DIRS = ("/etc/lvm/backup", "/etc/lvm/archive", "/etc/lvm/devices")
LVM_TEXT_FILES = ("/etc/lvm/lvm.conf",)
_ID = r"[A-Za-z0-9!#]"
DASHED_ID = re.compile(rf"(?<![A-Za-z0-9!#-]){_ID}{{6}}-(?:{_ID}{{4}}-){{5}}{_ID}{{6}}(?![A-Za-z0-9!#-])")
PLAIN_ID = re.compile(rf"(?<![A-Za-z0-9!#-]){_ID}{{32}}(?![A-Za-z0-9!#])")
DM_UUID = re.compile(rf"LVM-({_ID}{{32}})({_ID}{{32}})")


@dataclass
class LvmUuidsOptions:
    # change PV UUIDs even when the image keeps an LVM devices file (RHEL 9 and later):
    # the clone then needs its initramfs rebuilt before LVM in it finds the root VG
    force_pv_uuids: bool = False


def validate(request: IdentityRequest, options: Any) -> None:
    return None


@dataclass(frozen=True)
class GroupPlan:
    found: GroupOnDisk
    id_map: dict[str, str]  # old dashed id -> new dashed id (VG, PVs, LVs)
    pv_map: dict[str, str]  # old PV UUID -> new (only the PVs that change)


def apply(ctx: OperationContext) -> None:
    options = ctx.options if isinstance(ctx.options, LvmUuidsOptions) else LvmUuidsOptions()
    preflight(ctx)
    target = ctx.target
    if target.linux and ctx.system is not target.linux[0]:
        return  # the disk's LVM is changed once, with every Linux system's references
    if target.lvm is None or target.raw_path is None:
        ctx.warn(f"LVM UUIDs can only be changed on a disk image or device (the target is a "
                 f"{target.kind}); nothing changed")
        return
    if not target.lvm.groups:
        ctx.note("no LVM volume group on this disk")
        return
    keep_pvs = _devices_file(target.linux) and not options.force_pv_uuids
    boot_code = grub_boot_code(ctx)
    id_map: dict[str, str] = {}
    for found in target.lvm.groups:
        plan = _plan(ctx, found, keep_pvs, boot_code)
        if plan is None:
            continue
        _write(ctx, plan)
        id_map.update(plan.id_map)
        _report(ctx, plan)
    if not id_map:
        return
    if not ctx.dry_run:
        _check_written(ctx, id_map)
    for system in target.linux:
        _follow(ctx, system, id_map)


def _devices_file(systems: list[LinuxSystem]) -> bool:
    return any(system.fs.is_file(DEVICES_FILE) for system in systems)


def _plan(ctx: OperationContext, found: GroupOnDisk, keep_pvs: bool,
          boot_code: list[tuple[str, bytes]]) -> GroupPlan | None:
    group = found.group
    if found.problem:
        ctx.warn(f"volume group {group.name}: UUIDs unchanged: {found.problem}")
        return None
    holder = next((label for label, data in boot_code
                   if group.uuid.lower().encode() in data), "")
    if holder:
        ctx.warn(f"volume group {group.name}: UUIDs unchanged: GRUB's installed boot code finds "
                 f"/boot by lvmid/{group.uuid} ({holder}), and that code is not text reseal can "
                 "rewrite; run grub-install in the clone, then this operation again")
        return None
    where = f"{ctx.target.source} VG {group.name}"
    pv_uuids = {pv.uuid for pv in group.physical_volumes}
    source = rng(ctx)
    id_map = {}
    for old in metadata_ids(group.text, where):
        if old in pv_uuids and keep_pvs:
            continue
        id_map[old] = new_id(source)
    if keep_pvs:
        ctx.warn(f"volume group {group.name}: PV UUIDs kept: {DEVICES_FILE} names them, and "
                 "dracut copies it into the initramfs, whose LVM would then not find the VG; "
                 "new VG and LV UUIDs only (set force_pv_uuids and rebuild the initramfs in "
                 "the clone to change them too)")
    pv_map = {old: new for old, new in id_map.items() if old in pv_uuids}
    return GroupPlan(found, id_map, pv_map)


def _write(ctx: OperationContext, plan: GroupPlan) -> None:
    """Metadata text and area headers of every PV first, then the PV labels."""
    found = plan.found
    group = found.group
    where = f"{ctx.target.source} VG {group.name}"
    try:
        text = rewrite_text(group.text, plan.id_map, group.seqno + 1, where)
        writes: list[DiskWrite] = []
        for copy in found.copies:
            for offset, data in metadata_writes(copy.area, text, where):
                writes.append(DiskWrite(copy.pv.start + offset, data,
                                        f"LVM metadata of {group.name} on {copy.pv.volume}"))
        for pv in found.pvs.values():
            new = plan.pv_map.get(pv.label.uuid)
            if new is not None:
                writes.append(DiskWrite(pv.start + pv.label.sector * SECTOR,
                                        new_label_sector(pv.label, new),
                                        f"LVM label of {pv.volume}"))
    except CorruptData as exc:
        raise ResealError(f"{exc}; nothing written") from None
    write_disk(ctx.target, writes)
    ctx.change(f"LVM {group.name} metadata ({len(found.copies)} copies)", "write",
               f"seqno {group.seqno}", f"seqno {group.seqno + 1}")


def _report(ctx: OperationContext, plan: GroupPlan) -> None:
    group = plan.found.group
    new_vg = plan.id_map.get(group.uuid)
    if new_vg:
        ctx.change(f"LVM VG {group.name}", "set", group.uuid, new_vg)
        ctx.identity(f"lvm-vg-uuid:{group.name}", group.uuid, new_vg)
    for pv in plan.found.pvs.values():
        new = plan.pv_map.get(pv.label.uuid)
        if new:
            ctx.change(f"LVM PV {pv.volume}", "set", pv.label.uuid, new)
            ctx.identity(f"lvm-pv-uuid:{pv.volume}", pv.label.uuid, new)
    for lv in group.logical_volumes:
        new = plan.id_map.get(lv.uuid)
        if new:
            ctx.change(f"LVM LV {group.name}/{lv.name}", "set", lv.uuid, new)
            ctx.identity(f"lvm-lv-uuid:{group.name}/{lv.name}", lv.uuid, new)


def _check_written(ctx: OperationContext, id_map: dict[str, str]) -> None:
    """Read the disk's LVM again with reseal's reader: every copy must agree and hold the new
    ids, every PV label the new PV UUID."""
    layout = rescan_lvm(ctx.target)
    present = {pv.label.uuid for pv in layout.physical_volumes}
    for found in layout.groups:
        if found.problem:
            raise ResealError(f"LVM volume group {found.name} after the rewrite: {found.problem}; "
                              "`reseal undo` puts the old metadata back")
        present.update(metadata_ids(found.group.text, found.name))
    missing = set(id_map.values()) - present
    if missing:
        raise ResealError(f"the rewritten LVM metadata does not read back with the new UUIDs "
                          f"({', '.join(sorted(missing))}); `reseal undo` puts the old metadata "
                          "back")


# ------------------------------------------------------------------------- references
def replace_lvm_ids(text: str, id_map: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """Every LVM id of `id_map` in `text`, dashed or not, and the VG+LV pairs of
    `dm-uuid-LVM-…` names, replaced by the new ids; nothing else changes."""
    plain = {undashed(old): undashed(new) for old, new in id_map.items()}
    done: list[tuple[str, str]] = []

    def swap(table: dict[str, str]) -> Any:
        def inner(match: re.Match[str]) -> str:
            new = table.get(match.group(0))
            if new is None:
                return match.group(0)
            done.append((match.group(0), new))
            return new
        return inner

    def dm_swap(match: re.Match[str]) -> str:
        vg, lv = plain.get(match.group(1), match.group(1)), plain.get(match.group(2),
                                                                      match.group(2))
        new = f"LVM-{vg}{lv}"
        if new != match.group(0):
            done.append((match.group(0), new))
        return new

    text = DM_UUID.sub(dm_swap, text)
    text = DASHED_ID.sub(swap(id_map), text)
    text = PLAIN_ID.sub(swap(plain), text)
    return text, done


def _lvm_text_files(fs: GuestFS) -> list[str]:
    paths = [path for path in LVM_TEXT_FILES if fs.is_file(path)]
    for directory in LVM_TEXT_DIRS:
        for name in fs.listdir(directory):
            path = f"{directory}/{name}"
            if not fs.is_symlink(path) and fs.is_file(path):
                paths.append(path)
    return paths


def _follow(ctx: OperationContext, system: LinuxSystem, id_map: dict[str, str]) -> None:
    files = [(item.fs, item.path, item.label) for item in boot_files(system)]
    files += [(system.fs, path, path) for path in _lvm_text_files(system.fs)]
    rewrite_references(ctx, files, lambda text: replace_lvm_ids(text, id_map), "LVM UUIDs")


OPERATION = Operation(
    name="linux-lvm-uuids",
    description="give LVM physical volumes, volume groups and logical volumes new UUIDs "
    "(metadata rewritten offline, every copy) and follow them in fstab, GRUB and /etc/lvm",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=LvmUuidsOptions,
)
