"""A Debian root on LVM, opened without device-mapper, generalized, and its LVM UUIDs renewed.

The image is made by Debian's lvm2 tools (see lvm_images.py). What reseal finds is checked
against lvm2 (`pvs`/`vgs`/`lvs`, `vgck`), blkid and debugfs reading the image through their own
loop devices; undo is checked byte for byte on the LVM metadata regions.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from tests.image.lvm_images import (
    MASTER_HOST,
    MASTER_ID,
    MIB,
    VG,
    LvmImage,
    build_lvm_image,
    copy_image,
    loops,
    lvm,
    lvm_report,
    missing_tools,
    root_file,
)

from reseal.image.lvm import read_pv_label
from reseal.image.target import OpenOptions, open_target
from reseal.inspection.gather import inspect_target
from reseal.operations.base import IdentityRequest
from reseal.operations.linux_lvm_uuids import LvmUuidsOptions, replace_lvm_ids
from reseal.pipeline.runner import RunSettings, run_generalize
from reseal.pipeline.undo import undo_run

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for loop devices and mounts"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"lvm2 tools missing: {missing_tools()}"),
]
HYGIENE = ["linux-logfiles", "linux-shell-history", "linux-tmp-files", "linux-package-cache",
           "linux-crash-data", "linux-utmp"]


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> LvmImage:
    work = tmp_path_factory.mktemp("lvm-master")
    return build_lvm_image(work / "lvm.img", work)


@pytest.fixture
def clone(master: LvmImage, tmp_path: Path) -> LvmImage:
    return copy_image(master, tmp_path / "clone.img")


def metadata_regions(image: LvmImage) -> str:
    """Digest of every byte outside the file systems: the GPT, each PV's label and metadata
    areas (first MiB of each PV and pv1's last MiB, where its second copy lives)."""
    digest = hashlib.sha256()
    with open(image.path, "rb") as disk:
        for start, _length in [(0, MIB), image.partitions["pv1"], image.partitions["pv2"]]:
            disk.seek(start)
            digest.update(disk.read(MIB))
        start, size = image.partitions["pv1"]
        disk.seek(start + size - MIB)
        digest.update(disk.read(MIB))
    return digest.hexdigest()


def blkid_at(image: Path, offset: int, tag: str) -> str:
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", tag, "-O", str(offset), str(image)],
                          capture_output=True, text=True).stdout.strip()


def test_inspect_opens_linear_lvs_and_says_why_not_the_others(master: LvmImage) -> None:
    with open_target(master.path) as target:
        report = inspect_target(target)
        linux = target.linux[0]
        assert linux.volume.key == f"{VG}-root"
        assert {mp: v.key for mp, v in linux.extra_volumes.items()} == {"/boot": "p1",
                                                                        "/var": f"{VG}-var"}
        volumes = {v.key: v for v in target.volumes}
    (group,) = report.volume_groups
    vgs = lvm_report(master, "vgs", "vg_name,vg_uuid,vg_seqno")[0]
    assert (group.name, group.uuid, group.seqno) == (vgs["vg_name"], vgs["vg_uuid"],
                                                     int(vgs["vg_seqno"]))
    lvs = {row["lv_name"]: row["lv_uuid"] for row in lvm_report(master, "lvs", "lv_name,lv_uuid")}
    assert {lv.name: lv.uuid for lv in group.logical_volumes} == lvs
    opened = {lv.name: lv.volume for lv in group.logical_volumes}
    assert opened == {"root": f"{VG}-root", "swap": f"{VG}-swap", "var": f"{VG}-var",
                      "spacer": f"{VG}-spacer", "home": "", "fast": ""}
    notes = {lv.name: lv.note for lv in group.logical_volumes}
    assert "not one contiguous range" in notes["home"]
    assert "striped over 2 physical volumes" in notes["fast"]
    # the byte ranges lvm2 reports hold the file systems blkid finds there
    for name in ("root", "var", "swap"):
        start, size = master.lv_ranges[name]
        volume = volumes[f"{VG}-{name}"]
        assert volume.partition is not None
        assert (volume.partition.start, volume.partition.size) == (start, size)
        assert volume.uuid == blkid_at(master.path, start, "UUID") == master.facts[
            f"{name}_uuid"]
    pvs = {row["pv_uuid"] for row in lvm_report(master, "pvs", "pv_uuid")}
    assert {volumes["p2"].uuid, volumes["p3"].uuid} == pvs
    assert volumes["p2"].fstype == "LVM2_member"


