"""linux-disk-ids: new GPT GUIDs / MBR signature, read back by sfdisk and blkid, PARTUUID
references followed (read by debugfs), undone byte for byte; refused where Windows lives."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from tests.image.lvm_images import (
    LvmImage,
    build_lvm_image,
    copy_image,
    loops,
    missing_tools,
    root_file,
    run,
)

from reseal.image.target import OpenOptions, open_target
from reseal.operations.base import IdentityRequest
from reseal.operations.linux_disk_ids import replace_partuuids
from reseal.pipeline.runner import RunSettings, run_generalize
from reseal.pipeline.undo import undo_run
from reseal.pipeline.verify import scan_leftovers

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for loop devices and mounts"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"tools missing: {missing_tools()}"),
]


def sfdisk_dump(image: Path) -> dict[str, str]:
    """label-id and each partition's uuid, as sfdisk reads them (lower case)."""
    out: dict[str, str] = {}
    for line in run("sfdisk", "--dump", str(image)).splitlines():
        if line.startswith("label-id:"):
            out["disk"] = line.split(":", 1)[1].strip().lower()
        elif " : start=" in line:
            name = line.split(" : ", 1)[0].strip()
            fields = dict(f.strip().split("=", 1) for f in line.split(" : ", 1)[1].split(",")
                          if "=" in f)
            out[f"p{name[len(str(image)):]}"] = fields.get("uuid", "").lower()
    return out


def blkid_ptuuid(image: Path) -> str:
    return run("blkid", "-p", "-o", "value", "-s", "PTUUID", str(image)).strip().lower()


@pytest.fixture(scope="module")
def lvm_master(tmp_path_factory: pytest.TempPathFactory) -> LvmImage:
    work = tmp_path_factory.mktemp("disk-ids-master")
    return build_lvm_image(work / "lvm.img", work)


def test_gpt_guids_change_in_both_tables_and_references_follow(lvm_master: LvmImage,
                                                               tmp_path: Path) -> None:
    image = copy_image(lvm_master, tmp_path / "clone.img")
    before = sfdisk_dump(image.path)
    result = run_generalize(image.path, RunSettings(request=IdentityRequest(seed=3),
                                                    only=["linux-disk-ids"]),
                            run_dir=tmp_path / "run")
    assert result.ok, result.report.error
    ids = {name: v.new for name, v in result.report.identity.items()}
    after = sfdisk_dump(image.path)
    assert after == {"disk": ids["disk-guid"], "p1": ids["partuuid:p1"],
                     "p2": ids["partuuid:p2"], "p3": ids["partuuid:p3"]}
    assert not set(after.values()) & set(before.values())
    assert blkid_ptuuid(image.path) == ids["disk-guid"]
    verify = subprocess.run(["sfdisk", "--verify", str(image.path)], capture_output=True,
                            text=True)
    assert verify.returncode == 0 and "No errors detected" in verify.stdout
    # the backup table was rewritten too: sgdisk-style check with the primary header wiped
    backup = tmp_path / "backup-only.img"
    shutil.copyfile(image.path, backup)
    with open(backup, "r+b") as disk:
        disk.seek(512)
        disk.write(bytes(512))
    assert blkid_ptuuid(backup) == ids["disk-guid"]
    new_boot, old_boot = ids["partuuid:p1"], image.facts["boot_guid"]
    fstab = root_file(image, "root", "/etc/fstab")
    assert f"PARTUUID={new_boot} /boot ext4" in fstab and old_boot not in fstab
    with loops(image.path, [image.partitions["boot"]], read_only=True) as (device,):
        grub = run("debugfs", "-R", "cat /grub/grub.cfg", device)
        entry = run("debugfs", "-R", "cat /loader/entries/debian.conf", device)
    assert f"--part-uuid --set=root {new_boot}" in grub and old_boot not in grub
    assert f"resume=PARTUUID={new_boot}" in entry
    with open_target(image.path) as target:  # /boot is found again by its new PARTUUID
        assert target.linux[0].extra_volumes["/boot"].key == "p1"
        assert scan_leftovers(target, result.report) == []
    with open_target(image.path, OpenOptions(writable=True)) as target:  # a planted trace
        target.linux[0].fs.write_text("/etc/crypttab", f"data PARTUUID={old_boot} none\n")
        hits = scan_leftovers(target, result.report)
    assert [(h.where, h.what) for h in hits] == [("/etc/crypttab", "partuuid:p1")]
    with open_target(image.path, OpenOptions(writable=True)) as target:
        target.linux[0].fs.remove("/etc/crypttab")
    assert result.journal_dir is not None
    undo_run(image.path, result.journal_dir)
    assert sfdisk_dump(image.path) == before
    assert f"PARTUUID={old_boot} /boot" in root_file(image, "root", "/etc/fstab")


