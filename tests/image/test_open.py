"""Opening real sample images: volumes, writes landing in the image, and every refusal rule."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from reseal.errors import CorruptData, Refused, ResealError, UnsafePath
from reseal.image.target import OpenOptions, open_target
from reseal.samples import build_linux_gpt, build_windows_gpt
from reseal.samples.builders import SampleImage


def _blkid(device: str, tag: str) -> str:
    return subprocess.run(["blkid", "-p", "-s", tag, "-o", "value", device],
                          capture_output=True, text=True).stdout.strip()


def test_windows_gpt_volumes(windows_gpt: SampleImage) -> None:
    with open_target(windows_gpt.path) as target:
        assert target.kind == "raw"
        keys = {v.key: v for v in target.volumes}
        assert keys["p1"].fstype == "vfat" and keys["p1"].uuid == "5A1E-0E5F"
        assert keys["p1"].label == "SYSTEM" and _blkid(keys["p1"].device, "LABEL") == "SYSTEM"
        # a volume-label entry first in the root directory does not hide the files after it
        assert keys["p1"].fs is not None
        assert keys["p1"].fs.find_path("/efi/microsoft/boot/BOOTMGFW.EFI") == (
            "/EFI/Microsoft/Boot/bootmgfw.efi"
        )
        assert keys["p2"].fs is None  # Microsoft reserved: nothing to mount
        ntfs = keys["p3"]
        assert ntfs.fstype == "ntfs" and ntfs.label == "Windows"
        assert ntfs.uuid == windows_gpt.facts["ntfs_uuid"]
        # blkid, an independent reader, agrees on the attached loop device
        assert _blkid(ntfs.device, "LABEL") == "Windows"
        assert _blkid(ntfs.device, "UUID") == ntfs.uuid
        assert ntfs.read_only and ntfs.fs is not None
        assert ntfs.fs.find_path("/windows/system32/config/system") == (
            "/Windows/System32/config/SYSTEM"
        )
        assert [type(s).__name__ for s in target.systems] == ["WindowsSystem"]
        assert target.windows[0].hive_path("sam") == "/Windows/System32/config/SAM"


def test_linux_gpt_mounts_esp_below_root(linux_gpt: SampleImage) -> None:
    with open_target(linux_gpt.path) as target:
        (system,) = target.linux
        assert system.volume.key == "p2"
        assert system.volume.uuid == linux_gpt.facts["root_uuid"]
        assert system.extra_volumes["/boot/efi"].key == "p1"
        # 8.3 names written by mtools with NT lower-case flags show as the guest sees them
        assert system.fs.listdir("/boot/efi/EFI/debian") == ["grub.cfg", "grubx64.efi"]
        with pytest.raises(ResealError, match="read-only"):
            system.fs.write_text("/etc/hostname", "x\n")


def test_mbr_logical_volume_mounted(linux_mbr: SampleImage) -> None:
    with open_target(linux_mbr.path) as target:
        home = target.volume("p5")
        assert home.fstype == "ext2" and home.uuid == linux_mbr.facts["home_uuid"]
        assert home.fs is not None and home.fs.listdir("/") == ["lost+found", "user"]


def test_qcow2_writes_land_in_the_image(linux_qcow2: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "disk.qcow2"
    shutil.copyfile(linux_qcow2.path, copy)
    with open_target(copy, OpenOptions(writable=True)) as target:
        assert target.kind == "qcow2"
        target.linux[0].fs.write_text("/etc/hostname", "renamed\n")
    # read back through an independent path: qemu-img convert to raw + debugfs
    raw = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(copy), str(raw)], check=True)
    start = linux_qcow2.partitions[1].start_mib << 20
    part = tmp_path / "root.ext4"
    with open(raw, "rb") as src, open(part, "wb") as dst:
        src.seek(start)
        dst.write(src.read(linux_qcow2.partitions[1].size_mib << 20))
    out = subprocess.run(["debugfs", "-R", "cat /etc/hostname", str(part)],
                         capture_output=True, text=True, check=True).stdout
    assert out == "renamed\n"


def test_format_detected_by_magic_not_name(linux_qcow2: SampleImage, tmp_path: Path) -> None:
    disguised = tmp_path / "disk.img"
    shutil.copyfile(linux_qcow2.path, disguised)
    with open_target(disguised) as target:
        assert target.kind == "qcow2"
        assert target.linux[0].volume.fstype == "ext4"


def test_ntfs_write_then_read_back(windows_gpt: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "win.img"
    shutil.copyfile(windows_gpt.path, copy)
    with open_target(copy, OpenOptions(writable=True)) as target:
        ntfs = target.volume("p3")
        assert not ntfs.read_only
        assert ntfs.fs is not None
        ntfs.fs.write_bytes("/Windows/reseal.txt", b"written")
        esp = target.volume("p1")
        assert esp.fs is not None and not esp.read_only
        esp.fs.write_bytes("/EFI/Microsoft/Boot/bootmgfw.efi", b"replaced boot manager")
        esp.fs.write_bytes("/EFI/Microsoft/Boot/NewLongName.txt", b"new")
    with open_target(copy) as target:
        fs = target.volume("p3").fs
        assert fs is not None and fs.read_bytes("/Windows/reseal.txt") == b"written"
    # independent readers of the ESP: mtools reads the files back, fsck.fat finds no damage
    esp_at = f"{copy}@@{windows_gpt.partitions[0].start_mib << 20}"
    assert subprocess.run(["mtype", "-i", esp_at, "::/EFI/Microsoft/Boot/bootmgfw.efi"],
                          capture_output=True, check=True).stdout == b"replaced boot manager"
    listing = subprocess.run(["mdir", "-i", esp_at, "::/EFI/Microsoft/Boot"],
                             capture_output=True, text=True, check=True).stdout
    assert "NewLongName.txt" in listing
    part = tmp_path / "esp.fat"
    with open(copy, "rb") as src, open(part, "wb") as dst:
        src.seek(windows_gpt.partitions[0].start_mib << 20)
        dst.write(src.read(windows_gpt.partitions[0].size_mib << 20))
    fsck = subprocess.run(["fsck.fat", "-n", str(part)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout


# ------------------------------------------------------------------------- refusals
def test_already_attached_refused(linux_gpt: SampleImage) -> None:
    device = subprocess.run(["losetup", "--find", "--show", "--read-only", str(linux_gpt.path)],
                            capture_output=True, text=True, check=True).stdout.strip()
    try:
        with pytest.raises(Refused, match="already attached"), open_target(linux_gpt.path):
            pass
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


def test_mounted_elsewhere_refused(linux_mbr: SampleImage, tmp_path: Path) -> None:
    device = subprocess.run(
        ["losetup", "--find", "--show", "--read-only", "-o", str(1 << 20), "--sizelimit",
         str(40 << 20), str(linux_mbr.path)],
        capture_output=True, text=True, check=True).stdout.strip()
    mnt = tmp_path / "elsewhere"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-o", "ro,noload", device, str(mnt)], check=True)
        with pytest.raises(Refused, match="already mounted at"), open_target(linux_mbr.path):
            pass
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", device], check=True)


def test_truncated_image_refused(linux_gpt: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "cut.img"
    shutil.copyfile(linux_gpt.path, copy)
    with open(copy, "r+b") as handle:
        handle.truncate(40 << 20)
    with pytest.raises(CorruptData, match="truncated"), open_target(copy):
        pass


@pytest.fixture(scope="module")
def hibernated_windows(images_dir: Path, win_hives: dict[str, Path]) -> SampleImage:
    return build_windows_gpt(images_dir / "hibernated.img", win_hives, hibernated=True)


def test_hibernated_ntfs_refused(hibernated_windows: SampleImage) -> None:
    with pytest.raises(Refused, match="hibernated"), open_target(hibernated_windows.path):
        pass


def test_hibernated_ntfs_opened_when_allowed(hibernated_windows: SampleImage) -> None:
    with open_target(hibernated_windows.path, OpenOptions(allow_unclean_ntfs=True)) as target:
        assert target.windows and any("hibernated" in w for w in target.warnings)


def test_hibernated_ntfs_writable_is_refused_by_ntfs3g_too(hibernated_windows: SampleImage,
                                                           tmp_path: Path) -> None:
    """ntfs-3g itself falls back to read-only here: reseal notices and says so."""
    copy = tmp_path / "hib.img"
    shutil.copyfile(hibernated_windows.path, copy)
    with pytest.raises(Refused), open_target(copy, OpenOptions(writable=True)):
        pass
    with open_target(copy, OpenOptions(writable=True, allow_unclean_ntfs=True)) as target:
        ntfs = target.volume("p3")
        assert ntfs.read_only and ntfs.notes


def _set_ntfs_dirty(image: Path, partition_start: int) -> None:
    """Set VOLUME_IS_DIRTY in $Volume's VOLUME_INFORMATION, as Windows does when it crashes."""
    with open(image, "r+b") as disk:
        disk.seek(partition_start)
        boot = disk.read(512)
        cluster = struct.unpack_from("<H", boot, 11)[0] * boot[13]
        mft = partition_start + struct.unpack_from("<Q", boot, 48)[0] * cluster
        record_size = 1 << -struct.unpack_from("<b", boot, 64)[0]
        disk.seek(mft + 3 * record_size)
        record = bytearray(disk.read(record_size))
        assert record[:4] == b"FILE"
        offset = struct.unpack_from("<H", record, 20)[0]
        while struct.unpack_from("<I", record, offset)[0] != 0x70:
            offset += struct.unpack_from("<I", record, offset + 4)[0]
        value = offset + struct.unpack_from("<H", record, offset + 20)[0]
        flags_at = value + 10
        assert flags_at % 512 < 510  # not a fix-up position
        struct.pack_into("<H", record, flags_at, struct.unpack_from("<H", record, flags_at)[0] | 1)
        mirror = partition_start + struct.unpack_from("<Q", boot, 56)[0] * cluster
        for table in (mft, mirror):  # $MFTMirr must keep matching $MFT
            disk.seek(table + 3 * record_size)
            disk.write(record)


