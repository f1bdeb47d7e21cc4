"""Staging real INF packages (placeholder binaries) into directory targets holding real
SYSTEM hives, read back by regipy, python-registry and hivexget, and compared with how the
same hives record their inbox storage drivers (stornvme, LSI_SAS)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from tests.drivers.conftest import SAMPLES, Image, package_from_inf, snapshot
from tests.drivers.oracles import (
    hivexget,
    pyreg_subkeys,
    pyreg_tree,
    pyreg_values,
    regipy_values,
)

from reseal.cli import main

VIOSTOR_IDS = ("PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00",
               "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01")


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "state"
    monkeypatch.setenv("RESEAL_STATE_DIR", str(state))
    return state


def add(image: Image, *paths: Path, extra: tuple[str, ...] = ()) -> int:
    return main(["drivers", "add", str(image.root), *map(str, paths), *extra])


def store_folders(image: Image) -> list[str]:
    repo = image.root / "Windows/System32/DriverStore/FileRepository"
    return sorted(p.name for p in repo.iterdir()) if repo.exists() else []


def oem_infs(image: Image) -> list[str]:
    return sorted(p.name for p in (image.root / "Windows/INF").iterdir())


def types_of(values: dict[str, tuple[int, object]]) -> dict[str, int]:
    return {name: kind for name, (kind, _data) in values.items()}


@pytest.mark.parametrize(("hive", "expected_oem"), [("win81", 3), ("win10", 12), ("win10b", 14)])
def test_viostor_on_windows8_and_10_looks_like_stornvme(make_image, shared_dir: Path, tmp_path: Path,
                                                  hive: str, expected_oem: int) -> None:
    image: Image = make_image(hive)
    package = package_from_inf(shared_dir / "inf/smtomes-public/viostor.inf", tmp_path / "pkg")
    assert add(image, package) == 0
    oem = f"oem{expected_oem}.inf"  # the lowest number free in OemInfMap
    assert oem_infs(image) == [oem]
    (folder,) = store_folders(image)
    assert re.fullmatch(r"viostor\.inf_amd64_[0-9a-f]{16}", folder)
    stored = image.root / "Windows/System32/DriverStore/FileRepository" / folder
    assert sorted(p.name for p in stored.iterdir()) == ["viostor.cat", "viostor.inf",
                                                        "viostor.sys"]
    assert (image.root / "Windows/INF" / oem).read_bytes() == package.read_bytes()
    assert (image.root / "Windows/System32/drivers/viostor.sys").read_bytes() == \
        (package.parent / "viostor.sys").read_bytes()

    system = image.system
    # Services: same value names and types as stornvme in the same hive
    ours = pyreg_values(system, "ControlSet001\\Services\\viostor")
    inbox = pyreg_values(system, "ControlSet001\\Services\\stornvme")
    for name in ("Type", "Start", "ErrorControl", "Group", "ImagePath", "Owners"):
        assert ours[name][0] == inbox[name][0], name
    assert ours["Start"][1] == 0 and ours["Type"][1] == 1 and ours["ErrorControl"][1] == 1
    assert ours["Group"][1] == "SCSI miniport"
    assert ours["ImagePath"][1] == "System32\\drivers\\viostor.sys"
    assert inbox["ImagePath"][1].startswith("System32\\drivers\\")
    assert regipy_values(system, "ControlSet001\\Services\\viostor")["Start"] == (4, 0)
    assert hivexget(system, "ControlSet001\\Services\\viostor\\Parameters", "BusType") == "1"
    assert hivexget(system, "ControlSet001\\Services\\viostor", "Group") == "SCSI miniport"

    # SYSTEM\DriverDatabase: shaped like stornvme.inf's records
    db = "DriverDatabase"
    inf_files = pyreg_values(system, f"{db}\\DriverInfFiles\\{oem}")
    assert types_of(inf_files) == types_of(pyreg_values(system,
                                                        f"{db}\\DriverInfFiles\\stornvme.inf"))
    assert inf_files["Active"][1] == folder and inf_files["Configurations"][1][0] == "scsi_inst"
    stornvme_pkg = next(n for n in pyreg_subkeys(system, f"{db}\\DriverPackages")
                        if n.startswith("stornvme.inf_"))
    pkg = regipy_values(system, f"{db}\\DriverPackages\\{folder}")
    inbox_pkg = regipy_values(system, f"{db}\\DriverPackages\\{stornvme_pkg}")
    assert pkg[""][1] == oem and pkg["Provider"][1] == "Red Hat, Inc."
    ours_version = bytes.fromhex(pkg["Version"][1])
    inbox_version = bytes.fromhex(inbox_pkg["Version"][1])
    assert len(ours_version) == len(inbox_version) == 48
    assert ours_version[8:24] == inbox_version[8:24]  # both SCSIAdapter class GUID
    assert struct.unpack_from("<Q", ours_version, 32)[0] == (100 << 48) | (85 << 32) | \
        (104 << 16) | 20800
    if hive == "win10":  # this image has a third-party storage package: VMware pvscsi (oem4)
        pvscsi = pyreg_values(system, f"{db}\\DriverPackages\\pvscsi.inf_amd64_b0d59727d712523f")
        assert pvscsi[""][1] == "oem4.inf"
        assert pvscsi["Version"][1][:8] == ours_version[:8]  # the oem flavour of the header
        for name in ("Provider", "InfName", "Catalog", "ImportDate", "StatusFlags", ""):
            assert types_of(pyreg_values(system, f"{db}\\DriverPackages\\{folder}"))[name] == \
                pvscsi[name][0], name
    config = pyreg_values(system, f"{db}\\DriverPackages\\{folder}\\Configurations\\scsi_inst")
    inbox_config = pyreg_values(system, f"{db}\\DriverPackages\\{stornvme_pkg}\\Configurations"
                                        "\\Stornvme_Inst")
    assert types_of(config) == types_of(inbox_config)
    assert config["Service"][1] == "viostor"
    descriptor = pyreg_values(system, f"{db}\\DriverPackages\\{folder}\\Descriptors\\"
                                      f"{VIOSTOR_IDS[0]}")
    inbox_descriptor = pyreg_values(system, f"{db}\\DriverPackages\\{stornvme_pkg}"
                                            "\\Descriptors\\PCI\\CC_010802")
    assert types_of(descriptor) == types_of(inbox_descriptor)
    assert descriptor["Description"][1] == "%viostorscsi.devicedesc%"
    assert descriptor["Manufacturer"][1] == "%vendor%"
    assert inbox_descriptor["Manufacturer"][1] == "%ms-nvme%"  # same %token% convention
    strings = pyreg_values(system, f"{db}\\DriverPackages\\{folder}\\Strings")
    assert strings["viostorscsi.devicedesc"] == (1, "Red Hat VirtIO SCSI controller")
    assert strings["vendor"] == (1, "Red Hat, Inc.")
    ours_id = pyreg_values(system, f"{db}\\DeviceIds\\{VIOSTOR_IDS[0]}")
    inbox_id = pyreg_values(system, f"{db}\\DeviceIds\\PCI\\CC_010802")
    assert ours_id[oem][0] == inbox_id["stornvme.inf"][0] == 3
    assert ours_id[oem][1] == b"\x01\xff\x00\x00"
    assert pyreg_values(system, f"{db}\\DeviceIds\\PCI\\VEN_1AF4&DEV_1001")[oem][1][0] == 2
    oem_map = pyreg_values(system, db)["OemInfMap"][1]
    assert oem_map[expected_oem // 8] & (0x80 >> (expected_oem % 8))

    # the DRIVERS hive did not exist: it was created, and holds the full record
    assert image.drivers.exists()
    assert hivexget(image.drivers, f"{db}\\DriverInfFiles\\{oem}", "Active") == folder
    assert regipy_values(image.drivers, f"{db}\\DriverPackages\\{folder}")[""][1] == oem


def test_lsi_u3_on_windows7_uses_critical_device_database(make_image, shared_dir: Path,
                                                           tmp_path: Path) -> None:
    image: Image = make_image("win7")
    package = package_from_inf(shared_dir / "inf/windows-driver-samples/lsi_u3.inf",
                               tmp_path / "pkg", arch="x86")
    assert add(image, package) == 0
    (folder,) = store_folders(image)
    assert re.fullmatch(r"lsi_u3\.inf_x86_neutral_[0-9a-f]{16}", folder)
    assert not image.drivers.exists()  # Windows 7 has no DriverDatabase
    system = image.system
    inbox = pyreg_values(system, "ControlSet001\\Services\\LSI_SAS")
    for control_set in ("ControlSet001", "ControlSet002"):
        ours = pyreg_values(system, f"{control_set}\\Services\\LSI_U3")
        for name in ("Type", "Start", "ErrorControl", "Group", "ImagePath"):
            assert ours[name][0] == inbox[name][0], name
        assert ours["ImagePath"][1] == "\\SystemRoot\\system32\\drivers\\lsi_u3.sys"
        assert inbox["ImagePath"][1].lower().startswith("\\systemroot\\system32\\drivers\\")
        assert (ours["Start"][1], ours["Group"][1]) == (0, "SCSI Miniport")
        for device in ("pci#ven_1000&dev_0020", "pci#ven_1000&dev_0021"):
            path = f"{control_set}\\Control\\CriticalDeviceDatabase\\{device}"
            cdd = pyreg_values(system, path)
            reference = pyreg_values(system, f"{control_set}\\Control\\CriticalDeviceDatabase"
                                             "\\pci#ven_1000&dev_0054")
            assert types_of(cdd) == types_of(reference)
            assert cdd["ClassGUID"][1] == reference["ClassGUID"][1]  # same SCSIAdapter class
            assert cdd["Service"][1] == "LSI_U3" and cdd["DriverPackageId"][1] == folder
            assert regipy_values(system, path)["Service"][1] == "LSI_U3"
            assert hivexget(system, path, "ClassGUID") == "{4D36E97B-E325-11CE-BFC1-08002BE10318}"


def test_second_add_changes_nothing_and_remove_restores(make_image, tmp_path: Path) -> None:
    image: Image = make_image("win10")
    before = snapshot(image.root)
    assert add(image, SAMPLES) == 0
    after_first = snapshot(image.root)
    assert add(image, SAMPLES) == 0
    assert snapshot(image.root) == after_first  # byte-identical, hives included
    oems = oem_infs(image)
    assert oems == ["oem12.inf", "oem13.inf"]
    for oem in oems:
        assert main(["drivers", "remove", str(image.root), oem]) == 0
    after_remove = snapshot(image.root)
    # every file but SYSTEM is back byte for byte (DRIVERS, made by add, is gone again)
    assert {k: v for k, v in after_remove.items() if not k.endswith("SYSTEM")} == \
        {k: v for k, v in before.items() if not k.endswith("SYSTEM")}
    # SYSTEM holds exactly the keys and values it held (cell layout may differ)
    assert pyreg_tree(image.system) == pyreg_tree(image.pristine)


def test_undo_of_an_add_is_byte_for_byte(make_image, state_dir: Path) -> None:
    image: Image = make_image("win7")
    before = snapshot(image.root)
    assert add(image, SAMPLES / "resealstor") == 0
    (journal,) = list(state_dir.glob("runs/*/journal"))
    assert snapshot(image.root) != before
    assert main(["undo", str(image.root), str(journal)]) == 0
    assert snapshot(image.root) == before


def test_remove_windows7_boot_driver(make_image, shared_dir: Path, tmp_path: Path) -> None:
    image: Image = make_image("win7")
    package = package_from_inf(shared_dir / "inf/windows-driver-samples/lsi_u3.inf",
                               tmp_path / "pkg", arch="x86")
    assert add(image, package) == 0
    assert main(["drivers", "list", str(image.root)]) == 0
    assert main(["drivers", "remove", str(image.root), "oem0.inf"]) == 0
    assert store_folders(image) == [] or all(
        not any((image.root / "Windows/System32/DriverStore/FileRepository" / f).rglob("*.*"))
        for f in store_folders(image))
    assert not (image.root / "Windows/System32/drivers/lsi_u3.sys").exists()
    assert pyreg_tree(image.system) == pyreg_tree(image.pristine)


def test_network_package_is_not_boot_critical(make_image, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    image: Image = make_image("win10")
    assert add(image, SAMPLES / "resealnet") == 0
    (folder,) = store_folders(image)
    nested = image.root / "Windows/System32/DriverStore/FileRepository" / folder / "bin"
    assert (nested / "resealnet.sys").exists()  # kept at its path inside the package
    assert "resealnet" not in pyreg_subkeys(image.system, "ControlSet001\\Services")
    assert folder not in pyreg_subkeys(image.system, "DriverDatabase\\DriverPackages")
    assert folder in pyreg_subkeys(image.drivers, "DriverDatabase\\DriverPackages")
    capsys.readouterr()
    assert main(["drivers", "list", str(image.root), "--json"]) == 0
    listed = capsys.readouterr().out
    assert '"oem_inf": "oem12.inf"' in listed and '"boot_critical": false' in listed


def test_dry_run_writes_nothing(make_image) -> None:
    image: Image = make_image("win10")
    before = snapshot(image.root)
    assert add(image, SAMPLES, extra=("--dry-run",)) == 0
    assert snapshot(image.root) == before


def test_existing_drivers_hive_is_kept(make_image, shared_dir: Path, tmp_path: Path) -> None:
    """A DRIVERS hive Windows made (it lists inbox packages) is edited, never dropped."""
    from reseal.registry import Hive, RegType

    image: Image = make_image("win10")
    hive = Hive.new()
    database = hive.create_key("DriverDatabase")
    database.set_value("OemInfMap", RegType.REG_BINARY, bytes.fromhex("fff0"))
    inbox = hive.create_key("DriverDatabase\\DriverPackages\\disk.inf_amd64_0123456789abcdef")
    inbox.set_value("", RegType.REG_SZ, "disk.inf")
    hive.create_key("DriverDatabase\\DriverInfFiles\\disk.inf").set_value(
        "Active", RegType.REG_SZ, "disk.inf_amd64_0123456789abcdef")
    image.drivers.write_bytes(hive.to_bytes())
    before = pyreg_tree(image.drivers)
    package = package_from_inf(shared_dir / "inf/python-opsi/vioscsi_amd64.inf", tmp_path / "p")
    assert add(image, package) == 0
    assert hivexget(image.drivers, "DriverDatabase\\DriverInfFiles\\oem12.inf", "@")
    assert pyreg_values(image.drivers, "DriverDatabase")["OemInfMap"][1] == bytes.fromhex("fff8")
    assert main(["drivers", "remove", str(image.root), "oem12.inf"]) == 0
    assert image.drivers.exists()
    assert pyreg_tree(image.drivers) == before


def test_published_name_is_the_lowest_free_number(make_image, shared_dir: Path) -> None:
    image: Image = make_image("win7")
    inf_dir = image.root / "Windows/INF"
    for taken in ("oem0.inf", "OEM2.INF"):  # Windows' own names, any case
        (inf_dir / taken).write_bytes(b"[Version]\r\nSignature=\"$Windows NT$\"\r\n")
    assert add(image, SAMPLES / "resealstor") == 0
    assert (inf_dir / "oem1.inf").read_bytes() == \
        (SAMPLES / "resealstor/resealstor.inf").read_bytes()
    assert add(image, SAMPLES / "resealnet") == 0
    assert (inf_dir / "oem3.inf").exists()


@pytest.mark.parametrize("hive", ["win7", "win10b"])
def test_remove_after_single_add_is_byte_for_byte(make_image, shared_dir: Path, tmp_path: Path,
                                                  hive: str) -> None:
    """Remove right after `drivers add` of that package: every hive (and log) as before."""
    image: Image = make_image(hive)
    source = ("inf/windows-driver-samples/lsi_u3.inf" if hive == "win7"
              else "inf/smtomes-public/viostor.inf")
    package = package_from_inf(shared_dir / source, tmp_path / "pkg",
                               arch="x86" if hive == "win7" else None)
    before = snapshot(image.root)
    assert add(image, package) == 0
    changed = snapshot(image.root)
    assert changed["Windows/System32/config/SYSTEM"] != before["Windows/System32/config/SYSTEM"]
    (oem,) = oem_infs(image)
    assert main(["drivers", "remove", str(image.root), oem]) == 0
    assert snapshot(image.root) == before


def test_remove_after_other_changes_is_logical(make_image, tmp_path: Path) -> None:
    """Removing in reverse order of adding is byte-exact at each step; removing the first
    package while the second is still there falls back to deleting what it wrote."""
    image: Image = make_image("win10")
    before = snapshot(image.root)
    assert add(image, SAMPLES / "resealstor") == 0  # oem12
    after_first = snapshot(image.root)
    assert add(image, SAMPLES / "resealnet") == 0  # oem13
    assert main(["drivers", "remove", str(image.root), "oem13.inf"]) == 0
    assert snapshot(image.root) == after_first
    assert add(image, SAMPLES / "resealnet") == 0  # oem13 again
    assert main(["drivers", "remove", str(image.root), "oem12.inf"]) == 0  # not the last add
    assert main(["drivers", "remove", str(image.root), "oem13.inf"]) == 0
    after = snapshot(image.root)
    assert after["Windows/System32/config/SYSTEM"] != before["Windows/System32/config/SYSTEM"]
    assert pyreg_tree(image.system) == pyreg_tree(image.pristine)
