"""Does the installed LILO still point at the sectors its files occupy now?

LILO's boot sector and map hold absolute disk sectors (see `reseal.linux.lilomap`). Here
they are compared with where the files really are: the map file and each kernel are opened
through GuestFS (so a link cannot lead out of the image), FIEMAP gives their blocks on the
partition, and the partition's start makes those absolute. Read-only throughout: the raw
disk is opened for reading, the file systems are the target's (read-only) mounts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reseal.errors import ResealError
from reseal.image.model import DiskLayout, LinuxSystem, Volume
from reseal.image.target import Target
from reseal.linux import lilomap
from reseal.linux.devrefs import partition_number
from reseal.linux.lilo import LiloImage, LiloSections, parse_lilo_sections
from reseal.linux.lilomap import LiloFormatError, ReadFn

SECTOR = lilomap.SECTOR
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
# extents whose bytes are not plainly at fe_physical (LILO could not have mapped them)
FIEMAP_UNPLACED = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400
FIEMAP_BATCH = 256
MAX_FIEMAP_CALLS = 4096
MAX_MAP_FILE = 16 << 20  # a map of a few dozen kernels is well under 1 MiB
WHOLE_DISK = re.compile(r"/dev/(?:(?:sd|hd|vd|xvd)[a-z]+|nvme\d+n\d+|mmcblk\d+)")
_UUID_ARGUMENT = re.compile(r"(?:^|\s)([\w.]+)=UUID=([0-9A-Fa-f-]{9,36})(?=\s|$)")


@dataclass
class LiloImageState:
    label: str  # the descriptor's name (lilo.conf label=)
    kernel: str | None  # image= path in lilo.conf, None when no section names it
    status: str  # "current", "stale: <why>", "cannot verify: <why>"
    sectors: int = 0  # kernel sectors the map lists
    initrd: str | None = None  # the initrd's status, when the image has one
    command_line: str | None = None  # what the map passes to the kernel (its options sector)


@dataclass
class LiloState:
    """Whether an installed LILO still points at the sectors its files occupy now."""

    boot: str  # where the first stage was looked for: "MBR", "partition 1 (sector 2048)"
    boot_status: str  # "current", "stale: <why>", "cannot verify: <why>"
    version: str | None = None  # "24.2", from the boot sector
    images: list[LiloImageState] = field(default_factory=list)

    @property
    def installed(self) -> bool:
        """A LILO boot sector is where lilo.conf says, with its map beside it: what the
        machine boots through (a "cannot verify" counts, since it may well be)."""
        return not (self.boot_status.startswith("stale: boot sector has no LILO")
                    or "LILO is not installed here" in self.boot_status)

    def command_line_uuids(self) -> dict[str, str]:
        """UUID (lower case) -> the image whose map command line names it (root=UUID=,
        resume=UUID=, ...): what the kernel gets from the map, whatever lilo.conf says now."""
        found: dict[str, str] = {}
        for image in self.images:
            for match in _UUID_ARGUMENT.finditer(image.command_line or ""):
                found.setdefault(match.group(2).lower(), image.label)
        return found


@dataclass(frozen=True)
class RawDisk:
    """The whole disk, read-only: what a check of absolute sectors needs from the target."""

    path: Path
    size: int
    layout: DiskLayout | None
    fs_uuids: frozenset[str] = frozenset()  # every file system's UUID found on it, lower case


def raw_disk(target: Target) -> RawDisk | None:
    """The target's whole disk with its file systems' UUIDs, or None (a directory target)."""
    if target.raw_path is None or target.layout is None:
        return None
    uuids = frozenset(v.uuid.lower() for v in target.volumes if v.uuid)
    return RawDisk(target.raw_path, target.layout.size, target.layout, uuids)


class _Unverifiable(Exception):
    """The check cannot be made (not stale, not current): the message says why."""


@dataclass(frozen=True)
class _PlacedFile:
    guest_path: str
    size: int
    lbas: list[int | None]  # absolute sector of each 512-byte sector; None for a hole


@dataclass
class _Context:
    read: ReadFn
    disk_sectors: int
    geometry: lilomap.Geometry | None
    map_file: _PlacedFile
    map_lbas: set[int]
    delta: int | None  # current - recorded sector of the map's descriptors, when known


def check_lilo(system: LinuxSystem, config_text: str, disk: RawDisk | None) -> LiloState:
    sections = parse_lilo_sections(config_text)
    if disk is None:
        return _unverified(sections, "boot sector", "a directory has no boot sector or map "
                           "sectors to compare (open the disk image)")
    boot_name, boot_lba = _boot_target(sections.boot, system, disk.layout)
    with open(disk.path, "rb") as stream:
        read = _reader(stream.fileno(), disk.size)
        try:
            return _check(system, sections, disk, read, boot_name, boot_lba)
        except _Unverifiable as exc:
            return _unverified(sections, boot_name, str(exc))
        except LiloFormatError as exc:
            return _unverified(sections, boot_name, exc.reason)
        except (ResealError, OSError, ValueError, struct.error) as exc:
            return _unverified(sections, boot_name, f"cannot read LILO's data ({exc})")


def _unverified(sections: LiloSections, boot: str, why: str) -> LiloState:
    return LiloState(boot=boot, boot_status=f"cannot verify: {why}", images=[
        LiloImageState(label=i.label, kernel=i.path, status=f"cannot verify: {why}")
        for i in sections.images])


def _reader(fd: int, size: int) -> ReadFn:
    def read(offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > size:
            raise LiloFormatError(f"read past the disk end at byte {offset}", "outside")
        return os.pread(fd, length, offset)

    return read


def _boot_target(boot: str | None, system: LinuxSystem,
                 layout: DiskLayout | None) -> tuple[str, int | None]:
    """boot=/dev/sda -> the MBR; boot=/dev/sda1 -> partition 1's first sector; no boot=
    -> the root file system's partition (LILO's default)."""
    if boot is None:
        part = system.volume.partition
        if part is None:
            return "root partition", None
        return f"root partition {part.index} (no boot= line)", part.start // SECTOR
    number = partition_number(boot)
    if number is None:
        if WHOLE_DISK.fullmatch(boot):
            return f"MBR ({boot})", 0
        return boot, None
    for part in layout.partitions if layout else ():
        if part.index == number:
            return f"partition {number} ({boot})", part.start // SECTOR
    return f"{boot}", None


def _check(system: LinuxSystem, sections: LiloSections, disk: RawDisk, read: ReadFn,
           boot_name: str, boot_lba: int | None) -> LiloState:
    disk_sectors = disk.size // SECTOR
    geometry = lilomap.geometry_from_mbr(read(0, SECTOR)) if disk_sectors else None
    map_bytes = _read_guest(system, sections.map, MAX_MAP_FILE)
    try:
        map_file = _place(system, sections.map, MAX_MAP_FILE)
    except FileNotFoundError as exc:
        raise _Unverifiable(f"{sections.map}: no such file (LILO's map)") from exc
    labels = tuple(n for i in sections.images for n in (i.label, i.alias) if n)
    try:
        table = lilomap.parse_descriptors(map_bytes[:(lilomap.MAX_DESCR_SECTORS + 2) * SECTOR],
                                          labels)
    except LiloFormatError as exc:
        raise _Unverifiable(f"{sections.map}: {exc.reason}") from exc
    ctx = _Context(read, disk_sectors, geometry, map_file,
                   {lba for lba in map_file.lbas if lba is not None}, None)
    ctx.delta = _recorded_delta(ctx, map_bytes, table.sectors)
    state = LiloState(boot=boot_name, boot_status="")
    state.boot_status, state.version = _boot_status(ctx, map_bytes, table.sectors, boot_lba,
                                                    sections.map)
    by_name = {}
    for image in sections.images:
        by_name[image.label] = image
        if image.alias:
            by_name[image.alias] = image
    zero_lba = _lba_of(map_file, table.sectors + 1)
    for descriptor in table.images:
        image_state = _image_state(ctx, descriptor, by_name.get(descriptor.name), system,
                                   zero_lba, sections.map)
        _check_command_line(image_state, by_name.get(descriptor.name), disk)
        state.images.append(image_state)
    return state


def _check_command_line(state: LiloImageState, image: LiloImage | None, disk: RawDisk) -> None:
    """The kernel gets the map's command line, not lilo.conf's: a root=UUID= there that no
    file system on this disk has, or that lilo.conf no longer names, makes the map stale."""
    line = state.command_line
    if line is None or state.status.startswith(("stale", "cannot verify")):
        return
    problems = []
    for match in _UUID_ARGUMENT.finditer(line):
        key, value = match.group(1), match.group(2).lower()
        if disk.fs_uuids and value not in disk.fs_uuids:
            problems.append(f"its command line passes {key}=UUID={value}, and no file system "
                            "on this disk has that UUID")
    conf_root = (image.root or "") if image else ""
    map_root = next((m.group(2).lower() for m in _UUID_ARGUMENT.finditer(line)
                     if m.group(1) == "root"), None)
    if conf_root.upper().startswith("UUID=") and map_root and \
            conf_root[5:].lower() != map_root:
        problems.append(f"lilo.conf says root={conf_root}, the map still passes "
                        f"root=UUID={map_root}")
    if problems:
        state.status = f"stale: {'; '.join(problems)} (run lilo)"


def _lba_of(placed: _PlacedFile, sector: int) -> int | None:
    return placed.lbas[sector] if 0 <= sector < len(placed.lbas) else None


def _recorded_delta(ctx: _Context, map_bytes: bytes, descr_sectors: int) -> int | None:
    """How far the map's own recorded address of descriptor sector 1 is from where that
    sector is now (the keytable, the map's last sector, records it)."""
    if len(map_bytes) < SECTOR * (descr_sectors + 3):
        return None
    try:
        recorded = lilomap.keytable_descriptor_addresses(map_bytes[-SECTOR:], descr_sectors)
        address, _ = lilomap.decode_address(recorded[0], geometry=ctx.geometry)
    except LiloFormatError:
        return None
    now = _lba_of(ctx.map_file, 1)
    if address.lba is None or now is None:
        return None
    return now - address.lba


def _moved(ctx: _Context) -> str:
    if ctx.delta:
        return (f"LILO's addresses are {abs(ctx.delta)} sectors "
                f"{'before' if ctx.delta > 0 else 'after'} where its files are now "
                "(the partition moved)")
    return ""


def _boot_status(ctx: _Context, map_bytes: bytes, descr_sectors: int, boot_lba: int | None,
                 map_path: str) -> tuple[str, str | None]:
    if boot_lba is None:
        return "cannot verify: boot= names no partition of this disk", None
    try:
        first = lilomap.parse_first_stage(ctx.read(boot_lba * SECTOR, SECTOR), ctx.geometry)
    except LiloFormatError as exc:
        return f"cannot verify: {exc.reason}", None
    if first is None:
        return "stale: boot sector has no LILO", None
    version = first.version_text
    second_at = (descr_sectors + 2) * SECTOR
    try:
        second = lilomap.parse_second_stage(map_bytes[second_at:second_at + SECTOR])
    except LiloFormatError as exc:
        return f"stale: {map_path}: {exc.reason}", version
    if second.map_stamp != first.map_stamp:
        return "stale: boot sector points at a different map (map time stamps differ)", version
    try:
        index_lba = lilomap.locate(first.index, ctx.disk_sectors)
    except LiloFormatError as exc:
        return _format_status(exc, "boot sector"), version
    if index_lba not in ctx.map_lbas:
        return (f"stale: boot sector points at a different map (sector {index_lba} is not in "
                f"{map_path}){'; ' + _moved(ctx) if ctx.delta else ''}"), version
    try:
        _, loader = lilomap.read_index(ctx.read, ctx.disk_sectors, first, ctx.geometry)
    except LiloFormatError as exc:
        return _format_status(exc, "second-stage index"), version
    if any(lba not in ctx.map_lbas for lba in loader):
        return f"stale: second-stage loader sectors are not in {map_path}", version
    try:
        keytable, _ = lilomap.decode_address(second.keytable, geometry=ctx.geometry)
        keytable_lba = lilomap.locate(keytable, ctx.disk_sectors)
    except LiloFormatError as exc:
        return _format_status(exc, "second-stage keytable address"), version
    if keytable_lba != ctx.map_file.lbas[-1]:
        return (f"stale: the second stage's keytable address (sector {keytable_lba}) is not "
                f"the last sector of {map_path}"), version
    if ctx.delta is None:
        return (f"stale: {map_path}: the keytable sector holds no valid descriptor "
                "addresses"), version
    if ctx.delta:
        return f"stale: {_moved(ctx)}", version
    return "current", version


def _format_status(exc: LiloFormatError, what: str) -> str:
    if exc.kind in ("chs", "raid"):
        return f"cannot verify: {exc.reason}"
    if exc.kind == "outside":
        return f"stale: {what} points outside the disk ({exc.reason})"
    return f"stale: {what}: {exc.reason}"


def _image_state(ctx: _Context, descriptor: lilomap.ImageDescriptor, image: LiloImage | None,
                 system: LinuxSystem, zero_lba: int | None, map_path: str) -> LiloImageState:
    state = LiloImageState(label=descriptor.name, kernel=image.path if image else None,
                           status="")
    if not descriptor.is_kernel:
        state.status = "cannot verify: not a kernel (other= loader)"
        return state
    section, status = _section(ctx, descriptor.start, "kernel", map_path)
    if section is None:
        state.status = status
        return state
    listed = section.sectors()
    state.sectors = max(0, len(listed) - 2)
    if len(listed) >= 2:
        state.command_line = _command_line(ctx, listed[1])
    if image is None:
        state.status = f"cannot verify: no image= section in lilo.conf is labelled {descriptor.name}"
        return state
    state.status = _compare(ctx, system, image.path, listed[2:], zero_lba, "kernel")
    if descriptor.initrd is not None:
        if image.initrd is None:
            state.initrd = "cannot verify: the map has an initrd, lilo.conf names none"
        else:
            initrd, status = _section(ctx, descriptor.initrd, "initrd", map_path)
            state.initrd = status if initrd is None else _compare(
                ctx, system, image.initrd, initrd.sectors(), zero_lba, "initrd")
    return state


def _command_line(ctx: _Context, lba: int) -> str | None:
    """The options sector: the kernel command line `lilo` built (NUL-terminated text)."""
    if not 0 <= lba < ctx.disk_sectors:
        return None
    raw = ctx.read(lba * SECTOR, SECTOR).split(b"\0", 1)[0]
    return raw.decode("latin-1")


def _section(ctx: _Context, start: bytes, what: str,
             map_path: str) -> tuple[lilomap.MapSection | None, str]:
    try:
        address, _ = lilomap.decode_address(start, geometry=ctx.geometry)
        first = lilomap.locate(address, ctx.disk_sectors)
        if first not in ctx.map_lbas:
            why = _moved(ctx) or f"map file {map_path} was moved or rewritten"
            return None, f"stale: the {what}'s sector list (sector {first}) is not in {map_path}: {why}"
        return lilomap.read_map_section(ctx.read, ctx.disk_sectors, start,
                                        geometry=ctx.geometry), ""
    except LiloFormatError as exc:
        if exc.kind == "outside":
            return None, f"stale: map points outside the disk ({exc.reason})"
        return None, _format_status(exc, f"{what} map")


def _compare(ctx: _Context, system: LinuxSystem, path: str, listed: list[int],
             zero_lba: int | None, what: str) -> str:
    try:
        placed = _place(system, path, lilomap.MAX_SECTION_SECTORS * SECTOR)
    except FileNotFoundError:
        return f"stale: {what} file {path} no longer exists"
    except _Unverifiable as exc:
        return f"cannot verify: {exc}"
    if len(listed) != len(placed.lbas):
        return (f"stale: {what} size changed (the map lists {len(listed)} sectors, "
                f"{path} has {len(placed.lbas)})")
    wrong = [n for n, (old, now) in enumerate(zip(listed, placed.lbas, strict=True))
             if old != (zero_lba if now is None else now)]
    if not wrong:
        return "current"
    offsets = {(placed.lbas[n] or 0) - listed[n] for n in wrong if placed.lbas[n] is not None}
    if len(wrong) == len(listed) and len(offsets) == 1 and ctx.delta in offsets:
        return f"stale: {_moved(ctx)}"
    return (f"stale: {what} moved ({len(wrong)} of {len(listed)} sectors are elsewhere now, "
            f"first at file sector {wrong[0]}: the map says {listed[wrong[0]]}, {path} is at "
            f"{placed.lbas[wrong[0]]})")


# ------------------------------------------------------------------ where a file is
def _host_path(system: LinuxSystem, guest_path: str) -> Path:
    try:
        return system.fs.resolve(guest_path)
    except ResealError as exc:
        raise _Unverifiable(f"{guest_path}: {exc}") from exc


def _read_guest(system: LinuxSystem, guest_path: str, limit: int) -> bytes:
    try:
        if not system.fs.exists(guest_path):
            raise _Unverifiable(f"LILO is not installed here: {guest_path} does not exist "
                                "(`lilo` has never run on this system)")
        if not system.fs.is_file(guest_path):  # a FIFO would block a read
            raise _Unverifiable(f"{guest_path}: not a regular file (LILO's map)")
        return system.fs.read_bytes(guest_path, limit=limit)
    except (ResealError, OSError) as exc:
        raise _Unverifiable(f"{guest_path}: cannot read it ({exc})") from exc


def _volume_of(system: LinuxSystem, st_dev: int) -> Volume | None:
    for volume in (system.volume, *system.extra_volumes.values()):
        if volume.fs is None:
            continue
        with contextlib.suppress(OSError):
            if os.stat(volume.fs.root).st_dev == st_dev:
                return volume
    return None


@contextlib.contextmanager
def _open_file(host: Path) -> Iterator[int]:
    """O_NOFOLLOW: GuestFS resolved every link already; O_NONBLOCK: a FIFO cannot hang us."""
    fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _place(system: LinuxSystem, guest_path: str, limit: int) -> _PlacedFile:
    """The absolute disk sector of each 512-byte sector of a guest file (FIEMAP)."""
    host = _host_path(system, guest_path)
    try:
        with _open_file(host) as fd:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
                raise _Unverifiable(f"{guest_path}: not a regular file of at most {limit} bytes")
            volume = _volume_of(system, st.st_dev)
            if volume is None or volume.partition is None:
                raise _Unverifiable(f"{guest_path}: not on a partition of this disk")
            extents = _fiemap(fd, st.st_size, guest_path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _Unverifiable(f"{guest_path}: cannot open it ({exc.strerror})") from exc
    base = volume.partition.start
    count = (st.st_size + SECTOR - 1) // SECTOR
    lbas: list[int | None] = [None] * count
    for logical, physical, length in extents:
        if logical % SECTOR or physical % SECTOR:
            raise _Unverifiable(f"{guest_path}: extent not sector-aligned")
        first = logical // SECTOR
        for n in range(first, min(count, first + (length + SECTOR - 1) // SECTOR)):
            lbas[n] = (base + physical) // SECTOR + n - first
    return _PlacedFile(guest_path, st.st_size, lbas)


def _fiemap(fd: int, size: int, guest_path: str) -> list[tuple[int, int, int]]:
    """(logical, physical, length) in bytes, physical relative to the file system's device."""
    extents: list[tuple[int, int, int]] = []
    start = 0
    for _ in range(MAX_FIEMAP_CALLS):
        if start >= size:
            return extents
        request = bytearray(32 + 56 * FIEMAP_BATCH)
        struct.pack_into("<QQIIII", request, 0, start, size - start, FIEMAP_FLAG_SYNC, 0,
                         FIEMAP_BATCH, 0)
        try:
            fcntl.ioctl(fd, FS_IOC_FIEMAP, request, True)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
                raise _Unverifiable(f"{guest_path}: the file system does not report block "
                                    "positions (FIEMAP)") from exc
            raise
        mapped = struct.unpack_from("<I", request, 20)[0]
        if mapped == 0:
            return extents
        last = False
        for n in range(min(mapped, FIEMAP_BATCH)):
            logical, physical, length = struct.unpack_from("<QQQ", request, 32 + 56 * n)
            flags = struct.unpack_from("<I", request, 32 + 56 * n + 40)[0]
            if flags & FIEMAP_UNPLACED:
                raise _Unverifiable(f"{guest_path}: extent at byte {logical} has no plain "
                                    f"disk position (FIEMAP flags {flags:#x})")
            extents.append((logical, physical, length))
            start = max(start, logical + length)
            last = last or bool(flags & FIEMAP_EXTENT_LAST)
        if last:
            return extents
    raise _Unverifiable(f"{guest_path}: too many extents")
