"""Build a disk image with a LILO install in it, the way `lilo` would leave it.

There is no lilo binary to run, so this writes LILO's on-disk structures itself, from the
struct definitions in LILO 23.2/24.x (common.h: BOOT_PARAMS_1/2, IMAGE_DESCR, MENUTABLE;
map.c: chained map sections; bsect.c: map file order). The file blocks come from an
independent tool: `debugfs -R "blocks PATH"` on the file system image. This module is kept
apart from reseal's decoder on purpose: it encodes, bit by bit, what the decoder decodes.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
SECTOR = 512
VERSION = (24, 2)
MAP_STAMP = 0x5F3A1B2C
PASS160_ENTRY = 54  # name 16 + 5 password longwords + rd_size + initrd + start + flags + vga
CRC_ENTRY = 42  # same with 2 CRC-32 longwords
FLAG_KERNEL, FLAG_MODKRN, FLAG_LOADHI = 16, 8, 256
LBA32_ADDR_DEVICE = 0x80 | 0x20 | 0x40  # BIOS 0x80, LBA32, no count
LBA32_COUNTED_DEVICE = 0x80 | 0x20
SECOND_STAGE_SECTORS = 2


def bitwise_crc32(data: bytes) -> int:
    """LILO common.c crc32partial(), bit by bit as written there (accumulator 0)."""
    crc = 0xFFFFFFFF
    for ch in data:
        for i in range(8):
            poly = 0x04C11DB7 if ((crc >> 31) ^ (ch >> (7 - i))) & 1 else 0
            crc = ((crc << 1) & 0xFFFFFFFF) ^ poly
    return crc ^ 0xFFFFFFFF


def run(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@dataclass
class KernelSpec:
    label: str
    path: str  # guest path
    size: int
    initrd: str | None = None
    initrd_size: int = 0


@dataclass
class LiloFs:
    """An ext4 image (the future partition) with LILO's map written into it."""

    fs_image: Path
    block_size: int
    kernels: list[KernelSpec]
    map_path: str = "/boot/map"
    dsecs: int = 3
    entry_size: int = PASS160_ENTRY
    compact: bool = False
    files: dict[str, bytes] = field(default_factory=dict)


def fs_blocks(fs_image: Path, guest_path: str) -> list[int]:
    """The file's blocks in order, as debugfs lists them."""
    out = run("debugfs", "-R", f"blocks {guest_path}", str(fs_image))
    return [int(word) for word in out.split()]


def block_size(fs_image: Path) -> int:
    out = run("debugfs", "-R", "stats", str(fs_image))
    for line in out.splitlines():
        if line.startswith("Block size:"):
            return int(line.split(":")[1])
    raise RuntimeError("no block size in debugfs stats")


def file_sectors(fs: LiloFs, guest_path: str, part_start: int) -> list[int]:
    """Absolute 512-byte sectors of a file (no holes in these test files)."""
    per_block = fs.block_size // SECTOR
    size = len(fs.files[guest_path])
    sectors = [part_start + block * per_block + n for block in fs_blocks(fs.fs_image, guest_path)
               for n in range(per_block)]
    return sectors[:(size + SECTOR - 1) // SECTOR]


def make_fs(workdir: Path, kernels: list[KernelSpec], *, size_mib: int = 40, dsecs: int = 3,
            entry_size: int = PASS160_ENTRY, compact: bool = False, seed: int = 1,
            boot: str = "/dev/sda") -> LiloFs:
    """mkfs.ext4 -d with /etc, the kernels, initrds and a /boot/map of its final size."""
    root = workdir / "tree"
    shutil.rmtree(root, ignore_errors=True)
    (root / "etc").mkdir(parents=True)
    (root / "boot").mkdir()
    files: dict[str, bytes] = {}
    rng = _Random(seed)
    conf = [f"boot = {boot}", "map = /boot/map", "lba32", "prompt", "timeout = 50"]
    for spec in kernels:
        files[spec.path] = rng.bytes(spec.size)
        conf += [f"image = {spec.path}", f"  label = {spec.label}", "  root = /dev/sda1",
                 "  read-only"]
        if spec.initrd:
            files[spec.initrd] = rng.bytes(spec.initrd_size)
            conf.append(f"  initrd = {spec.initrd}")
    fs = LiloFs(workdir / "fs.img", 0, kernels, dsecs=dsecs, entry_size=entry_size,
                compact=compact, files=files)
    files["/boot/map"] = rng.bytes(map_sectors(fs) * SECTOR)  # placeholder, not sparse
    files["/etc/lilo.conf"] = ("\n".join(conf) + "\n").encode()
    files["/etc/os-release"] = b'NAME="Slackware"\nVERSION_ID=15.0\n'
    files["/etc/fstab"] = b"/dev/sda1 / ext4 defaults 0 1\n"
    for guest, data in files.items():
        (root / guest.lstrip("/")).write_bytes(data)
    with open(fs.fs_image, "wb") as handle:
        handle.truncate(size_mib * MIB)
    run("mkfs.ext4", "-q", "-F", "-L", "slackroot", "-d", str(root), str(fs.fs_image))
    fs.block_size = block_size(fs.fs_image)
    return fs


class _Random:
    def __init__(self, seed: int) -> None:
        import random

        self._rng = random.Random(seed)

    def bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)


