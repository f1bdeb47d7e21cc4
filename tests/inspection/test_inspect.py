"""`reseal inspect` on the real sample images, asserted against what the builders put in and
the facts SOURCES.md records for the real hives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reseal.image.target import open_target
from reseal.inspection import inspect_target, render_text
from reseal.inspection.sids import sam_account_domain_sid, sid_to_string
from reseal.linux.ssh import ssh_fingerprint
from reseal.samples import build_linux_gpt, build_windows_gpt
from reseal.samples.builders import SampleImage

RESEAL = [sys.executable, "-m", "reseal"]


def _inspect(path: Path):  # type: ignore[no-untyped-def]
    with open_target(path) as target:
        return inspect_target(target)


def test_windows_gpt_report(windows_gpt: SampleImage) -> None:
    report = _inspect(windows_gpt.path)
    assert report.table == "gpt"
    rows = {r.index: r for r in report.partitions}
    assert rows[1].type_name == "EFI system" and rows[1].fstype == "vfat"
    assert rows[2].type_name == "Microsoft reserved" and not rows[2].mounted
    assert rows[3].fstype == "ntfs" and rows[3].label == "Windows"
    assert rows[3].type_name == "Microsoft basic data"  # the standard type GUID, by name
    (win,) = report.windows
    assert win.system_root == "/Windows"
    assert win.control_set == 1
    assert win.computer_name == "WKS-WIN732BITA"  # regipy SYSTEM, per SOURCES.md
    assert win.architecture == "x86"
    assert win.sam_sid == "S-1-5-21-4070822719-3404542230-2541167049"  # dfwinreg SAM
    assert win.security_sid == win.sam_sid
    assert win.hive_paths["SOFTWARE"] is None
    assert win.product_name is None and win.machine_guid is None
    assert any("SOFTWARE hive: not found" in a for a in win.absent)


def test_windows7_mbr_report(windows_mbr: SampleImage) -> None:
    report = _inspect(windows_mbr.path)
    assert report.table == "mbr"
    assert [r.index for r in report.partitions] == [1, 2]
    assert report.partitions[0].bootable and report.partitions[0].label == "System Reserved"
    (win,) = report.windows
    assert win.volume == "p2"
    assert win.computer_name == "SENSEI"  # regipy SYSTEM_2
    assert win.architecture == "AMD64"
    assert win.sam_sid == "S-1-5-21-3064465268-1549819264-574340205"  # Win7-EZ SAM
    assert win.security_sid == "S-1-5-21-3064465268-1549819264-574340205"


def test_windows_hives_cross_checked_with_python_registry(win_hives: dict[str, Path]) -> None:
    """Independent reader: python-registry decodes the same SIDs from the same hives."""
    from Registry import Registry  # python-registry

    sam = Registry.Registry(str(win_hives["SAM"]))
    v_value = sam.open("SAM\\Domains\\Account").value("V").value()
    security = Registry.Registry(str(win_hives["SECURITY"]))
    sid = security.open("Policy\\PolAcDmS").value("(default)").value()
    assert sam_account_domain_sid(v_value) == sid_to_string(sid)


def test_windows_with_software_hive(windows_gpt: SampleImage, images_dir: Path,
                                    win_hives: dict[str, Path]) -> None:
    """With a SOFTWARE hive (the project's own, when built) its facts appear, as hivexget reads
    them; values it lacks are reported absent."""
    software = Path(__file__).resolve().parents[2] / "fixtures" / "hives" / "SOFTWARE"
    if not software.is_file():
        pytest.skip(f"{software} not built yet: no SOFTWARE hive to put in the image")
    image = build_windows_gpt(images_dir / "with-software.img", {**win_hives, "SOFTWARE": software})
    (win,) = _inspect(image.path).windows

    def hivexget(key: str, value: str) -> str | None:
        proc = subprocess.run(["hivexget", str(software), key, value], capture_output=True,
                              text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    assert win.machine_guid == hivexget("\\Microsoft\\Cryptography", "MachineGuid")
    product = hivexget("\\Microsoft\\Windows NT\\CurrentVersion", "ProductName")
    assert win.product_name == product
    if product is None:
        assert any("ProductName" in a for a in win.absent)
    assert not any(a.startswith("SOFTWARE hive") for a in win.absent)


def test_missing_hives_reported_absent(images_dir: Path, win_hives: dict[str, Path]) -> None:
    image = build_windows_gpt(images_dir / "only-system.img", {"SYSTEM": win_hives["SYSTEM"]})
    (win,) = _inspect(image.path).windows
    assert win.computer_name == "WKS-WIN732BITA"
    assert win.sam_sid is None and win.security_sid is None
    assert {a.split(" hive")[0] for a in win.absent if " hive:" in a} == {
        "SOFTWARE", "SAM", "SECURITY"}


def test_linux_gpt_report(linux_gpt: SampleImage) -> None:
    report = _inspect(linux_gpt.path)
    assert [r.type_name for r in report.partitions] == ["EFI system", "Linux filesystem"]
    (lin,) = report.linux
    facts = linux_gpt.facts
    assert lin.os_name == facts["os_name"] and lin.os_version == "12"
    assert lin.hostname == facts["hostname"]
    assert lin.machine_id == facts["machine_id"]
    # fingerprints computed by reseal == what ssh-keygen -l printed when the keys were made
    got = {k.path.rsplit("/", 1)[1]: k.fingerprint for k in lin.ssh_host_keys}
    assert got == facts["ssh_fingerprints"]
    assert [(b.name, b.root) for b in lin.boot_loaders] == [("GRUB 2", facts["boot_root"])]
    assert [e.mountpoint for e in lin.fstab] == ["/", "/boot/efi", "/tmp"]
    assert lin.mounted_below_root == {"/boot/efi": "p1"}


def test_linux_mbr_lilo_report(linux_mbr: SampleImage) -> None:
    report = _inspect(linux_mbr.path)
    (lin,) = report.linux
    assert lin.os_name == "Slackware 15.0"
    assert lin.hostname == linux_mbr.facts["hostname"]
    assert [(b.name, b.root) for b in lin.boot_loaders] == [("LILO", "/dev/sda1")]
    assert [r.index for r in report.partitions] == [1, 5]


def test_qcow2_report_matches_raw(linux_qcow2: SampleImage, linux_gpt: SampleImage) -> None:
    raw, qcow = _inspect(linux_gpt.path), _inspect(linux_qcow2.path)
    assert qcow.kind == "qcow2"
    assert qcow.linux == raw.linux
    assert [(r.start, r.size, r.uuid) for r in qcow.partitions] == [
        (r.start, r.size, r.uuid) for r in raw.partitions]


def test_hostile_hostname_link_reported_not_followed(images_dir: Path) -> None:
    image = build_linux_gpt(images_dir / "hostile-inspect.img", hostile="hostname-link")
    (lin,) = _inspect(image.path).linux
    assert lin.hostname is None
    assert any("/etc/hostname" in a and "leaves the image root" in a for a in lin.absent)
    assert "root:x:0:0" not in render_text(_inspect(image.path))


def test_ssh_fingerprint_format() -> None:
    # the sha256 of the blob b"abc", base64 without padding
    line = "ssh-ed25519 YWJj comment"
    assert ssh_fingerprint(line) == ("ssh-ed25519",
                                     "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0")
    assert ssh_fingerprint("garbage") is None


def test_cli_table_and_json(linux_gpt: SampleImage, windows_gpt: SampleImage) -> None:
    text = subprocess.run([*RESEAL, "inspect", str(windows_gpt.path)], capture_output=True,
                          text=True, check=True).stdout
    assert "WKS-WIN732BITA" in text and "S-1-5-21-4070822719-3404542230-2541167049" in text
    assert "Microsoft reserved" in text
    out = subprocess.run([*RESEAL, "inspect", "--json", str(linux_gpt.path)],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["linux"][0]["hostname"] == linux_gpt.facts["hostname"]
    assert data["partitions"][1]["uuid"] == linux_gpt.facts["root_uuid"]


def test_cli_refusal_is_one_line_exit_2(tmp_path: Path, linux_gpt: SampleImage) -> None:
    cut = tmp_path / "cut.img"
    shutil.copyfile(linux_gpt.path, cut)
    with open(cut, "r+b") as handle:
        handle.truncate(40 << 20)
    proc = subprocess.run([*RESEAL, "inspect", str(cut)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "truncated" in proc.stderr
    assert "Traceback" not in proc.stderr
