"""`reseal inspect` tells whether an installed LILO still points at its files' sectors.

Disk images are built with sfdisk + mkfs.ext4 -d; the kernel's and map's blocks come from
debugfs (an independent oracle), and tests/linux/lilo_layout.py writes LILO's boot sector
and map from LILO's struct definitions. reseal then opens the image read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from tests.image.conftest import no_leaks, reseal_tempdir  # noqa: F401  (fixtures)

from reseal.image.target import open_target
from reseal.inspection import inspect_target, render_text
from reseal.inspection.model import LiloState
from reseal.linux import lilomap
from reseal.linux.lilo import parse_lilo_sections
from reseal.linux.lilocheck import RawDisk, check_lilo
from reseal.linux.lilomap import LiloFormatError

from .lilo_layout import (
    CRC_ENTRY,
    KernelSpec,
    LiloFs,
    bitwise_crc32,
    build_disk,
    first_stage,
    lba32_addr,
    make_fs,
    rewrite_kernel,
    write_map,
)

START = 2048
KERNELS = [KernelSpec("Linux", "/boot/vmlinuz-test", 300_000, "/boot/initrd-test", 120_000),
           KernelSpec("old", "/boot/vmlinuz-old", 90_000)]


@pytest.fixture
def root_needed() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices and mounts")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lilo(image: Path) -> LiloState:
    before = _digest(image)
    with open_target(image) as target:
        report = inspect_target(target)
        text = render_text(report)
    assert _digest(image) == before, "inspect changed the image"
    (lin,) = report.linux
    (loader,) = [b for b in lin.boot_loaders if b.name == "LILO"]
    assert loader.lilo is not None
    assert "LILO boot sector" in text
    return loader.lilo


def _installed(tmp_path: Path, **options: object) -> tuple[LiloFs, Path]:
    fs = make_fs(tmp_path, KERNELS, **options)  # type: ignore[arg-type]
    install = write_map(fs, START)
    image = tmp_path / "disk.img"
    build_disk(image, fs, START, boot_code=first_stage(install.index_lba))
    return fs, image


def test_crc_matches_lilo_and_the_bzip2_check_value() -> None:
    assert bitwise_crc32(b"123456789") == 0xFC891918  # CRC-32/BZIP2 check value
    data = random.Random(3).randbytes(1500)
    assert lilomap.lilo_crc32(data) == bitwise_crc32(data)


def test_current_install(tmp_path: Path, root_needed: None) -> None:
    fs, image = _installed(tmp_path)
    state = _lilo(image)
    assert state.boot_status == "current"
    assert state.version == "24.2"
    assert "MBR" in state.boot
    assert [(i.label, i.kernel, i.status) for i in state.images] == [
        ("Linux", "/boot/vmlinuz-test", "current"), ("old", "/boot/vmlinuz-old", "current")]
    assert state.images[0].sectors == (300_000 + 511) // 512
    assert state.images[0].initrd == "current"
    assert state.images[1].initrd is None


def test_boot_sector_in_the_partition(tmp_path: Path, root_needed: None) -> None:
    """boot=/dev/sda1: the first stage sits in the partition's first sector; the MBR's
    code is someone else's."""
    fs = make_fs(tmp_path, KERNELS, boot="/dev/sda1")
    install = write_map(fs, START)
    image = tmp_path / "disk.img"
    build_disk(image, fs, START, boot_code=first_stage(install.index_lba), in_partition=True)
    state = _lilo(image)
    assert state.boot == "partition 1 (/dev/sda1)" and state.boot_status == "current"
    build_disk(image, fs, START, boot_code=first_stage(install.index_lba))  # MBR only
    assert _lilo(image).boot_status == "stale: boot sector has no LILO"


