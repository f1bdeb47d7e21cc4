"""linux-fs-uuids (off by default): new file-system UUIDs, and every reference follows.

Clones sharing file-system UUIDs confuse any host that sees two of them at once (a disk
attached to repair another, LVM/mdadm scans, `by-uuid` links). The image layer takes the
volumes offline (unmounted, loop device kept), the host's tune2fs / xfs_admin / btrfstune /
swaplabel change the UUIDs, the volumes are mounted back, and fstab, crypttab, grub.cfg (/boot
and ESP), /etc/default/grub, menu.lst, lilo.conf, systemd-boot entries and resume settings are
rewritten. The old UUIDs go into the undo journal first, so `reseal undo` sets them back.

Initrds that name a changed UUID in a text member (initramfs-tools' RESUME=, cryptsetup's
crypttab, dracut's cmdline.d) are rewritten offline by reseal's own cpio code, recompressed as
they were; without that the clone would wait ~30 s on every boot for the old swap.

Some holders are not text reseal can rewrite, and the file system they name keeps its UUID,
with a warning: GRUB's installed boot code (an embedded `search.fs_uuid`, kept as load.cfg
beside core.img, or the UUID in the boot sectors, the BIOS boot partition or an EFI binary;
a changed UUID would stop the clone at `grub rescue>`), the command lines in an installed
LILO's map (the kernel would not find its root), an initrd that names the UUID elsewhere than
in a text member or whose sectors LILO's map lists, and (for swap) an initrd reseal cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reseal.errors import ResealError
from reseal.image import parttypes
from reseal.image.fsprobe import probe
from reseal.image.fsuuid import EXT, UUID_CAPABLE, UuidChange, missing_tools, set_fs_uuid
from reseal.image.guestfs import GuestFS
from reseal.image.model import LinuxSystem, OSFamily, Volume
from reseal.image.target import Target
from reseal.linux.bootrefs import boot_files, rewrite_text
from reseal.linux.initrd import InitrdError
from reseal.linux.initrdrefs import InitrdScan, initrd_files, rewrite_initrd, scan_initrd
from reseal.linux.lilo import parse_lilo_sections
from reseal.linux.lilocheck import LiloState, check_lilo, raw_disk
from reseal.operations._linux_support import new_uuid, preflight
from reseal.operations.base import IdentityRequest, Operation, OperationContext

ORDER = 24
SHARED_KEY = "linux:uuid-map"
MBR_GAP = 1 << 20  # sectors before the first partition, where GRUB embeds core.img on MBR
GRUB_PLATFORM_DIRS = ("/boot/grub", "/boot/grub2")
MAX_EFI_BINARY = 64 << 20


@dataclass
class FsUuidOptions:
    # ext4 with metadata_csum: add the metadata_csum_seed feature instead of rewriting every
    # checksum (fast), but the clone then needs kernel >= 4.4 and GRUB >= 2.12 to read it.
    allow_csum_seed: bool = False


def validate(request: IdentityRequest, options: Any) -> None:
    return None


@dataclass(frozen=True)
class PlannedChange:
    volume: Volume
    old: str
    new: str


def apply(ctx: OperationContext) -> None:
    options = ctx.options if isinstance(ctx.options, FsUuidOptions) else FsUuidOptions()
    preflight(ctx)
    target = ctx.target
    candidates = [v for v in target.volumes if v.fstype in UUID_CAPABLE and v.uuid]
    if target.kind == "directory" or target.offline_switch is None:
        ctx.warn("file-system UUIDs can only be changed on an opened disk image or device "
                 f"(the target is a {target.kind}); nothing changed")
        return
    holders = _holders(ctx, candidates) if candidates else _Holders()
    plan = [PlannedChange(v, v.uuid, new_uuid(ctx)) for v in candidates
            if _may_change(ctx, v, holders)]
    if not plan:
        return
    if not ctx.dry_run:
        plan = _change(ctx, plan, options)
    uuid_map = {}
    for item in plan:
        uuid_map[item.old] = item.new
        ctx.change(f"{item.volume.key}:{item.volume.fstype}", "set", item.old, item.new)
        ctx.identity(f"fs-uuid:{item.volume.key}", item.old, item.new)
    ctx.shared[SHARED_KEY] = uuid_map
    if uuid_map:
        _follow(ctx, uuid_map)
        _follow_initrds(ctx, uuid_map, holders.initrds)


@dataclass
class _Holders:
    """What names file systems by UUID in a form reseal cannot rewrite as text."""

    boot_code: list[tuple[str, bytes]] = field(default_factory=list)  # GRUB, lower-cased
    lilo_map: dict[str, str] = field(default_factory=dict)  # uuid -> LILO image label
    lilo_boot: str = ""  # where the installed LILO is
    initrds: list[InitrdScan] = field(default_factory=list)


def _holders(ctx: OperationContext, candidates: list[Volume]) -> _Holders:
    system = ctx.system
    assert isinstance(system, LinuxSystem)
    holders = _Holders(boot_code=_boot_code(ctx))
    lilo_initrds: set[str] = set()
    if system.fs.is_file("/etc/lilo.conf"):
        state = _installed_lilo(ctx)
        if state is not None and state.installed:
            holders.lilo_map = state.command_line_uuids()
            holders.lilo_boot = state.boot
            config = parse_lilo_sections(system.fs.read_text("/etc/lilo.conf"))
            lilo_initrds = {image.initrd for image in config.images if image.initrd}
    uuids = [v.uuid.lower() for v in candidates]
    for fs, path in initrd_files(system):
        scan = scan_initrd(fs, path, uuids)
        if path in lilo_initrds:  # LILO's map lists its sectors: rewriting it moves them
            for uuid, members in scan.rewritable.items():
                scan.fixed.setdefault(uuid, []).extend(
                    f"{m} (LILO's map points at this initrd's sectors)" for m in members)
            scan.rewritable = {}
        holders.initrds.append(scan)
    return holders


def _installed_lilo(ctx: OperationContext) -> LiloState | None:
    system = ctx.system
    assert isinstance(system, LinuxSystem)
    disk = raw_disk(ctx.target)
    if disk is None:
        return None
    return check_lilo(system, system.fs.read_text("/etc/lilo.conf"), disk)


def _may_change(ctx: OperationContext, volume: Volume, holders: _Holders) -> bool:
    missing = missing_tools(volume.fstype)
    if missing:
        ctx.warn(f"{volume.key}: {', '.join(missing)} not installed on this host; its UUID "
                 f"{volume.uuid} stays")
        return False
    uuid = volume.uuid.lower()
    rerun = "then `reseal generalize --operations linux-fs-uuids` again"
    holder = next((label for label, data in holders.boot_code if uuid.encode() in data), "")
    if holder:
        ctx.warn(f"{volume.key}: its UUID {volume.uuid} stays: GRUB's installed boot code finds "
                 f"the file system by it ({holder}), and that code is not text reseal can "
                 f"rewrite; run grub-install in the clone, {rerun}")
        return False
    image = holders.lilo_map.get(uuid)
    if image is not None:
        ctx.warn(f"{volume.key}: its UUID {volume.uuid} stays: the installed LILO "
                 f"({holders.lilo_boot}) passes it to the kernel from its map (image {image}), "
                 f"which only `lilo` can rewrite; run lilo in the clone, {rerun}")
        return False
    for scan in holders.initrds:
        if scan.error is not None and volume.fstype == "swap":
            ctx.warn(f"{volume.key}: its UUID {volume.uuid} stays: {scan.label} cannot be read "
                     f"({scan.error}), so reseal cannot tell whether its resume setting names "
                     f"this swap; rebuild the initrd in the clone, {rerun}")
            return False
        where = scan.fixed.get(uuid)
        if where:
            ctx.warn(f"{volume.key}: its UUID {volume.uuid} stays: {scan.label} names it in "
                     f"{', '.join(where[:3])}, which reseal cannot rewrite; rebuild the initrd "
                     f"in the clone (update-initramfs -u / dracut -f), {rerun}")
            return False
    return True


def _change(ctx: OperationContext, plan: list[PlannedChange], options: FsUuidOptions
            ) -> list[PlannedChange]:
    """Journal every old UUID, take the volumes offline, change them, read them back."""
    journal = ctx.target.options.journal
    for item in plan:
        if journal is not None:
            journal.record_fs_uuid(item.volume.key, item.volume.fstype, item.old)
    done: list[PlannedChange] = []
    with ctx.target.offline([item.volume for item in plan]):
        for item in plan:
            volume = item.volume
            where = f"{ctx.target.source} {volume.key}"
            undo_file = None
            if journal is not None and volume.fstype in EXT:
                undo_file = journal.directory / f"{volume.key}-tune2fs.e2undo"
            try:
                set_fs_uuid(UuidChange(volume.device, volume.fstype, item.new, where,
                                       csum_seed=options.allow_csum_seed, undo_file=undo_file))
            except ResealError as exc:
                ctx.warn(f"{exc}; {volume.key} keeps UUID {item.old} and its references stay")
                continue
            found = _uuid_on(volume)
            if found != item.new:
                ctx.warn(f"{volume.key}: after the change the file system reports UUID "
                         f"{found or '(none)'}, not {item.new}; references left as they were")
                continue
            volume.uuid = item.new
            done.append(item)
            if undo_file is not None:
                ctx.note(f"{volume.key}: the blocks tune2fs rewrote are saved in {undo_file} "
                         "(`e2undo` reverses an interrupted change; `reseal undo` needs only "
                         "the journal)")
    return done


def _uuid_on(volume: Volume) -> str:
    """The UUID the superblock now holds, read back from the device by reseal's own prober."""
    assert volume.partition is not None
    with open(volume.device, "rb") as device:
        def read(offset: int, length: int) -> bytes:
            device.seek(offset)
            return device.read(length)

        return probe(read, volume.partition.size).uuid