def test_generalize_and_hygiene_on_an_lvm_root(clone: LvmImage, tmp_path: Path) -> None:
    before = root_file(clone, "root", "/etc/hostname")
    result = run_generalize(clone.path, RunSettings(
        request=IdentityRequest(hostname="lvm-clone-01", seed=7), enable=HYGIENE),
        run_dir=tmp_path / "run")
    assert result.ok, result.report.error
    assert root_file(clone, "root", "/etc/hostname") == "lvm-clone-01\n"
    assert root_file(clone, "root", "/etc/machine-id") == ""
    with loops(clone.path, [clone.lv_ranges["var"]], read_only=True) as (device,):
        listing = subprocess.run(["debugfs", "-R", "ls -p /log", device], capture_output=True,
                                 text=True, check=True).stdout
        crash = subprocess.run(["debugfs", "-R", "ls -p /crash", device], capture_output=True,
                               text=True, check=True).stdout
        journal = subprocess.run(["debugfs", "-R", "ls -p /log/journal", device],
                                 capture_output=True, text=True, check=True).stdout
    assert "syslog" not in listing and "/journal/" in listing and "core.1234" not in crash
    assert MASTER_ID not in journal  # the directory named after the master's machine-id
    assert result.journal_dir is not None
    undo_run(clone.path, result.journal_dir)
    assert root_file(clone, "root", "/etc/hostname") == before == MASTER_HOST + "\n"
    assert root_file(clone, "var", "/log/syslog").startswith("Jan  1")


def test_lvm_uuids_read_back_by_lvm2_and_undone(clone: LvmImage, tmp_path: Path) -> None:
    original = metadata_regions(clone)
    old_seqno = int(lvm_report(clone, "vgs", "vg_seqno")[0]["vg_seqno"])
    ranges_before = lvm_report(clone, "lvs", "lv_name,seg_pe_ranges")
    result = run_generalize(clone.path, RunSettings(
        request=IdentityRequest(seed=11), only=["linux-lvm-uuids"],
        options={"linux-lvm-uuids": LvmUuidsOptions(force_pv_uuids=True)}),
        run_dir=tmp_path / "run")
    assert result.ok, result.report.error
    ids = {name: v.new for name, v in result.report.identity.items()}
    vgs = lvm_report(clone, "vgs", "vg_uuid,vg_seqno,vg_mda_count,vg_mda_used_count")[0]
    assert vgs == {"vg_uuid": ids[f"lvm-vg-uuid:{VG}"], "vg_seqno": str(old_seqno + 1),
                   "vg_mda_count": "3", "vg_mda_used_count": "3"}
    pvs = lvm_report(clone, "pvs", "pv_uuid")
    assert sorted(row["pv_uuid"] for row in pvs) == sorted([ids["lvm-pv-uuid:p2"],
                                                           ids["lvm-pv-uuid:p3"]])
    lvs = {row["lv_name"]: row["lv_uuid"] for row in lvm_report(clone, "lvs", "lv_name,lv_uuid")}
    assert lvs == {name: ids[f"lvm-lv-uuid:{VG}/{name}"] for name in lvs}
    assert lvm_report(clone, "lvs", "lv_name,seg_pe_ranges") == ranges_before
    assert not set(ids.values()) & set(clone.facts.values())
    with loops(clone.path, clone.pv_ranges(), read_only=True) as devices:
        lvm("vgck", devices, VG)
    # references that name the UUIDs follow; names do not change
    new_dm = f"LVM-{ids[f'lvm-vg-uuid:{VG}'].replace('-', '')}" \
             f"{ids[f'lvm-lv-uuid:{VG}/root'].replace('-', '')}"
    assert root_file(clone, "root", "/etc/kernel/cmdline") == (
        f"root=/dev/disk/by-id/dm-uuid-{new_dm} ro rd.lvm.lv={VG}/root\n")
    grub = _boot_file(clone, "/grub/grub.cfg")
    assert new_dm in grub and clone.facts["dm_uuid"] not in grub
    assert f"root=/dev/mapper/{VG}-root ro rd.lvm.lv={VG}/root" in grub
    backup = root_file(clone, "root", f"/etc/lvm/backup/{VG}")
    assert ids[f"lvm-vg-uuid:{VG}"] in backup and clone.facts["vg_uuid"] not in backup
    devices_file = root_file(clone, "root", "/etc/lvm/devices/system.devices")
    assert f"PVID={ids['lvm-pv-uuid:p2'].replace('-', '')}" in devices_file
    assert clone.facts["pv1_uuid"].replace("-", "") not in devices_file
    assert f"/dev/mapper/{VG}-root / ext4" in root_file(clone, "root", "/etc/fstab")
    # reseal reopens it: the same volumes, the new ids
    with open_target(clone.path) as target:
        assert target.linux[0].volume.key == f"{VG}-root"
        assert target.lvm is not None and target.lvm.groups[0].group.uuid == ids[
            f"lvm-vg-uuid:{VG}"]
    assert result.journal_dir is not None
    undone = undo_run(clone.path, result.journal_dir)
    assert undone.disk_regions_restored > 0
    assert metadata_regions(clone) == original
    assert lvm_report(clone, "vgs", "vg_uuid")[0]["vg_uuid"] == clone.facts["vg_uuid"]
    assert root_file(clone, "root", "/etc/kernel/cmdline").count(clone.facts["dm_uuid"]) == 1