def test_compacted_map_with_crc_descriptors(tmp_path: Path, root_needed: None) -> None:
    """Two descriptor sectors, 42-byte descriptors, counted LBA32 runs (lilo -c)."""
    _, image = _installed(tmp_path, dsecs=2, entry_size=CRC_ENTRY, compact=True)
    state = _lilo(image)
    assert state.boot_status == "current"
    assert [i.status for i in state.images] == ["current", "current"]


def test_cli_json(tmp_path: Path, root_needed: None) -> None:
    _, image = _installed(tmp_path)
    out = subprocess.run([sys.executable, "-m", "reseal", "inspect", str(image), "--json"],
                         capture_output=True, text=True, check=True).stdout
    (loader,) = [b for b in json.loads(out)["linux"][0]["boot_loaders"] if b["name"] == "LILO"]
    assert loader["lilo"]["boot_status"] == "current"
    assert [i["label"] for i in loader["lilo"]["images"]] == ["Linux", "old"]


def test_kernel_rewritten_to_new_blocks(tmp_path: Path, root_needed: None) -> None:
    fs = make_fs(tmp_path, KERNELS)
    install = write_map(fs, START)
    old_blocks = install.kernel_lbas["Linux"]
    rewrite_kernel(fs, "/boot/vmlinuz-test", tmp_path)
    image = tmp_path / "disk.img"
    build_disk(image, fs, START, boot_code=first_stage(install.index_lba))
    state = _lilo(image)
    assert state.boot_status == "current"  # the map itself did not move
    linux, old = state.images
    assert linux.status.startswith("stale: kernel moved"), linux.status
    assert f"the map says {old_blocks[0]}" in linux.status
    assert old.status == "current" and linux.initrd == "current"


def test_partition_moved(tmp_path: Path, root_needed: None) -> None:
    """The same file-system bytes cloned to a partition 1 MiB further on."""
    fs = make_fs(tmp_path, KERNELS)
    install = write_map(fs, START)
    image = tmp_path / "moved.img"
    build_disk(image, fs, START + 2048, boot_code=first_stage(install.index_lba))
    state = _lilo(image)
    assert state.boot_status.startswith("stale: boot sector points at a different map")
    assert "2048 sectors" in state.boot_status and "partition moved" in state.boot_status
    for item in state.images:
        assert item.status.startswith("stale:") and "partition moved" in item.status, item.status


def test_boot_sector_without_lilo(tmp_path: Path, root_needed: None) -> None:
    fs = make_fs(tmp_path, KERNELS)
    write_map(fs, START)
    image = tmp_path / "disk.img"
    build_disk(image, fs, START, boot_code=b"\xeb\x63" + bytes(438))
    state = _lilo(image)
    assert state.boot_status == "stale: boot sector has no LILO"
    assert [i.status for i in state.images] == ["current", "current"]


def test_boot_sector_of_another_install(tmp_path: Path, root_needed: None) -> None:
    fs = make_fs(tmp_path, KERNELS)
    install = write_map(fs, START)
    code = bytearray(first_stage(install.index_lba))
    struct.pack_into("<I", code, 12, 0x11111111)  # another map time stamp
    image = tmp_path / "disk.img"
    build_disk(image, fs, START, boot_code=bytes(code))
    assert _lilo(image).boot_status.startswith("stale: boot sector points at a different map")


@pytest.mark.parametrize("corrupt, expected", [
    ("outside", "stale: map points outside the disk"),
    ("loop", "stale: kernel map: map chain loops back to sector"),
])
def test_hostile_map_end_to_end(tmp_path: Path, root_needed: None, corrupt: str,
                                expected: str) -> None:
    fs = make_fs(tmp_path, KERNELS)
    install = write_map(fs, START, corrupt=corrupt)
    image = tmp_path / "disk.img"
    build_disk(image, fs, START, boot_code=first_stage(install.index_lba))
    linux, old = _lilo(image).images
    assert linux.status.startswith(expected), linux.status
    assert old.status == "current"