def _boot_code(ctx: OperationContext) -> list[tuple[str, bytes]]:
    """GRUB boot code that may name a file system by UUID, lower-cased, read once per run:
    load.cfg (embedded in core.img), the raw boot areas, and EFI binaries on FAT volumes."""
    system = ctx.system
    assert isinstance(system, LinuxSystem)
    found: list[tuple[str, bytes]] = []
    for base in GRUB_PLATFORM_DIRS:
        for platform in _safe_listdir(system.fs, base):
            path = f"{base}/{platform}/load.cfg"
            data = _read_lower(system.fs, path, 1 << 20)
            if data is not None:
                found.append((f"{path}, embedded in core.img", data))
    found += [(label, data.lower()) for label, data in _raw_areas(ctx.target)]
    for volume in ctx.target.volumes:
        if volume.fstype != "vfat" or volume.fs is None or not volume.fs.is_dir("/EFI"):
            continue
        for top, _dirs, files in volume.fs.walk("/EFI"):
            for name in (n for n in files if n.lower().endswith(".efi")):
                path = f"{top.rstrip('/')}/{name}"
                data = _read_lower(volume.fs, path, MAX_EFI_BINARY)
                if data is not None:
                    found.append((f"{volume.key}:{path}", data))
    return found


def _raw_areas(target: Target) -> list[tuple[str, bytes]]:
    """The MBR gap and any BIOS boot partition: where GRUB's i386-pc core.img lives."""
    if target.raw_path is None or target.layout is None:
        return []
    areas = []
    with open(target.raw_path, "rb") as disk:
        first = min((p.start for p in target.layout.partitions), default=MBR_GAP)
        areas.append(("the boot sectors before the first partition", disk.read(min(first,
                                                                                 MBR_GAP))))
        for part in target.layout.partitions:
            if part.type_id == parttypes.BIOS_BOOT.ident and part.size <= 16 << 20:
                disk.seek(part.start)
                areas.append((f"BIOS boot partition {part.index}", disk.read(part.size)))
    return areas


