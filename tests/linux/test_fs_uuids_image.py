"""linux-fs-uuids on a real disk image: ext4, xfs, btrfs and swap get new UUIDs offline.

The image: GPT with an ESP (GRUB's grub.cfg stub), an ext4 root, xfs /srv, btrfs /data and a
swap partition, every one named by UUID in fstab, GRUB and the resume setting. Checked with
tools that are not reseal: blkid -p for the UUIDs, e2fsck / xfs_repair / btrfs check for the
file systems, debugfs and mtools for the rewritten files; then undo puts every UUID back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reseal.image import parttypes
from reseal.operations.base import IdentityRequest
from reseal.pipeline.runner import RunResult, RunSettings, run_generalize
from reseal.pipeline.undo import undo_run
from reseal.samples.builders import PartSpec, _fat_put, _mkfs_ext4, _mkfs_fat, _partition

MIB = 1 << 20
ESP_TYPE = parttypes.ESP.ident
LINUX_TYPE = parttypes.LINUX_FILESYSTEM.ident
SWAP_TYPE = parttypes.LINUX_SWAP.ident
PARTS = {
    "esp": PartSpec(1, 33, ESP_TYPE, "EFI system partition"),
    "root": PartSpec(34, 64, LINUX_TYPE, "root"),
    "srv": PartSpec(98, 300, LINUX_TYPE, "srv"),
    "data": PartSpec(398, 128, LINUX_TYPE, "data"),
    "swap": PartSpec(526, 8, SWAP_TYPE, "swap"),
}
KEYS = {"root": "p2", "srv": "p3", "data": "p4", "swap": "p5"}
TOOLS = ("mkfs.xfs", "mkfs.btrfs", "mkswap", "xfs_admin", "btrfstune", "swaplabel", "tune2fs",
         "debugfs", "mtype", "xfs_repair", "btrfs", "cpio", "gzip")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for loop devices and mounts")


@dataclass
class Disk:
    path: Path
    uuids: dict[str, str]  # "root", "srv", "data", "swap" -> UUID the builder gave


@contextlib.contextmanager
def loop(image: Path, part: PartSpec, read_only: bool = True) -> Iterator[str]:
    argv = ["losetup", "--find", "--show", "-o", str(part.start_mib * MIB), "--sizelimit",
            str(part.size_mib * MIB), str(image)]
    device = subprocess.run(argv + (["-r"] if read_only else []), capture_output=True,
                            text=True, check=True).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


def blkid_uuid(image: Path, name: str) -> str:
    done = subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", "-O",
                           str(PARTS[name].start_mib * MIB), str(image)],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()


def root_file(image: Path, path: str) -> str:
    with loop(image, PARTS["root"]) as device:
        return subprocess.run(["debugfs", "-R", f"cat {path}", device], capture_output=True,
                              text=True, check=True).stdout


def esp_stub(image: Path) -> str:
    return subprocess.run(["mtype", "-i", f"{image}@@{PARTS['esp'].start_mib * MIB}",
                           "::/EFI/debian/grub.cfg"], capture_output=True, text=True,
                          check=True).stdout


def check_file_systems(image: Path) -> None:
    """Every file system passes its own checker, read-only."""
    for name, argv in (("root", ["e2fsck", "-f", "-n"]), ("srv", ["xfs_repair", "-n"]),
                       ("data", ["btrfs", "check", "--readonly"])):
        with loop(image, PARTS[name]) as device:
            done = subprocess.run([*argv, device], capture_output=True, text=True, check=False)
            assert done.returncode == 0, f"{name}: {done.stdout[-800:]}{done.stderr[-800:]}"


def make_initrd(tree: Path, files: dict[str, str]) -> bytes:
    """An initramfs as initramfs-tools writes it: a newc archive by GNU cpio, gzip-compressed."""
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    names = "\n".join(str(p.relative_to(tree)) for p in sorted(tree.rglob("*")))
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=names.encode(),
                             cwd=tree, capture_output=True, check=True).stdout
    return subprocess.run(["gzip", "-9", "-n"], input=archive, capture_output=True,
                          check=True).stdout


def initrd_member(image: Path, member: str) -> str:
    """A member of the root's initrd, read by debugfs, gzip and cpio (not by reseal)."""
    with loop(image, PARTS["root"]) as device:
        data = subprocess.run(["debugfs", "-R", "cat /boot/initrd.img-6.1.0-test", device],
                              capture_output=True, check=True).stdout
    plain = subprocess.run(["gzip", "-dc"], input=data, capture_output=True, check=True).stdout
    return subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", member], input=plain,
                          capture_output=True, check=True).stdout.decode()