def _boot_file(image: LvmImage, path: str) -> str:
    with loops(image.path, [image.partitions["boot"]], read_only=True) as (device,):
        return subprocess.run(["debugfs", "-R", f"cat {path}", device], capture_output=True,
                              text=True, check=True).stdout


def test_pv_uuids_stay_while_a_devices_file_names_them(clone: LvmImage, tmp_path: Path) -> None:
    result = run_generalize(clone.path, RunSettings(only=["linux-lvm-uuids"]),
                            run_dir=tmp_path / "run")
    assert result.ok
    assert any("PV UUIDs kept" in w and "system.devices" in w for w in result.report.warnings)
    pvs = {row["pv_uuid"] for row in lvm_report(clone, "pvs", "pv_uuid")}
    assert pvs == {clone.facts["pv1_uuid"], clone.facts["pv2_uuid"]}
    assert lvm_report(clone, "vgs", "vg_uuid")[0]["vg_uuid"] != clone.facts["vg_uuid"]


def test_dry_run_and_a_damaged_copy_write_nothing(clone: LvmImage, tmp_path: Path) -> None:
    original = metadata_regions(clone)
    dry = run_generalize(clone.path, RunSettings(only=["linux-lvm-uuids"]), dry_run=True)
    assert any(c.where.startswith("LVM VG") for c in dry.report.changes)
    assert metadata_regions(clone) == original
    # damage the text of pv1's second metadata copy (at the end of the PV)
    start, size = clone.partitions["pv1"]
    with open(clone.path, "r+b") as disk:
        def read(offset: int, length: int) -> bytes:
            disk.seek(start + offset)
            return disk.read(length)

        label = read_pv_label(read, size, "pv1")
        assert label is not None and len(label.metadata_areas) == 2
        second = label.metadata_areas[1]
        assert second.start > size // 2
        where = start + second.start + second.text_offset + 20
        disk.seek(where)
        byte = disk.read(1)
        disk.seek(where)
        disk.write(bytes([byte[0] ^ 0x20]))
    damaged = metadata_regions(clone)
    result = run_generalize(clone.path, RunSettings(only=["linux-lvm-uuids"]),
                            run_dir=tmp_path / "run")
    assert any("UUIDs unchanged" in w and "unreadable" in w for w in result.report.warnings)
    assert metadata_regions(clone) == damaged
    with open_target(clone.path) as target:
        assert target.linux[0].volume.key == f"{VG}-root"  # the good copies still open it


def test_reference_rewrite_is_token_exact() -> None:
    old_vg, old_lv = "AAAAAA-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa", "BBBBBB-bbbb-bbbb-bbbb-bbbb-bbbb-bbbbbb"
    new_vg, new_lv = "CCCCCC-cccc-cccc-cccc-cccc-cccc-cccccc", "DDDDDD-dddd-dddd-dddd-dddd-dddd-dddddd"
    plain = old_vg.replace("-", "")
    text = (f"root=/dev/disk/by-id/dm-uuid-LVM-{plain}{old_lv.replace('-', '')}\n"
            f"set root='lvmid/{old_vg}/{old_lv}'\nPVID={plain} x{plain} {old_vg}x\n")
    new_text, done = replace_lvm_ids(text, {old_vg: new_vg, old_lv: new_lv})
    assert new_text == (
        f"root=/dev/disk/by-id/dm-uuid-LVM-{new_vg.replace('-', '')}{new_lv.replace('-', '')}\n"
        f"set root='lvmid/{new_vg}/{new_lv}'\nPVID={new_vg.replace('-', '')} x{plain} "
        f"{old_vg}x\n")
    assert len(done) == 4


def test_a_vg_grub_boot_code_names_keeps_its_uuids(clone: LvmImage, tmp_path: Path) -> None:
    """GRUB's core.img finds /boot by `lvmid/<VG UUID>/<LV UUID>` (load.cfg beside it): the
    VG keeps every UUID, with the reason, and the disk is not written."""
    vg_uuid, lv_uuid = clone.facts["vg_uuid"], clone.facts["root_lv_uuid"]
    with open_target(clone.path, OpenOptions(writable=True)) as target:
        fs = target.linux[0].fs
        fs.mkdir("/boot/grub/i386-pc")
        fs.write_text("/boot/grub/i386-pc/load.cfg",
                      f"search.fs_uuid x root lvmid/{vg_uuid}/{lv_uuid}\n")
    original = metadata_regions(clone)
    result = run_generalize(clone.path, RunSettings(only=["linux-lvm-uuids"]),
                            run_dir=tmp_path / "run")
    assert any("UUIDs unchanged" in w and f"lvmid/{vg_uuid}" in w and "grub-install" in w
               for w in result.report.warnings)
    assert metadata_regions(clone) == original
    assert lvm_report(clone, "vgs", "vg_uuid")[0]["vg_uuid"] == vg_uuid
