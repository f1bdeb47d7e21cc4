"""The project's own fixture hives: valid for three readers, and a full generalize on them that
impacket still decrypts with the image's boot key (SYSTEM and SAM built to match)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from Cryptodome.Hash import MD4
from Registry import Registry

from reseal.image.target import open_target
from reseal.operations.base import IdentityRequest
from reseal.operations.windows_hardware_bindings import HardwareBindingsOptions
from reseal.operations.windows_leftovers import scan_windows_leftovers
from reseal.pipeline.runner import RunResult, RunSettings, run_generalize
from reseal.pipeline.undo import undo_run
from reseal.registry import Hive
from reseal.windows.secdesc import descriptor_sids
from reseal.windows.sid import Sid

from .helpers import (
    CONFIG,
    REPO,
    build_fixture_tree,
    digests,
    hivex_keys,
    hivexget,
    impacket_sam_dump,
    load_builder,
    pyreg_value,
    regipy_value,
)

FIXTURES = REPO / "fixtures" / "hives"
NEW_SID = "S-1-5-21-3000000001-3000000002-3000000003"
NEW_NAME = "fx-clone"
OPS = ["windows-machine-sid", "windows-file-acls", "windows-computer-name", "windows-clone-ids",
       "windows-hardware-bindings", "windows-leftovers"]
CS = "ControlSet001"


@pytest.mark.parametrize("hive,key,value,expected", [
    ("SYSTEM", f"{CS}\\Control\\ComputerName\\ComputerName", "ComputerName", "RESEAL-FIXTURE"),
    ("SYSTEM", f"{CS}\\Services\\Tcpip\\Parameters", "Hostname", "reseal-fixture"),
    ("SOFTWARE", "Microsoft\\Cryptography", "MachineGuid", "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
    ("SOFTWARE", "Microsoft\\Windows\\CurrentVersion\\WindowsUpdate", "SusClientId",
     "3c2b1a09-8f7e-4d6c-9b5a-493827160504"),
])
def test_committed_fixtures_read_by_three_readers(hive: str, key: str, value: str, expected: str) -> None:
    path = FIXTURES / hive
    assert pyreg_value(path, key, value) == expected
    assert regipy_value(path, key, value) == expected
    assert hivexget(path, key, value).decode().strip() == expected


def test_committed_fixtures_sam_security_agree_and_decrypt() -> None:
    sid = load_builder().Machine().sid.to_bytes()
    assert pyreg_value(FIXTURES / "SAM", "SAM\\Domains\\Account", "V")[-24:] == sid  # type: ignore[index]
    assert regipy_value(FIXTURES / "SECURITY", "Policy\\PolAcDmS", "") == sid
    assert hivexget(FIXTURES / "SECURITY", "Policy\\PolAcDmS", "")[:24] == sid
    lines = impacket_sam_dump(FIXTURES)
    assert [line.split(":")[:2] for line in lines] == [["Administrator", "500"], ["alice", "1001"]]
    assert lines[0].split(":")[3] == MD4.new("Passw0rd!".encode("utf-16-le")).hexdigest()
    for name in ("SYSTEM", "SOFTWARE", "SAM", "SECURITY"):
        Hive.from_bytes((FIXTURES / name).read_bytes(), name=name)  # reseal's own reader


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], RunResult]:
    base = tmp_path_factory.mktemp("fixture")
    root = build_fixture_tree(base / "root")
    before = digests(root)
    os.environ["RESEAL_STATE_DIR"] = str(base / "state")
    result = run_generalize(root, RunSettings(
        request=IdentityRequest(hostname=NEW_NAME, machine_sid=NEW_SID, seed=11), only=OPS,
        options={"windows-hardware-bindings": HardwareBindingsOptions(remove_nic_bindings=True)}),
        run_dir=base / "run")
    return root, before, result


def test_fixture_generalize_sid_everywhere(fixture_run: tuple[Path, dict[str, str], RunResult]) -> None:
    root, _before, _result = fixture_run
    config = root / CONFIG
    new = Sid.parse(NEW_SID)
    user = f"{NEW_SID}-1001"
    assert pyreg_value(config / "SAM", "SAM\\Domains\\Account", "V")[-24:] == new.to_bytes()  # type: ignore[index]
    assert hivexget(config / "SECURITY", "Policy\\PolAcDmS", "")[:24] == new.to_bytes()
    profiles = "Microsoft\\Windows NT\\CurrentVersion\\ProfileList"
    assert user in hivex_keys(config / "SOFTWARE", profiles)
    assert regipy_value(config / "SOFTWARE", f"{profiles}\\{user}", "Sid") == Sid.parse(user).to_bytes()
    assert user in hivex_keys(config / "SYSTEM", f"{CS}\\Services\\bam\\State\\UserSettings")
    rules = f"{CS}\\Services\\SharedAccess\\Parameters\\FirewallPolicy\\FirewallRules"
    rule = Registry.Registry(str(config / "SYSTEM")).open(rules).values()[0].value()
    assert f"LUOwn={user}|" in rule
    hive = Hive.from_bytes((config / "SYSTEM").read_bytes())
    key = hive.key(f"{CS}\\Services\\bam\\State\\UserSettings\\{user}")
    assert key is not None and Sid.parse(user) in descriptor_sids(key.security)


def test_fixture_generalize_impacket_decrypts_with_boot_key(
        fixture_run: tuple[Path, dict[str, str], RunResult]) -> None:
    config = fixture_run[0] / CONFIG
    lines = impacket_sam_dump(config)
    assert [line.split(":")[:2] for line in lines] == [["Administrator", "500"], ["alice", "1001"]]
    assert lines[0].split(":")[3] == MD4.new("Passw0rd!".encode("utf-16-le")).hexdigest()
    assert lines[1].split(":")[3] == MD4.new("alice-secret".encode("utf-16-le")).hexdigest()
    assert all("(Admin=True)" in line for line in lines)  # alias C members follow the new SID


def test_fixture_generalize_name_ids_hardware(fixture_run: tuple[Path, dict[str, str], RunResult]) -> None:
    root, _before, result = fixture_run
    config = root / CONFIG
    system, software = config / "SYSTEM", config / "SOFTWARE"
    assert hivexget(system, f"{CS}\\Control\\ComputerName\\ComputerName", "ComputerName").strip() == b"FX-CLONE"
    assert hivexget(system, f"{CS}\\Services\\Tcpip\\Parameters", "NV Hostname").strip() == b"fx-clone"
    assert regipy_value(system, f"{CS}\\Services\\EventLog\\State", "LastComputerName") == "FX-CLONE"
    assert pyreg_value(software, "Microsoft\\Windows NT\\CurrentVersion\\Winlogon", "DefaultDomainName") == "FX-CLONE"
    tcpip = hivex_keys(system, f"{CS}\\Services\\Tcpip\\Parameters")
    assert "DNSRegisteredAdapters" not in tcpip
    assert "Interfaces" in tcpip and hivex_keys(system, f"{CS}\\Services\\Tcpip\\Parameters\\Interfaces") == []
    identity = result.report.identity
    assert pyreg_value(software, "Microsoft\\Cryptography", "MachineGuid") == identity["machine-guid"].new
    assert identity["machine-guid"].old == "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    sqm = pyreg_value(software, "Microsoft\\SQMClient", "MachineId")
    assert sqm == identity["sqm-machine-id"].new and sqm != identity["sqm-machine-id"].old
    wu = Registry.Registry(str(software)).open("Microsoft\\Windows\\CurrentVersion\\WindowsUpdate")
    assert [v.name() for v in wu.values()] == []
    tcpip6 = Registry.Registry(str(system)).open(f"{CS}\\Services\\Tcpip6\\Parameters")
    assert "Dhcpv6DUID" not in [v.name() for v in tcpip6.values()]
    iface = tcpip6.subkey("Interfaces").subkeys()[0]
    assert "Dhcpv6Iaid" not in [v.name() for v in iface.values()]
    hw = pyreg_value(system, f"{CS}\\Control\\IDConfigDB\\Hardware Profiles\\0001", "HwProfileGuid")
    assert hw == identity["hw-profile-guid"].new != identity["hw-profile-guid"].old
    for driver in ("storahci", "stornvme", "atapi", "intelide"):
        assert pyreg_value(system, f"{CS}\\Services\\{driver}", "Start") == 0
    assert hivex_keys(system, f"{CS}\\Services\\storahci") == []
    assert not (root / "Windows" / "SMSCFG.INI").exists()  # ConfigMgr makes a new identity
    mounted = Registry.Registry(str(system)).open("MountedDevices")
    assert [v.name() for v in mounted.values()] == ["\\DosDevices\\C:"]
    assert hivex_keys(system, f"{CS}\\Control\\Class\\{{4d36e972-e325-11ce-bfc1-08002be10318}}") == []
    assert hivex_keys(system, f"{CS}\\Enum\\PCI\\VEN_8086&DEV_100E&SUBSYS_001E8086&REV_02") == []


def test_fixture_generalize_leaves_no_trace_and_undoes(
        fixture_run: tuple[Path, dict[str, str], RunResult], tmp_path: Path) -> None:
    root, before, result = fixture_run
    assert not [w for w in result.report.warnings if "leftovers" in w]
    old = {k: v.old for k, v in result.report.identity.items() if v.old and v.old != v.new}
    assert {"machine-sid", "computer-name", "machine-guid", "sqm-machine-id", "sus-client-id",
            "hw-profile-guid", "dhcpv6-duid"} <= set(old)
    with open_target(root) as target:
        left = scan_windows_leftovers(target.windows[0], old)
    assert left == []
    ntuser = Hive.from_bytes((root / "Users/alice/NTUSER.DAT").read_bytes())
    owner = ntuser.key("Software\\Microsoft\\Protect")
    assert owner is not None and owner.value("Owner").raw == Sid.parse(f"{NEW_SID}-1001").to_bytes()  # type: ignore[union-attr]
    assert Sid.parse(f"{NEW_SID}-1001") in descriptor_sids(ntuser.root.security)
    classes = Hive.from_bytes((root / "Users/alice/AppData/Local/Microsoft/Windows/UsrClass.dat").read_bytes())
    assert classes.root.name == f"{NEW_SID}-1001_Classes"
    shell = classes.key("Local Settings\\Software\\Microsoft\\Windows\\Shell")
    assert shell is not None and shell.value("Sid").data == f"{NEW_SID}-1001"  # type: ignore[union-attr]
    # the scan does find the old identity in the original hives
    pristine = build_fixture_tree(tmp_path / "pristine")
    with open_target(pristine) as target:
        hits = scan_windows_leftovers(target.windows[0], old)
    found = {hit.identity for hit in hits}
    assert {"machine-sid", "computer-name", "machine-guid", "sus-client-id", "dhcpv6-duid"} <= found
    forms = {hit.form for hit in hits}
    assert {"key name", "binary SID", "utf-16le", "security descriptor", "ascii"} <= forms
    # undo through the pipeline restores every file byte for byte
    assert result.journal_dir is not None
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(root, copy)
    undo_run(copy, result.journal_dir)
    assert digests(copy) == before


def test_fixture_structural_check(fixture_run: tuple[Path, dict[str, str], RunResult]) -> None:
    from reseal.registry.check import check_bytes

    root = fixture_run[0]
    for path in [*(root / CONFIG).iterdir(), *(root / "Users").rglob("*.DAT"), *(root / "Users").rglob("*.dat")]:
        if not path.name.upper().endswith((".LOG1", ".LOG2")):
            assert check_bytes(path.read_bytes(), name=path.name) is None, path
    for path in FIXTURES.iterdir():
        assert check_bytes(path.read_bytes(), name=path.name) is None, path