def _chain_pages(entries: int) -> int:
    return max(1, (entries + 100) // 101)


def _entries(fs: LiloFs, sectors: list[int]) -> list[bytes]:
    """SECTOR_ADDRs for a list of sectors: one per sector, or (compact) a no-count address
    that sets the high byte followed by counted runs of at most 127 sectors."""
    if not fs.compact:
        return [lba32_addr(s) for s in sectors]
    out: list[bytes] = []
    n = 0
    while n < len(sectors):
        out.append(lba32_addr(sectors[n]))
        n += 1
        while n < len(sectors) and sectors[n] == sectors[n - 1] + 1:
            run_start, count = sectors[n], 1
            while (n + count < len(sectors) and count < 127
                   and sectors[n + count] == sectors[n + count - 1] + 1):
                count += 1
            out.append(bytes([run_start & 0xFF, run_start >> 8 & 0xFF, LBA32_COUNTED_DEVICE,
                              run_start >> 16 & 0xFF, count]))
            n += count
    return out


def _section_entry_counts(fs: LiloFs) -> list[tuple[int, int]]:
    """(kernel entries incl. the two special sectors, initrd entries) per image, counted
    from the file sizes (sector positions only matter when compacting, so assume the
    worst case: one entry per sector)."""
    counts = []
    for spec in fs.kernels:
        k = 2 + (spec.size + SECTOR - 1) // SECTOR
        i = (spec.initrd_size + SECTOR - 1) // SECTOR if spec.initrd else 0
        counts.append((k, i))
    return counts


def map_sectors(fs: LiloFs) -> int:
    total = fs.dsecs + 2 + SECOND_STAGE_SECTORS + 1
    for kernel, initrd in _section_entry_counts(fs):
        total += 2 + _chain_pages(kernel) + (_chain_pages(initrd) if initrd else 0)
    return total + 1  # the keytable, written last


def lba32_addr(lba: int) -> bytes:
    return bytes([lba & 0xFF, lba >> 8 & 0xFF, LBA32_ADDR_DEVICE, lba >> 16 & 0xFF, lba >> 24])


def _section_pages(entries: list[bytes], pages: list[int]) -> list[bytes]:
    """map_end_section(): 101 addresses a sector, the next sector's address at 505."""
    out = []
    for n in range(len(pages)):
        data = bytearray(SECTOR)
        chunk = entries[n * 101:(n + 1) * 101]
        for slot, entry in enumerate(chunk):
            data[slot * 5:slot * 5 + 5] = entry
        if n + 1 < len(pages):
            data[505:510] = lba32_addr(pages[n + 1])
        out.append(bytes(data))
    return out


@dataclass
class Install:
    map_lbas: list[int]
    kernel_lbas: dict[str, list[int]]
    index_lba: int
    descr_start: dict[str, int]  # label -> first chain sector


def write_map(fs: LiloFs, part_start: int, *, corrupt: str | None = None,
              command_line: str = "root=801 ro") -> Install:
    """Compute the map for a partition starting at `part_start` and write it into the map
    file's own blocks (so the file system is not touched otherwise)."""
    map_lbas = file_sectors(fs, fs.map_path, part_start)
    sectors: list[bytes] = [b""] * len(map_lbas)
    d = fs.dsecs
    sectors[0] = struct.pack("<H", 0x6B6D).ljust(SECTOR, b"\0")  # DC_MGOFF: no saved line
    sectors[d + 1] = bytes(SECTOR)
    here = d + 2
    second = [here + n for n in range(SECOND_STAGE_SECTORS)]
    here += SECOND_STAGE_SECTORS
    index_sector = here
    here += 1
    descriptors = bytearray(d * SECTOR)
    install = Install(map_lbas, {}, map_lbas[index_sector], {})
    counts = _section_entry_counts(fs)

    def lay_out(entries: list[bytes], capacity: int) -> list[int]:
        """Reserve room for `capacity` entries at `here`; fill the pages the entries use."""
        nonlocal here
        pages = list(range(here, here + _chain_pages(capacity)))
        here += len(pages)
        used = pages[:_chain_pages(len(entries))]
        for page, data in zip(used, _section_pages(entries, [map_lbas[p] for p in used]),
                              strict=True):
            sectors[page] = data
        for page in pages[len(used):]:
            sectors[page] = bytes(SECTOR)
        return used

    for number, spec in enumerate(fs.kernels):
        fallback, options = here, here + 1
        sectors[fallback] = bytes(SECTOR)
        sectors[options] = command_line.encode().ljust(SECTOR, b"\0")  # bsect.c: options
        here += 2
        kernel = file_sectors(fs, spec.path, part_start)
        install.kernel_lbas[spec.label] = kernel
        entries = _entries(fs, [map_lbas[fallback], map_lbas[options]] + kernel)
        used = lay_out(entries, counts[number][0])
        if corrupt == "loop" and number == 0:
            page = bytearray(sectors[used[0]])
            page[505:510] = lba32_addr(map_lbas[used[0]])  # the chain points back at itself
            sectors[used[0]] = bytes(page)
        start = map_lbas[used[0]]
        if corrupt == "outside" and number == 0:
            start = 0x7FFFFFF0
        install.descr_start[spec.label] = start
        initrd_addr = bytes(5)
        rd_size = 0
        if spec.initrd:
            initrd = file_sectors(fs, spec.initrd, part_start)
            rused = lay_out(_entries(fs, initrd), counts[number][1])
            initrd_addr = lba32_addr(map_lbas[rused[0]])
            rd_size = spec.initrd_size
        password = 20 if fs.entry_size == PASS160_ENTRY else 8
        entry = (spec.label.encode().ljust(16, b"\0") + bytes(password)
                 + struct.pack("<I", rd_size) + initrd_addr + lba32_addr(start)
                 + struct.pack("<HH", FLAG_KERNEL | FLAG_MODKRN | FLAG_LOADHI, 0))
        assert len(entry) == fs.entry_size
        descriptors[number * fs.entry_size:(number + 1) * fs.entry_size] = entry
    struct.pack_into("<I", descriptors, d * SECTOR - 4, bitwise_crc32(bytes(descriptors[:-4])))
    for n in range(d):
        sectors[1 + n] = bytes(descriptors[n * SECTOR:(n + 1) * SECTOR])
    keytable = len(map_lbas) - 1
    assert here == keytable, (here, keytable)
    # BOOT_PARAMS_2 at the start of the second stage, the rest stands in for its code
    params2 = (b"\xeb\x04LILO"[:2] + b"\x90" * 4 + b"LILO" + bytes(VERSION)
               + struct.pack("<IHBBHHH", MAP_STAMP, 2 | 0x0200, 0, 0, 0xFFFF, 0, 0)
               + lba32_addr(map_lbas[keytable]) + b"\0")
    assert params2[6:10] == b"LILO" and len(params2) == 32
    sectors[second[0]] = params2.ljust(SECTOR, b"\x90")
    sectors[second[1]] = b"\x90" * SECTOR
    index = bytearray(SECTOR)
    for n, sector in enumerate(second):
        struct.pack_into("<I", index, 4 * n, map_lbas[sector])
    index[508:512] = b"LILO"
    sectors[index_sector] = bytes(index)
    # keytable sector: identity table, then MENUTABLE (88 bytes of menu settings,
    # serial_no[16], raid_offset[18 - D], raid_dev_mask, msg, dflcmd, mt_descr[D])
    table = bytearray(bytes(range(256)) + bytes(256))
    descr_at = 256 + 88 + 64 + 4 * (18 - d) + 2 + 5 + 5
    for n in range(d):
        table[descr_at + 5 * n:descr_at + 5 * n + 5] = lba32_addr(map_lbas[1 + n])
    struct.pack_into("<I", table, 504, bitwise_crc32(bytes(table[:504])))
    sectors[keytable] = bytes(table)
    data = b"".join(sectors)
    assert len(data) == len(fs.files[fs.map_path])
    _write_file_blocks(fs, fs.map_path, data)
    return install


def _write_file_blocks(fs: LiloFs, guest_path: str, data: bytes) -> None:
    blocks = fs_blocks(fs.fs_image, guest_path)
    with open(fs.fs_image, "r+b") as handle:
        for n, block in enumerate(blocks):
            chunk = data[n * fs.block_size:(n + 1) * fs.block_size]
            if not chunk:
                break
            handle.seek(block * fs.block_size)
            handle.write(chunk)
    fs.files[guest_path] = data


def first_stage(index_lba: int, version: tuple[int, int] = VERSION) -> bytes:
    """BOOT_PARAMS_1 of 22.7+: cli, jmp short, stage, code_length, "LILO", version,
    map_stamp, raid_offset, timestamp, map_serial_no, prompt, then the 6-byte address of
    the second-stage index (device, flags, 32-bit sector)."""
    head = struct.pack("<BBBBH4sBBIIIIH", 0xFA, 0xEB, 0x3E, 1, 0x1B0, b"LILO", version[0],
                       version[1], MAP_STAMP, 0, 0x12345678, 0, 1)
    head += struct.pack("<BBI", 0x80, 0x60, index_lba)
    assert len(head) == 36
    return head.ljust(440, b"\xcc")


def build_disk(path: Path, fs: LiloFs, part_start: int, *, boot_code: bytes | None,
               disk_mib: int = 48, in_partition: bool = False) -> None:
    """An MBR disk with one partition at `part_start` holding the file system image, and
    `boot_code` (the first 440 bytes) in the MBR, or (`in_partition`) in the partition's
    first sector, which ext4 leaves free."""
    size = fs.fs_image.stat().st_size
    with open(path, "wb") as handle:
        handle.truncate(disk_mib * MIB)
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(path),
        stdin=f"label: dos\nunit: sectors\nstart={part_start}, size={size // SECTOR}, "
              "type=83, bootable\n")
    with open(path, "r+b") as out, open(fs.fs_image, "rb") as src:
        out.seek(part_start * SECTOR)
        shutil.copyfileobj(src, out, 4 * MIB)
        if boot_code is not None:
            out.seek(part_start * SECTOR if in_partition else 0)
            out.write(boot_code[:440])


def rewrite_kernel(fs: LiloFs, guest_path: str, workdir: Path) -> None:
    """Write the kernel again to new blocks, as a package upgrade would: a new file beside
    the old, the old removed, the new renamed (debugfs ln/unlink keep the link count)."""
    copy = workdir / "kernel-copy"
    copy.write_bytes(fs.files[guest_path])
    directory, name = os.path.split(guest_path)
    run("debugfs", "-w", "-f", "-", str(fs.fs_image), stdin=(
        f"cd {directory}\nwrite {copy} {name}.new\nrm {name}\nln {name}.new {name}\n"
        f"unlink {name}.new\n"))