def test_garbage_map_file(tmp_path: Path, root_needed: None) -> None:
    fs = make_fs(tmp_path, KERNELS)
    install = write_map(fs, START)
    image = tmp_path / "disk.img"
    build_disk(image, fs, START, boot_code=first_stage(install.index_lba))
    # overwrite the map file's descriptor sectors on the disk itself
    map_first = install.map_lbas[1]
    with open(image, "r+b") as handle:
        handle.seek(map_first * 512)
        handle.write(random.Random(9).randbytes(512))
    state = _lilo(image)
    assert state.boot_status.startswith("cannot verify: /boot/map: map file has no descriptor")
    assert all(i.status.startswith("cannot verify") for i in state.images)


def test_directory_target_cannot_verify(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/lilo.conf").write_text("boot=/dev/sda\nimage=/boot/vmlinuz\n label=Linux\n")
    (root / "etc/fstab").write_text("/dev/sda1 / ext4 defaults 0 1\n")
    with open_target(root) as target:
        (lin,) = inspect_target(target).linux
    (loader,) = lin.boot_loaders
    assert loader.lilo is not None and loader.lilo.images[0].status.startswith("cannot verify")


# ------------------------------------------------------------------ the decoder alone
class _Disk:
    """An in-memory disk: sectors set by tests, zeros elsewhere."""

    def __init__(self, sectors: int) -> None:
        self.size = sectors
        self.data: dict[int, bytes] = {}
        self.reads = 0

    def read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        assert offset % 512 == 0 and length == 512 and offset // 512 < self.size
        return self.data.get(offset // 512, bytes(512))


def _page(entries: list[bytes], link: bytes | None = None) -> bytes:
    data = bytearray(512)
    for n, entry in enumerate(entries):
        data[n * 5:n * 5 + 5] = entry
    if link:
        data[505:510] = link
    return bytes(data)


def test_decoder_follows_a_chain_across_pages() -> None:
    disk = _Disk(10_000)
    disk.data[100] = _page([lba32_addr(1000 + n) for n in range(101)], lba32_addr(101))
    disk.data[101] = _page([lba32_addr(2000), bytes([1, 8, 0xA0, 0, 5])])  # counted: 2049..
    section = lilomap.read_map_section(disk.read, disk.size, lba32_addr(100))
    assert section.pages == (100, 101)
    assert section.sectors() == [1000 + n for n in range(101)] + [2000] + list(range(2049, 2054))


def test_decoder_refuses_a_loop_and_counts_reads() -> None:
    disk = _Disk(10_000)
    disk.data[100] = _page([lba32_addr(5)] * 101, lba32_addr(101))
    disk.data[101] = _page([lba32_addr(6)] * 101, lba32_addr(100))
    with pytest.raises(LiloFormatError) as info:
        lilomap.read_map_section(disk.read, disk.size, lba32_addr(100))
    assert info.value.kind == "loop" and disk.reads == 2


def test_decoder_bounds_a_long_chain_and_huge_counts() -> None:
    disk = _Disk(1 << 30)
    for n in range(100, 400):
        disk.data[n] = _page([bytes([0, 0, 0xA0, 0, 255])] * 101, lba32_addr(n + 1))
    with pytest.raises(LiloFormatError) as info:
        lilomap.read_map_section(disk.read, disk.size, lba32_addr(100), max_sectors=100_000)
    assert info.value.kind == "too-long" and disk.reads <= 5


def test_decoder_refuses_addresses_past_the_disk() -> None:
    disk = _Disk(1000)
    with pytest.raises(LiloFormatError) as info:
        lilomap.read_map_section(disk.read, disk.size, lba32_addr(5000))
    assert info.value.kind == "outside" and disk.reads == 0
    disk.data[10] = _page([lba32_addr(999), bytes([0xF0, 3, 0xA0, 0, 20])])
    with pytest.raises(LiloFormatError) as info:
        lilomap.read_map_section(disk.read, disk.size, lba32_addr(10))
    assert info.value.kind == "outside"


def test_decoder_chs_needs_a_geometry() -> None:
    chs = bytes([0x02, 0x01, 0x80, 0x03, 1])  # cylinder 1, head 3, sector 2
    address, _ = lilomap.decode_address(chs)
    assert address.mode == "chs" and address.lba is None
    with pytest.raises(LiloFormatError) as info:
        lilomap.locate(address, 10**6)
    assert info.value.kind == "chs" and "cannot verify offline" in info.value.reason
    address, _ = lilomap.decode_address(chs, geometry=lilomap.Geometry(16, 63))
    assert address.lba == (1 * 16 + 3) * 63 + 1


def test_decoder_boot_sectors() -> None:
    assert lilomap.parse_first_stage(bytes(512)) is None
    first = lilomap.parse_first_stage(first_stage(123_456).ljust(512, b"\0"))
    assert first is not None and first.version == (24, 2) and first.index.lba == 123_456
    noise = bytearray(random.Random(5).randbytes(512))
    noise[6:10] = b"LILO"
    noise[3] = 7
    with pytest.raises(LiloFormatError):
        lilomap.parse_first_stage(bytes(noise))
    old = bytearray(512)
    old[6:10] = b"LILO"
    struct.pack_into("<HH", old, 10, 1, 22 | 2 << 8)  # 22.0-style: stage, then version
    with pytest.raises(LiloFormatError, match="22.2"):
        lilomap.parse_first_stage(bytes(old))


def test_decoder_descriptor_checksum_and_noise() -> None:
    with pytest.raises(LiloFormatError):
        lilomap.parse_descriptors(random.Random(1).randbytes(13 * 512))
    table = bytearray(2 * 512)
    table[0:6] = b"Linux\0"
    table[33:38] = lba32_addr(77)  # 42-byte layout: start at 33
    table[38:40] = struct.pack("<H", 16)
    struct.pack_into("<I", table, 1020, bitwise_crc32(bytes(table[:1020])))
    parsed = lilomap.parse_descriptors(bytes(512) + bytes(table) + bytes(512))
    assert parsed.sectors == 2 and parsed.entry_size == 42
    assert [(i.name, i.start, i.is_kernel) for i in parsed.images] == [
        ("Linux", lba32_addr(77), True)]


def test_lilo_conf_sections() -> None:
    text = ("boot=/dev/sda\ninitrd=/boot/initrd.gz\nimage=/boot/vmlinuz\n label=Linux\n"
            " alias=l\nother=/dev/sda2\n label=dos\nimage = /boot/vmlinuz-old\n")
    sections = parse_lilo_sections(text)
    assert sections.boot == "/dev/sda" and sections.map == "/boot/map"
    assert [(i.path, i.label, i.alias, i.initrd) for i in sections.images] == [
        ("/boot/vmlinuz", "Linux", "l", "/boot/initrd.gz"),
        ("/boot/vmlinuz-old", "vmlinuz-old", None, "/boot/initrd.gz")]


def test_tools_present() -> None:
    for tool in ("debugfs", "sfdisk", "mkfs.ext4"):
        assert shutil.which(tool), f"{tool} is needed to build the LILO test images"


def test_map_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "boot").mkdir()
    os.mkfifo(root / "boot/map")
    (root / "etc/lilo.conf").write_text("boot=/dev/sda\nimage=/boot/vmlinuz\n label=Linux\n")
    (root / "etc/fstab").write_text("/dev/sda1 / ext4 defaults 0 1\n")
    with open_target(root) as target:
        disk_file = tmp_path / "disk.raw"
        disk_file.write_bytes(bytes(1 << 20))
        state = check_lilo(target.linux[0], (root / "etc/lilo.conf").read_text(),
                           RawDisk(disk_file, 1 << 20, None))
    assert state.boot_status == "cannot verify: /boot/map: not a regular file (LILO's map)"
    os.unlink(root / "boot/map")
    with open_target(root) as target:
        state = check_lilo(target.linux[0], (root / "etc/lilo.conf").read_text(),
                           RawDisk(disk_file, 1 << 20, None))
    assert state.boot_status.startswith("cannot verify: LILO is not installed here: /boot/map")


@pytest.mark.parametrize("shift", [0, 2048])
def test_generalize_says_when_the_installed_map_is_stale(tmp_path: Path, root_needed: None,
                                                         shift: int) -> None:
    """linux-bootloader always asks for `lilo` after rewriting lilo.conf; when the partition
    moved under LILO's absolute addresses it says that too, with the check's reason."""
    from reseal.pipeline.runner import RunSettings, run_generalize

    fs = make_fs(tmp_path, KERNELS)
    install = write_map(fs, START)
    image = tmp_path / "disk.img"
    build_disk(image, fs, START + shift, boot_code=first_stage(install.index_lba))
    result = run_generalize(image, RunSettings(only=["linux-bootloader"]), run_dir=tmp_path / "r")
    assert result.ok, result.report.error
    (warning,) = [w for w in result.report.warnings if "LILO must be re-installed" in w]
    assert "lilo.conf changed" in warning
    if shift:
        assert "installed map no longer matches this disk" in warning
        assert f"{shift} sectors" in warning and "partition moved" in warning
    else:
        assert "no longer matches" not in warning


def _fs_uuid(path: Path, offset: int = 0) -> str:
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", "-O", str(offset),
                           str(path)], capture_output=True, text=True, check=True).stdout.strip()


