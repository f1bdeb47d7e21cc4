"""Strings from an image reach the terminal escaped: no escape sequence (a retitled terminal,
a cleared screen), no bidirectional override, no forged line. JSON keeps them exact."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.hostile.builders import linux_root, write
from tests.hostile.conftest import run_reseal

from reseal.registry import Hive, RegType

TITLE = "\x1b]0;owned\x07"
CLEAR = "\x1b[2J\x1b[H"
CSI_C1 = "\x9b31m"
RTL = "\u202e"
EVIL_HOST = f"evil{TITLE}{CLEAR}"
RAW_BAD = ("\x1b", "\x07", "\x9b", RTL)


def _assert_clean(text: str) -> None:
    for char in RAW_BAD:
        assert char not in text, (char, text[:400])


def _evil_linux(tmp_path: Path) -> Path:
    root = linux_root(tmp_path / "root")
    write(root, "/etc/hostname", EVIL_HOST + "\n")
    write(root, "/etc/machine-id", f"0f1e2d3c{CSI_C1}\n")
    write(root, "/etc/os-release", f'PRETTY_NAME="Debian{RTL}txt.exe"\nID=debian\n')
    # a file name with a newline: it must not add a row of its own to the change table
    name = "wired\nlinux-net-bindings  remove  /etc/shadow"
    write(root, f"/etc/NetworkManager/system-connections/{name}",
          "[connection]\nid=x\nuuid=7d2f6a52-8c0b-4f4e-9d6a-1b2c3d4e5f60\ntype=ethernet\n"
          "[ethernet]\nmac-address=52:54:00:ab:cd:ef\n", 0o600)
    return root


def test_inspect_escapes_linux_identity(tmp_path: Path, state_env: dict[str, str]) -> None:
    root = _evil_linux(tmp_path)
    run = run_reseal(["inspect", root], env=state_env)
    assert run.returncode == 0, run.stderr
    _assert_clean(run.stdout + run.stderr)
    assert "evil\\x1b]0;owned\\x07" in run.stdout
    shown = run_reseal(["inspect", root, "--json"], env=state_env)
    report = json.loads(shown.stdout)
    assert report["linux"][0]["hostname"] == EVIL_HOST  # JSON: exact


def test_generalize_table_has_one_row_per_change(tmp_path: Path,
                                                  state_env: dict[str, str]) -> None:
    root = _evil_linux(tmp_path)
    run = run_reseal(["generalize", root, "--hostname", "clean", "--dry-run"], env=state_env)
    assert run.returncode == 0, run.stderr
    _assert_clean(run.stdout + run.stderr)
    lines = run.stdout.splitlines()
    assert not any(line.startswith("linux-net-bindings  remove  /etc/shadow") for line in lines)
    as_json = run_reseal(["generalize", root, "--hostname", "clean", "--dry-run", "--json"],
                         env=state_env)
    report = json.loads(as_json.stdout)
    heading = next(i for i, line in enumerate(lines) if line.startswith("plan (dry run"))
    table = [line for line in lines[heading + 1:] if line and not line.startswith("note:")]
    assert len(table) == 2 + len(report["changes"])  # header, rule, one line per change
    assert report["identity"]["hostname"]["old"] == EVIL_HOST


def _windows_tree(root: Path, computer_name: str) -> Path:
    config = root / "Windows" / "System32" / "config"
    config.mkdir(parents=True)
    hive = Hive.new("SYSTEM")
    hive.create_key("Select").set_value("Default", RegType.REG_DWORD, 1)
    hive.create_key("Select").set_value("Current", RegType.REG_DWORD, 1)
    names = hive.create_key("ControlSet001\\Control\\ComputerName\\ComputerName")
    names.set_value("ComputerName", RegType.REG_SZ, computer_name)
    (config / "SYSTEM").write_bytes(hive.to_bytes())
    return root


def test_windows_computer_name_is_escaped(tmp_path: Path, state_env: dict[str, str]) -> None:
    root = _windows_tree(tmp_path / "win", f"PC{TITLE}{CLEAR}{RTL}")
    run = run_reseal(["inspect", root], env=state_env)
    assert run.returncode == 0, run.stderr
    _assert_clean(run.stdout + run.stderr)
    assert "PC\\x1b]0;owned\\x07" in run.stdout
    run = run_reseal(["generalize", root, "--operations", "windows-computer-name",
                      "--hostname", "NEWPC", "--dry-run"], env=state_env)
    assert run.returncode == 0, run.stderr
    _assert_clean(run.stdout + run.stderr)
    assert "PC\\x1b]0;owned\\x07" in run.stdout
    hive = root / "Windows" / "System32" / "config" / "SYSTEM"
    run = run_reseal(["hive", "get", hive, "ControlSet001\\Control\\ComputerName\\ComputerName",
                      "ComputerName"], env=state_env)
    assert run.returncode == 0, run.stderr
    _assert_clean(run.stdout)


def test_error_naming_an_image_path_is_one_escaped_line(tmp_path: Path,
                                                         state_env: dict[str, str]) -> None:
    root = linux_root(tmp_path / "root")
    connections = root / "etc" / "NetworkManager" / "system-connections"
    connections.mkdir(parents=True)
    os.mkfifo(connections / f"x{TITLE}\nreseal: error: forged line")
    run = run_reseal(["generalize", root, "--hostname", "clean"], env=state_env, timeout=30)
    assert run.returncode == 2
    _assert_clean(run.stderr)
    assert len(run.error_lines()) == 1 and "FIFO" in run.stderr
    assert "\\nreseal: error: forged line" in run.stderr