def build_disk(path: Path, work: Path, extra_root_files: dict[str, str] | None = None,
               initrd_files: dict[str, str] | None = None) -> Disk:
    uuids = {name: str(uuid.uuid4()) for name in ("root", "srv", "data", "swap")}
    _partition(path, 536, "gpt", list(PARTS.values()))
    _mkfs_fat(path, PARTS["esp"], "5A1E0E50", "ESP")
    _fat_put(path, PARTS["esp"], {"/EFI/debian/grub.cfg": (
        f"search.fs_uuid {uuids['root']} root hd0,gpt2\nset prefix=($root)'/boot/grub'\n"
        "configfile $prefix/grub.cfg\n").encode()}, work)
    root = work / "root"
    files = {
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
                          'VERSION_ID="12"\n',
        "etc/hostname": "uuid-master\n",
        "etc/fstab": (f"UUID={uuids['root']} / ext4 errors=remount-ro 0 1\n"
                      "UUID=5A1E-0E50 /boot/efi vfat umask=0077 0 1\n"
                      f"UUID={uuids['srv']} /srv xfs defaults 0 2\n"
                      f"UUID={uuids['data']} /data btrfs defaults 0 0\n"
                      f"UUID={uuids['swap']} none swap sw 0 0\n"),
        "etc/default/grub": (f'GRUB_CMDLINE_LINUX_DEFAULT="quiet resume=UUID={uuids["swap"]}"\n'),
        "boot/grub/grub.cfg": (
            f"search --no-floppy --fs-uuid --set=root {uuids['root']}\n"
            "menuentry 'Debian' {\n"
            f"    linux /boot/vmlinuz root=UUID={uuids['root']} ro resume=UUID={uuids['swap']}\n"
            "}\n"),
        **(extra_root_files or {}),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for directory in ("boot/efi", "srv", "data"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    escaped = uuids["swap"].replace("-", "\\x2d")  # as systemd names units after devices
    (root / "boot/initrd.img-6.1.0-test").write_bytes(make_initrd(
        work / "initrd", {"conf/conf.d/resume": f"RESUME=UUID={uuids['swap']}\n",
                          "scripts/init": "#!/bin/sh\n",
                          **{name.format(swap_escaped=escaped): text
                             for name, text in (initrd_files or {}).items()}}))
    _mkfs_ext4(path, PARTS["root"], root, "root", uuids["root"])
    for name, argv in (("srv", ["mkfs.xfs", "-q", "-f", "-m", f"uuid={uuids['srv']}"]),
                       ("data", ["mkfs.btrfs", "-q", "-f", "-U", uuids["data"]]),
                       ("swap", ["mkswap", "-U", uuids["swap"]])):
        with loop(path, PARTS[name], read_only=False) as device:
            subprocess.run([*argv, device], capture_output=True, check=True)
    return Disk(path, uuids)


@pytest.fixture
def tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (scripts/apt-packages.txt)")


@pytest.fixture
def disk(tmp_path: Path, tools: None) -> Disk:
    (tmp_path / "build").mkdir()
    return build_disk(tmp_path / "disk.img", tmp_path / "build")


def generalize(disk: Disk, run_dir: Path, *, dry_run: bool = False) -> RunResult:
    settings = RunSettings(request=IdentityRequest(hostname="uuid-clone"),
                           only=["linux-fs-uuids"])
    return run_generalize(disk.path, settings, dry_run=dry_run, run_dir=run_dir)


def test_every_file_system_gets_a_new_uuid_and_references_follow(disk: Disk,
                                                                  tmp_path: Path) -> None:
    fstab_before = root_file(disk.path, "/etc/fstab")
    result = generalize(disk, tmp_path / "run")
    assert result.ok, result.report.warnings
    new = {name: blkid_uuid(disk.path, name) for name in disk.uuids}
    for name, old in disk.uuids.items():
        assert new[name] and new[name] != old, name
        assert result.report.identity[f"fs-uuid:{KEYS[name]}"].new == new[name]
    check_file_systems(disk.path)
    saved = tmp_path / "run" / "journal" / "p2-tune2fs.e2undo"
    assert saved.read_bytes()[:8] == b"E2UNDO02"  # tune2fs' own record of the blocks it rewrote

    fstab = root_file(disk.path, "/etc/fstab")
    for name in disk.uuids:
        assert f"UUID={new[name]} " in fstab
        assert disk.uuids[name] not in fstab
    assert "UUID=5A1E-0E50 /boot/efi" in fstab  # FAT keeps its volume id
    grub = root_file(disk.path, "/boot/grub/grub.cfg")
    assert f"--set=root {new['root']}" in grub and f"root=UUID={new['root']}" in grub
    assert f"resume=UUID={new['swap']}" in grub
    assert f"resume=UUID={new['swap']}" in root_file(disk.path, "/etc/default/grub")
    assert f"search.fs_uuid {new['root']} root" in esp_stub(disk.path)
    # the initrd resumes from the new swap: no wait for the old one on every boot
    assert initrd_member(disk.path, "conf/conf.d/resume") == f"RESUME=UUID={new['swap']}\n"
    assert any("initrd.img-6.1.0-test: the new UUIDs written into conf/conf.d/resume" in n
               for n in result.report.notes)

    undone = undo_run(disk.path, tmp_path / "run" / "journal")
    assert undone.uuids_restored == 4
    assert {name: blkid_uuid(disk.path, name) for name in disk.uuids} == disk.uuids
    assert root_file(disk.path, "/etc/fstab") == fstab_before
    assert f"search.fs_uuid {disk.uuids['root']} root" in esp_stub(disk.path)
    assert initrd_member(disk.path, "conf/conf.d/resume") == f"RESUME=UUID={disk.uuids['swap']}\n"
    check_file_systems(disk.path)


def test_dry_run_plans_but_leaves_the_image_alone(disk: Disk, tmp_path: Path) -> None:
    digest = hashlib.sha256(disk.path.read_bytes()).hexdigest()
    result = generalize(disk, tmp_path / "run", dry_run=True)
    assert result.ok
    planned = {c.old for c in result.report.changes if c.operation == "linux-fs-uuids"}
    assert set(disk.uuids.values()) <= planned
    assert hashlib.sha256(disk.path.read_bytes()).hexdigest() == digest


def test_root_found_by_grub_boot_code_keeps_its_uuid(tmp_path: Path, tools: None) -> None:
    (tmp_path / "build").mkdir()
    pinned = build_disk(tmp_path / "pinned.img", tmp_path / "build")
    # grub-install keeps the config it embeds in core.img beside it as load.cfg
    source = tmp_path / "load.cfg"
    source.write_text(f"search.fs_uuid {pinned.uuids['root']} root hd0,gpt2\n")
    with loop(pinned.path, PARTS["root"], read_only=False) as device:
        for command in ("mkdir /boot/grub/i386-pc", f"write {source} /boot/grub/i386-pc/load.cfg"):
            subprocess.run(["debugfs", "-w", "-R", command, device], capture_output=True,
                           check=True)
    result = generalize(pinned, tmp_path / "run")
    assert result.ok
    assert blkid_uuid(pinned.path, "root") == pinned.uuids["root"]
    assert any("load.cfg" in w and pinned.uuids["root"] in w for w in result.report.warnings)
    assert blkid_uuid(pinned.path, "srv") != pinned.uuids["srv"]
    fstab = root_file(pinned.path, "/etc/fstab")
    assert f"UUID={pinned.uuids['root']} / ext4" in fstab
    assert pinned.uuids["srv"] not in fstab


def test_swap_named_by_a_unit_inside_the_initrd_keeps_its_uuid(tmp_path: Path,
                                                               tools: None) -> None:
    """A dracut-style unit named after the device cannot be rewritten as text: the swap
    keeps its UUID, says why, and the rest changes."""
    (tmp_path / "build").mkdir()
    unit = "etc/systemd/system/dev-disk-by\\x2duuid-{swap_escaped}.swap"
    disk = build_disk(tmp_path / "disk.img", tmp_path / "build",
                      initrd_files={unit: "[Swap]\n"})
    result = generalize(disk, tmp_path / "run")
    assert result.ok
    swap_now = blkid_uuid(disk.path, "swap")
    assert swap_now == disk.uuids["swap"]
    assert any("initrd.img-6.1.0-test names it in the name of" in w and swap_now in w
               for w in result.report.warnings), result.report.warnings
    assert blkid_uuid(disk.path, "root") != disk.uuids["root"]
