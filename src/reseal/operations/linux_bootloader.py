"""linux-bootloader: device names in boot and mount configuration rewritten to stable forms.

`/dev/sda2` names whatever the clone's kernel enumerates second on its first disk, which on
another hypervisor or controller is another partition or nothing (`/dev/vda2`, `/dev/nvme0n1p2`).
GRUB 2 (grub.cfg on /boot and the ESP stub, /etc/default/grub), GRUB legacy (menu.lst), LILO,
systemd-boot entries, fstab and crypttab get `UUID=` forms instead; boot entries without an
initrd get `PARTUUID=` (a kernel alone cannot find a file system by UUID). LILO additionally keeps the
kernel's sector list and command line in its map, so it must be re-installed (`lilo`) after
any change; reseal says so plainly.
"""

from __future__ import annotations

import shutil

from reseal.image.model import LinuxSystem, OSFamily
from reseal.linux import devrefs, fstab, lilo
from reseal.linux.bootrefs import boot_files, disk_device_map, disk_partuuid_map, rewrite_text
from reseal.linux.lilo import parse_lilo_sections
from reseal.linux.lilocheck import LiloState, check_lilo, raw_disk
from reseal.operations._linux_support import preflight
from reseal.operations.base import Operation, OperationContext

ORDER = 25
LILO_SHARED_KEY = "linux:lilo-needs-rerun"


def apply(ctx: OperationContext) -> None:
    preflight(ctx)
    system = ctx.system
    assert isinstance(system, LinuxSystem)
    fs = system.fs
    fstab_text = fs.read_text("/etc/fstab") if fs.is_file("/etc/fstab") else ""
    root = fstab.root_spec(fstab_text)
    swap = fstab.swap_spec(fstab_text)
    device_map = disk_device_map(ctx.target)
    partuuid_map = disk_partuuid_map(ctx.target)
    changed_files: list[str] = []
    for item in boot_files(system):
        text = item.fs.read_text(item.path)
        new_text, rewrites = rewrite_text(text, item.kind, {}, device_map, root, swap,
                                          partuuid_map=partuuid_map)
        if new_text != text:
            item.fs.write_text(item.path, new_text)
            changed_files.append(item.path)
            for rewrite in rewrites:
                ctx.change(item.label, "set", rewrite.old, rewrite.new)
        geometry_only = lilo.geometry_devices(new_text) if item.kind == "lilo" else set()
        for device in sorted(set(devrefs.unstable_devices(new_text))):
            if item.kind == "lilo" and (not lilo.is_partition_device(device)
                                        or device in geometry_only):
                continue
            ctx.warn(f"{item.label}: {device} still names a partition by kernel order; reseal "
                     "cannot tell which file system it meant here (open the disk image instead "
                     "of a directory, or use UUID=)")
    if fs.is_file("/etc/lilo.conf"):
        _report_lilo(ctx, "/etc/lilo.conf" in changed_files)


def _installed_lilo(ctx: OperationContext, config_text: str) -> LiloState | None:
    """The installed LILO as the disk holds it, or None for a directory target."""
    system = ctx.system
    assert isinstance(system, LinuxSystem)
    disk = raw_disk(ctx.target)
    if disk is None:
        return None
    return check_lilo(system, config_text, disk)


def _stale(state: LiloState) -> list[str]:
    problems = [f"boot sector ({state.boot}): {state.boot_status}"]
    problems += [f"image {image.label}: {image.status}" for image in state.images]
    return [p for p in problems if ": stale: " in p]


def _report_lilo(ctx: OperationContext, config_changed: bool) -> None:
    fs = ctx.system.fs
    text = fs.read_text("/etc/lilo.conf")
    config = lilo.parse_lilo(text)
    state = _installed_lilo(ctx, text)
    if state is not None and not state.installed:
        # lilo.conf without an installed LILO (another boot loader boots this disk): the
        # edits are right for the day `lilo` runs, and there is nothing to re-install now
        ctx.note(f"LILO: not installed on this disk ({state.boot_status}); lilo.conf "
                 f"{'updated' if config_changed else 'unchanged'}, nothing to re-install")
        return
    if state is None and not fs.exists(parse_lilo_sections(text).map):
        ctx.note("LILO: no map file, so `lilo` never ran here; lilo.conf "
                 f"{'updated' if config_changed else 'unchanged'}, nothing to re-install")
        return
    uuids_changed = bool(ctx.shared.get("linux:uuid-map"))
    stale = _stale(state) if state is not None else []
    if not (config_changed or uuids_changed or stale):
        ctx.note("LILO: configuration unchanged; its map still describes this disk as cloned")
        return
    ctx.shared[LILO_SHARED_KEY] = True
    reasons = (["lilo.conf changed"] if config_changed else []) + (
        ["file-system UUIDs changed"] if uuids_changed else []) + (
        [f"the installed map no longer matches this disk ({'; '.join(stale)})"] if stale else [])
    why = ", ".join(reasons)
    boot = config.boot or "(no boot= line)"
    if shutil.which("lilo") is None:
        ctx.warn(f"LILO must be re-installed before this clone boots with the new settings "
                 f"({why}): LILO reads lilo.conf only when `lilo` runs. Boot the clone (it still "
                 f"boots with its old map) or chroot into it and run `lilo` (boot={boot}); "
                 "there is no lilo binary on this host to do it offline")
    else:
        ctx.warn(f"LILO must be re-installed ({why}): run `lilo -r <mounted root>` with boot= "
                 f"pointing at this clone's disk (lilo.conf says {boot}); reseal does not write "
                 "boot sectors itself")


OPERATION = Operation(
    name="linux-bootloader",
    description="rewrite /dev/sdXN references in GRUB 2, GRUB legacy, LILO, systemd-boot, fstab "
    "and crypttab to UUID= forms; say when LILO must be re-installed",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
)
