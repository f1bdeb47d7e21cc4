"""linux-fs-uuids (off by default): new file-system UUIDs, and every reference follows.

Clones sharing file-system UUIDs confuse any host that sees two of them at once (a disk
attached to repair another, LVM/mdadm scans, `by-uuid` links). The UUIDs are changed with the
host's tune2fs / xfs_admin / btrfstune / swaplabel on the attached partitions, then fstab,
crypttab, grub.cfg (/boot and ESP), /etc/default/grub, menu.lst, lilo.conf, systemd-boot
entries and resume settings are rewritten. A directory target has no devices: nothing to do.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from reseal.image.model import LinuxSystem, OSFamily, Volume
from reseal.linux.bootrefs import boot_files, rewrite_text
from reseal.linux.guest import new_uuid, preflight
from reseal.operations.base import IdentityRequest, Operation, OperationContext

ORDER = 24
SHARED_KEY = "linux:uuid-map"
SUPPORTED = ("ext2", "ext3", "ext4", "xfs", "btrfs", "swap")


@dataclass
class FsUuidOptions:
    # ext4 with metadata_csum cannot change its UUID while mounted unless it gets the
    # metadata_csum_seed feature; that needs kernel >= 4.4 and GRUB >= 2.12 in the clone.
    allow_csum_seed: bool = False


def validate(request: IdentityRequest, options: Any) -> None:
    return None


def _command(volume: Volume, uuid: str, options: FsUuidOptions) -> list[str]:
    if volume.fstype in ("ext2", "ext3", "ext4"):
        extra = ["-O", "metadata_csum_seed"] if options.allow_csum_seed else []
        return ["tune2fs", *extra, "-U", uuid, volume.device]
    if volume.fstype == "xfs":
        return ["xfs_admin", "-U", uuid, volume.device]
    if volume.fstype == "btrfs":
        return ["btrfstune", "-f", "-U", uuid, volume.device]
    return ["swaplabel", "-U", uuid, volume.device]


def apply(ctx: OperationContext) -> None:
    options = ctx.options if isinstance(ctx.options, FsUuidOptions) else FsUuidOptions()
    preflight(ctx)
    candidates = [v for v in ctx.target.volumes if v.fstype in SUPPORTED and v.uuid]
    if ctx.target.kind == "directory" or not any(v.device for v in candidates):
        ctx.warn("file-system UUIDs can only be changed on an opened disk image or device "
                 f"(the target is a {ctx.target.kind}); nothing changed")
        return
    uuid_map: dict[str, str] = {}
    for volume in candidates:
        if not volume.device:
            ctx.warn(f"{volume.key}: not attached, its UUID {volume.uuid} stays")
            continue
        new = new_uuid(ctx)
        argv = _command(volume, new, options)
        tool = shutil.which(argv[0])
        if tool is None:
            ctx.warn(f"{volume.key}: {argv[0]} is not installed on this host; UUID unchanged")
            continue
        if not ctx.dry_run:
            done = subprocess.run([tool, *argv[1:]], capture_output=True, text=True,
                                  timeout=300, check=False)
            if done.returncode != 0:
                reason = " ".join((done.stderr or done.stdout).split())[:300]
                ctx.warn(f"{volume.key} ({volume.fstype}): {argv[0]} refused to change the UUID: "
                         f"{reason}; references left as they were")
                continue
        uuid_map[volume.uuid] = new
        ctx.change(f"{volume.key}:{volume.fstype}", "set", volume.uuid, new)
        ctx.identity(f"fs-uuid:{volume.key}", volume.uuid, new)
        if not ctx.dry_run:
            volume.uuid = new
    ctx.shared[SHARED_KEY] = uuid_map
    if uuid_map:
        _follow(ctx, uuid_map)


def _follow(ctx: OperationContext, uuid_map: dict[str, str]) -> None:
    system = ctx.system
    assert isinstance(system, LinuxSystem)
    for item in boot_files(system):
        text = item.fs.read_text(item.path)
        new_text, rewrites = rewrite_text(text, item.kind, uuid_map, {}, None, None)
        if new_text != text:
            item.fs.write_text(item.path, new_text)
            for rewrite in rewrites:
                ctx.change(item.label, "set", rewrite.old, rewrite.new)
    if system.fs.is_dir("/etc/initramfs-tools") or system.fs.is_dir("/etc/dracut.conf.d"):
        ctx.note("an initramfs may hold the old root/resume UUIDs: rebuild it in the clone "
                 "(update-initramfs -u / dracut -f) if it was built host-only")


OPERATION = Operation(
    name="linux-fs-uuids",
    description="give the Linux file systems new UUIDs and rewrite fstab, crypttab, GRUB, "
    "LILO and resume references to follow",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=FsUuidOptions,
)