def test_map_command_line_is_checked_against_the_disks_uuids(tmp_path: Path,
                                                             root_needed: None) -> None:
    """The kernel gets the map's command line: a root=UUID= there that no file system on the
    disk has (the clone's root got a new UUID and `lilo` did not run) is stale."""
    fs = make_fs(tmp_path, KERNELS)
    uuid = _fs_uuid(fs.fs_image)
    image = tmp_path / "disk.img"
    install = write_map(fs, START, command_line=f"ro root=UUID={uuid} quiet")
    build_disk(image, fs, START, boot_code=first_stage(install.index_lba))
    state = _lilo(image)
    assert state.images[0].command_line == f"ro root=UUID={uuid} quiet"
    assert [i.status for i in state.images] == ["current", "current"]

    gone = "0d9c3b2a-1f4e-4d5c-8b7a-6f5e4d3c2b1a"
    install = write_map(fs, START, command_line=f"ro root=UUID={gone}")
    build_disk(image, fs, START, boot_code=first_stage(install.index_lba))
    state = _lilo(image)
    assert state.images[0].status.startswith("stale: ")
    assert f"root=UUID={gone}, and no file system on this disk has that UUID" in \
        state.images[0].status


def test_fs_uuids_keeps_the_root_uuid_an_installed_lilo_passes(tmp_path: Path,
                                                              root_needed: None) -> None:
    from reseal.pipeline.runner import RunSettings, run_generalize

    fs = make_fs(tmp_path, KERNELS)
    uuid = _fs_uuid(fs.fs_image)
    install = write_map(fs, START, command_line=f"root=UUID={uuid} ro")
    image = tmp_path / "disk.img"
    build_disk(image, fs, START, boot_code=first_stage(install.index_lba))
    result = run_generalize(image, RunSettings(only=["linux-fs-uuids", "linux-bootloader"]),
                            run_dir=tmp_path / "r")
    assert result.ok, result.report.error
    assert _fs_uuid(image, START * 512) == uuid
    assert any("installed LILO" in w and uuid in w and "run lilo" in w
               for w in result.report.warnings), result.report.warnings
    assert "fs-uuid:p1" not in result.report.identity
    state = _lilo(image)
    assert [i.status for i in state.images] == ["current", "current"]
