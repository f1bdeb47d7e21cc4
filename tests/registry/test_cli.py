"""The `reseal hive` command line, run as a user would run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from reseal.registry import Hive, RegType


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reseal", "hive", *args], capture_output=True, text=True)


def _small_hive(tmp_path: Path) -> Path:
    hive = Hive.new("ROOT")
    key = hive.create_key("Control\\ComputerName", class_name="Cls")
    key.set_value("ComputerName", RegType.REG_SZ, "OLDNAME")
    path = tmp_path / "SYSTEM"
    path.write_bytes(hive.to_bytes())
    return path


def test_set_get_delete_export_import_check(tmp_path: Path) -> None:
    path = _small_hive(tmp_path)
    assert _run("set", str(path), "Control\\ComputerName", "ComputerName", "--type", "REG_SZ", "--data", "NEW").returncode == 0
    assert _run("set", str(path), "control\\new", "M", "--type", "multi_sz", "--data", "a", "--data", "b").returncode == 0
    assert _run("set", str(path), "Control\\New", "B", "--type", "REG_BINARY", "--data", "00ff10").returncode == 0
    got = json.loads(_run("get", str(path), "CONTROL\\computername", "ComputerName", "--json").stdout)
    assert got == {"name": "ComputerName", "type": "REG_SZ", "data": "NEW"}
    assert (tmp_path / "SYSTEM.reseal-orig").exists()
    exported = _run("export", str(path)).stdout
    assert exported.startswith("Windows Registry Editor Version 5.00")
    assert '"B"=hex:00,ff,10' in exported and '"M"=hex(7):61,00,00,00,62,00,00,00,00,00' in exported
    regfile = tmp_path / "x.reg"
    regfile.write_text(exported)
    copy = tmp_path / "COPY"
    copy.write_bytes(Hive.new("ROOT").to_bytes())
    assert _run("import", str(copy), str(regfile)).returncode == 0
    assert _run("export", str(copy)).stdout == exported
    assert _run("delete", str(path), "Control\\New", "B").returncode == 0
    assert _run("delete", str(path), "Control\\New").returncode == 0
    assert Hive.open(path).key("Control\\New") is None
    assert Hive.open(path).key("Control\\ComputerName").class_name == "Cls"
    result = _run("check", str(path))
    assert result.returncode == 0 and result.stdout.startswith("ok")


def test_bad_input_exit_2_one_line(tmp_path: Path) -> None:
    path = _small_hive(tmp_path)
    before = path.read_bytes()
    for args in (
        ("set", str(path), "K", "V", "--type", "REG_DWORD", "--data", "nope"),
        ("set", str(path), "K", "V", "--type", "REG_NOPE", "--data", "1"),
        ("get", str(path), "Missing\\Key"),
        ("get", str(tmp_path / "absent"), "K"),
    ):
        result = _run(*args)
        assert result.returncode == 2, args
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert path.read_bytes() == before


def test_check_reports_first_fault(hives_dir: Path, tmp_path: Path) -> None:
    src = hives_dir / "yarp" / "WrongOrderHive"
    shutil.copy(src, tmp_path / "W")
    result = _run("check", str(tmp_path / "W"))
    assert result.returncode == 1 and "not sorted" in result.stdout and "offset 0x" in result.stdout


def test_first_save_keeps_the_original_bytes_and_mode(tmp_path: Path) -> None:
    """The original (and each log) stays as NAME.reseal-orig with its bytes and mode (a SAM is
    0600); later saves keep that first version."""
    import os

    path = _small_hive(tmp_path)
    log = tmp_path / "SYSTEM.LOG1"
    log.write_bytes(b"old log bytes")
    os.chmod(path, 0o600)
    os.chmod(log, 0o600)
    original = path.read_bytes()
    assert _run("set", str(path), "Control\\ComputerName", "ComputerName", "--type", "REG_SZ", "--data", "A").returncode == 0
    assert _run("set", str(path), "Control\\ComputerName", "ComputerName", "--type", "REG_SZ", "--data", "B").returncode == 0
    keep = tmp_path / "SYSTEM.reseal-orig"
    assert keep.read_bytes() == original and (keep.stat().st_mode & 0o777) == 0o600
    assert (tmp_path / "SYSTEM.LOG1.reseal-orig").read_bytes() == b"old log bytes"
    assert (tmp_path / "SYSTEM.LOG1.reseal-orig").stat().st_mode & 0o777 == 0o600
    assert log.stat().st_size == 0 and (path.stat().st_mode & 0o777) == 0o600
    assert Hive.open(path).key("Control\\ComputerName").value("ComputerName").data == "B"  # type: ignore[union-attr]