def _safe_listdir(fs: GuestFS, path: str) -> list[str]:
    try:
        return fs.listdir(path) if fs.is_dir(path) else []
    except ResealError:
        return []


def _read_lower(fs: GuestFS, path: str, limit: int) -> bytes | None:
    try:
        return fs.read_bytes(path, limit=limit).lower() if fs.is_file(path) else None
    except (ResealError, OSError):
        return None


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


def _follow_initrds(ctx: OperationContext, uuid_map: dict[str, str],
                    scans: list[InitrdScan]) -> None:
    """Rewrite the old UUIDs inside each initrd that names them (resume, crypttab, cmdline.d);
    say plainly what each initrd now holds."""
    lowered = {old.lower(): new for old, new in uuid_map.items()}
    for scan in scans:
        if scan.error is not None:
            ctx.warn(f"{scan.label}: cannot be read ({scan.error}); if it names a file system "
                     "by UUID (resume, crypttab, a host-only root), rebuild it in the clone")
            continue
        named = sorted(set(lowered) & set(scan.rewritable))
        if not named:
            continue
        if ctx.dry_run:
            for uuid in named:
                ctx.change(f"{scan.label} ({', '.join(scan.rewritable[uuid])})", "set", uuid,
                           lowered[uuid])
            continue
        try:
            done = rewrite_initrd(scan.fs, scan.path, uuid_map)
        except InitrdError as exc:
            ctx.warn(f"{scan.label}: could not be rewritten ({exc}); it still names "
                     f"{', '.join(named)}: rebuild it in the clone (update-initramfs -u / "
                     "dracut -f) before the next boot, or it waits for the old devices")
            continue
        for member, rewrite in done:
            ctx.change(f"{scan.label} ({member})", "set", rewrite.old, rewrite.new)
        ctx.note(f"{scan.label}: the new UUIDs written into "
                 f"{', '.join(sorted({m for m, _ in done}))}, recompressed as before; the clone "
                 "boots without waiting for the old devices")


OPERATION = Operation(
    name="linux-fs-uuids",
    description="give the Linux file systems new UUIDs (offline, with the host's tune2fs, "
    "xfs_admin, btrfstune, swaplabel) and rewrite fstab, crypttab, GRUB, LILO and resume "
    "references to follow",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=FsUuidOptions,
)