def test_unclean_ntfs_refused_unless_allowed(windows_gpt: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "dirty.img"
    shutil.copyfile(windows_gpt.path, copy)
    _set_ntfs_dirty(copy, windows_gpt.partitions[2].start_mib << 20)
    # oracle: ntfs-3g's own library (ntfsinfo) sees the flag we set and refuses the volume
    offset = windows_gpt.partitions[2].start_mib << 20
    part = tmp_path / "part.ntfs"
    with open(copy, "rb") as src, open(part, "wb") as dst:
        src.seek(offset)
        dst.write(src.read(windows_gpt.partitions[2].size_mib << 20))
    info = subprocess.run(["ntfsinfo", "-m", str(part)], capture_output=True, text=True)
    assert info.returncode != 0 and "scheduled for check" in info.stderr
    with pytest.raises(Refused, match="not shut down cleanly"), open_target(copy):
        pass
    with open_target(copy, OpenOptions(allow_unclean_ntfs=True)) as target:
        assert target.windows
        assert any("not shut down cleanly" in w for w in target.warnings)


# ------------------------------------------------------------------------- hostile links
@pytest.fixture(scope="module")
def hostname_link_image(images_dir: Path) -> SampleImage:
    return build_linux_gpt(images_dir / "hostile-hostname.img", hostile="hostname-link")


@pytest.fixture(scope="module")
def etc_link_image(images_dir: Path) -> SampleImage:
    return build_linux_gpt(images_dir / "hostile-etc.img", hostile="etc-link")


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_hostname_link_out_of_image_refused(hostname_link_image: SampleImage,
                                            tmp_path: Path) -> None:
    copy = tmp_path / "hostile.img"
    shutil.copyfile(hostname_link_image.path, copy)
    before = _digest("/etc/passwd")
    with open_target(copy, OpenOptions(writable=True)) as target:
        fs = target.linux[0].fs
        assert fs.readlink("/etc/hostname") == "/etc/../../../../etc/passwd"
        with pytest.raises(UnsafePath):
            fs.read_text("/etc/hostname")
        with pytest.raises(UnsafePath):
            fs.write_text("/etc/hostname", "pwned\n")
    assert _digest("/etc/passwd") == before


def test_etc_link_to_root_stays_inside(etc_link_image: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "hostile.img"
    shutil.copyfile(etc_link_image.path, copy)
    host_hostname = _digest("/etc/hostname")
    with open_target(copy, OpenOptions(writable=True)) as target:
        fs = target.volume("p2").fs
        assert fs is not None
        assert fs.read_text("/etc/hostname") == "inside-the-image\n"
        fs.write_text("/etc/hostname", "still-inside\n")
        assert fs.root in fs.resolve("/etc/hostname").parents
        assert fs.read_text("/hostname") == "still-inside\n"
    assert _digest("/etc/hostname") == host_hostname


@pytest.mark.parametrize(("fmt", "options", "kind"), [
    ("vmdk", [], "vmdk"), ("vhdx", [], "vhdx"), ("vpc", [], "vpc"),
    ("vpc", ["-o", "subformat=fixed"], "vpc"),
])
def test_virtual_disk_formats(fmt: str, options: list[str], kind: str, linux_gpt: SampleImage,
                              tmp_path: Path) -> None:
    image = tmp_path / "disk.bin"  # no telling extension: the format comes from the content
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt, *options,
                    str(linux_gpt.path), str(image)], check=True)
    with open_target(image) as target:
        assert target.kind == kind
        (system,) = target.linux
        assert system.fs.read_text("/etc/hostname").strip() == linux_gpt.facts["hostname"]


