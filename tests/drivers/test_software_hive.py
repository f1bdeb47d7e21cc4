"""With a SOFTWARE hive: the version comes from CurrentVersion, PnpLockdownFiles is written
and removed again; the operation's validate() refuses a broken INF before any target opens."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.drivers.conftest import SAMPLES, Image
from tests.drivers.oracles import hivexget, pyreg_subkeys, pyreg_tree

from reseal.cli import main
from reseal.drivers.winver import read_windows_version
from reseal.errors import CorruptData
from reseal.operations.base import IdentityRequest
from reseal.operations.windows_drivers import DriversOptions, validate
from reseal.registry import Hive, RegType

LOCKDOWN = "Microsoft\\Windows\\CurrentVersion\\Setup\\PnpLockdownFiles"


def software_hive(path: Path, build: str) -> None:
    hive = Hive.new()
    current = hive.create_key("Microsoft\\Windows NT\\CurrentVersion")
    current.set_value("CurrentMajorVersionNumber", RegType.REG_DWORD, 10)
    current.set_value("CurrentMinorVersionNumber", RegType.REG_DWORD, 0)
    current.set_value("CurrentBuildNumber", RegType.REG_SZ, build)
    current.set_value("CurrentVersion", RegType.REG_SZ, "6.3")
    hive.create_key(LOCKDOWN)
    path.write_bytes(hive.to_bytes())


def test_software_version_and_pnp_lockdown(make_image, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESEAL_STATE_DIR", str(tmp_path / "state"))
    image: Image = make_image("win10")
    software = image.config / "SOFTWARE"
    software_hive(software, "14393")  # 1607: the sample's NTamd64.10.0...16299 section is out
    version = read_windows_version(Hive.from_bytes(image.system.read_bytes()),
                                   Hive.from_bytes(software.read_bytes()))
    assert (version.major, version.minor, version.build, version.arch) == (10, 0, 14393, "amd64")
    before = pyreg_tree(software)
    assert main(["drivers", "add", str(image.root), str(SAMPLES / "resealstor")]) == 0
    entry = f"{LOCKDOWN}\\%SystemRoot%/System32/drivers/resealstor.sys"
    assert hivexget(software, entry, "Class") == "1"
    assert "FileRepository\\resealstor.inf_amd64_" in hivexget(software, entry, "Source")
    # build 14393 picks [ResealStor.NTamd64], which lists DEV_0010 only (not DEV_0011)
    device_ids = pyreg_subkeys(image.drivers, "DriverDatabase\\DeviceIds\\PCI")
    assert "VEN_1B36&DEV_0010&SUBSYS_11001AF4" in device_ids
    assert "VEN_1B36&DEV_0011" not in device_ids
    assert main(["drivers", "remove", str(image.root), "oem12.inf"]) == 0
    assert pyreg_tree(software) == before


def test_validate_reads_every_inf_first(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.inf").write_text("[Version]\nClass=Net\n[Oops\n")
    with pytest.raises(CorruptData, match=r"x\.inf:3"):
        validate(IdentityRequest(), DriversOptions(paths=[str(bad)]))
    validate(IdentityRequest(), DriversOptions(paths=[str(SAMPLES)]))