def _mbr_linux(path: Path, work: Path, signature: int) -> str:
    """MBR disk, ext4 root in partition 1 found by PARTUUID (fstab and GRUB)."""
    with open(path, "wb") as handle:
        handle.truncate(40 * MIB)
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(path),
        stdin=f"label: dos\nlabel-id: {signature:#010x}\nstart=2048, size={36 * 2048}, type=83\n")
    partuuid = f"{signature:08x}-01"
    root = work / "root"
    for rel, text in {
        "etc/os-release": "ID=debian\nVERSION_ID=12\n",
        "etc/hostname": "mbr-master\n",
        "etc/fstab": f"PARTUUID={partuuid} / ext4 defaults 0 1\n",
        "boot/grub/grub.cfg": f"linux /vmlinuz root=PARTUUID={partuuid} ro\n",
        "etc/lilo.conf": f"image=/vmlinuz\n  append=\"root=PARTUUID={partuuid}\"\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    run("mkfs.ext4", "-q", "-F", "-d", str(root), "-E", f"offset={MIB}", str(path),
        f"{36 * 1024}k")
    return partuuid


def test_mbr_signature_changes_and_partuuids_follow(tmp_path: Path) -> None:
    image = tmp_path / "mbr.img"
    old = _mbr_linux(image, tmp_path, 0x1234ABCD)
    result = run_generalize(image, RunSettings(request=IdentityRequest(seed=5),
                                               only=["linux-disk-ids"]),
                            run_dir=tmp_path / "run")
    assert result.ok, result.report.error
    new_sig = result.report.identity["disk-signature"].new
    assert new_sig and new_sig != "1234abcd"
    assert sfdisk_dump(image)["disk"] == f"0x{new_sig}"
    assert blkid_ptuuid(image) == new_sig
    new = result.report.identity["partuuid:p1"].new
    assert new == f"{new_sig}-01"
    with loops(image, [(MIB, 36 * MIB)], read_only=True) as (device,):
        assert run("debugfs", "-R", "cat /etc/fstab", device) == f"PARTUUID={new} / ext4 defaults 0 1\n"
        assert f"root=PARTUUID={new} ro" in run("debugfs", "-R", "cat /boot/grub/grub.cfg", device)
        assert old not in run("debugfs", "-R", "cat /etc/lilo.conf", device)
    assert any("run `lilo`" in w for w in result.report.warnings)
    assert result.journal_dir is not None
    undo_run(image, result.journal_dir)
    with open(image, "rb") as disk:
        disk.seek(440)
        assert struct.unpack("<I", disk.read(4))[0] == 0x1234ABCD


def test_refused_on_a_disk_that_holds_windows(tmp_path: Path) -> None:
    """Windows (MBR, C: bound to the disk signature) beside a Linux root: nothing changes."""
    from reseal.samples.builders import build_windows_mbr

    hives = {name: REPO / "fixtures" / "hives" / name for name in ("SYSTEM", "SOFTWARE", "SAM",
                                                                   "SECURITY")}
    image = build_windows_mbr(tmp_path / "dual.img", hives).path
    with open(image, "r+b") as disk:
        disk.truncate(136 * MIB)
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", "--append", str(image),
        stdin=f"start={96 * 2048}, size={38 * 2048}, type=83\n")
    root = tmp_path / "linux"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text("ID=debian\n")
    (root / "etc" / "fstab").write_text(f"UUID={uuid.uuid4()} / ext4 defaults 0 1\n")
    run("mkfs.ext4", "-q", "-F", "-d", str(root), "-E", f"offset={96 * MIB}", str(image),
        f"{38 * 1024}k")
    before = sfdisk_dump(image)
    result = run_generalize(image, RunSettings(only=["linux-disk-ids"]), run_dir=tmp_path / "r")
    assert any("disk identity unchanged: Windows on p2" in w for w in result.report.warnings)
    assert sfdisk_dump(image) == before


def test_partuuid_rewrite_is_token_exact() -> None:
    mapping = {"7458d9d8-18f3-46bd-8a13-7ea70c0513ca": "28603cb6-d8c6-471f-894c-c2ab303c55e6",
               "1234abcd-01": "cafef00d-01"}
    text = ("PARTUUID=7458D9D8-18F3-46BD-8A13-7EA70C0513CA x7458d9d8-18f3-46bd-8a13-7ea70c0513ca\n"
            "root=PARTUUID=1234abcd-01 /dev/disk/by-partuuid/1234abcd-01 1234abcd-011\n")
    new, done = replace_partuuids(text, mapping)
    assert new == ("PARTUUID=28603cb6-d8c6-471f-894c-c2ab303c55e6 "
                   "x7458d9d8-18f3-46bd-8a13-7ea70c0513ca\n"
                   "root=PARTUUID=cafef00d-01 /dev/disk/by-partuuid/cafef00d-01 1234abcd-011\n")
    assert len(done) == 3