def test_block_device_target(linux_mbr: SampleImage) -> None:
    device = subprocess.run(["losetup", "--find", "--show", "--read-only", str(linux_mbr.path)],
                            capture_output=True, text=True, check=True).stdout.strip()
    try:
        with open_target(device) as target:
            assert target.kind == "block"
            assert [v.key for v in target.volumes] == ["p1", "p5"]
            assert target.linux[0].fs.read_text("/etc/hostname").strip() == (
                linux_mbr.facts["hostname"]
            )
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


def test_whole_disk_file_system(tmp_path: Path) -> None:
    """No partition table: the file system fills the image (volume "disk")."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("bare-fs\n")
    image = tmp_path / "bare.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "bare", "-d", str(root), str(image), "16M"],
                   check=True)
    with open_target(image) as target:
        assert target.layout is not None and target.layout.table == "none"
        (volume,) = target.volumes
        assert (volume.key, volume.fstype, volume.label) == ("disk", "ext4", "bare")
        assert target.linux[0].fs.read_text("/etc/hostname") == "bare-fs\n"


def test_whole_disk_fat_file_system(tmp_path: Path) -> None:
    """A FAT boot sector ends in 55 AA like an MBR: it is still read as a file system."""
    image = tmp_path / "bare.fat"
    with open(image, "wb") as handle:
        handle.truncate(40 << 20)
    subprocess.run(["mkfs.fat", "-F", "32", "-n", "BAREFAT", str(image)], check=True,
                   capture_output=True)
    subprocess.run(["mmd", "-i", str(image), "::/EFI"], check=True)
    with open_target(image) as target:
        assert target.layout is not None and target.layout.table == "none"
        (volume,) = target.volumes
        assert (volume.fstype, volume.label) == ("vfat", "BAREFAT")
        assert volume.fs is not None and volume.fs.listdir("/") == ["EFI"]


@pytest.mark.parametrize("sample", ["linux_gpt", "linux_qcow2"])
def test_second_open_of_an_open_image_refused(sample: str, request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    """Raw: our own loop devices make it 'attached'; qcow2: qemu's image lock is held."""
    source: SampleImage = request.getfixturevalue(sample)
    image = tmp_path / source.path.name
    shutil.copyfile(source.path, image)
    with (open_target(image, OpenOptions(writable=True)),
          pytest.raises(Refused, match="already (attached|mounted)|in use"),
          open_target(image)):
        pass
