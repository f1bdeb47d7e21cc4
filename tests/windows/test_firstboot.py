"""windows-firstboot on a Windows directory target built from real hives (RathbunVM's SAM,
SECURITY, DEFAULT and default-profile NTUSER.DAT with their logs, the dissect SYSTEM):
registered owner, time zone, locale and the first-boot command hook, read back with
python-registry, regipy and hivex; the time zone's bias checked against the IANA database
(zoneinfo) as an independent oracle; existing startup scripts and SetupComplete.cmd kept;
`reseal undo` restores every byte; refusals touch nothing."""

from __future__ import annotations

import configparser
import os
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from reseal.domain.settings import FirstBootSettings
from reseal.errors import BadInput
from reseal.operations.base import IdentityRequest
from reseal.pipeline.runner import RunSettings, run_generalize
from reseal.pipeline.undo import undo_run
from reseal.registry import Hive
from reseal.windows import firstboot, startup

from .helpers import CONFIG, build_real_tree, digests, hivexget, pyreg_value, regipy_value

TIME_ZONES = "Microsoft\\Windows NT\\CurrentVersion\\Time Zones"
GP = "Windows/System32/GroupPolicy"
EXISTING_SCRIPTS_INI = "\r\n[Startup]\r\n0CmdLine=inventory.cmd\r\n0Parameters=/quiet\r\n" \
    "[Shutdown]\r\n0CmdLine=flush.cmd\r\n0Parameters=\r\n"
EXISTING_GPT_INI = b"[General]\r\ngPCFunctionalityVersion=2\r\ngPCMachineExtensionNames=" \
    b"[{35378EAC-683F-11D2-A89A-00C04FBBCFA2}{D02B1F72-3407-48AE-BA88-E8213C6761F1}]\r\n" \
    b"Version=65539\r\n"

# (name, IANA zone, TZI: bias, std bias, dlt bias, std date, dlt date, MUI names)
ZONES = {
    "W. Europe Standard Time": ("Europe/Berlin", (-60, 0, -60, (0, 10, 0, 5, 3, 0, 0, 0),
                                                  (0, 3, 0, 5, 2, 0, 0, 0))),
    "Pacific Standard Time": ("America/Los_Angeles", (480, 0, -60, (0, 11, 0, 1, 2, 0, 0, 0),
                                                      (0, 3, 0, 2, 2, 0, 0, 0))),
    "AUS Eastern Standard Time": ("Australia/Sydney", (-600, 0, -60, (0, 4, 0, 1, 3, 0, 0, 0),
                                                       (0, 10, 0, 1, 2, 0, 0, 0))),
    "Tokyo Standard Time": ("Asia/Tokyo", (-540, 0, 0, (0,) * 8, (0,) * 8)),
}


def tzi(bias: int, std_bias: int, dlt_bias: int, std: tuple[int, ...],
        dlt: tuple[int, ...]) -> bytes:
    return struct.pack("<lll8H8H", bias, std_bias, dlt_bias, *std, *dlt)


def add_time_zones(software: Hive) -> None:
    for number, (name, (_iana, rule)) in enumerate(ZONES.items()):
        key = software.create_key(f"{TIME_ZONES}\\{name}")
        key.set_value("TZI", 3, tzi(*rule))  # type: ignore[arg-type]
        key.set_value("Display", 1, name)
        key.set_value("MUI_Std", 1, f"@tzres.dll,-{100 + 2 * number}")
        key.set_value("MUI_Dlt", 1, f"@tzres.dll,-{101 + 2 * number}")
    # a zone whose rules changed: 2000 had none, later years the current one
    dynamic = software.create_key(f"{TIME_ZONES}\\Pacific Standard Time\\Dynamic DST")
    dynamic.set_value("FirstEntry", 4, 2000)
    dynamic.set_value("LastEntry", 4, 2007)
    dynamic.set_value("2000", 3, tzi(480, 0, -60, (0, 10, 0, 5, 2, 0, 0, 0),
                                     (0, 4, 0, 1, 2, 0, 0, 0)))
    dynamic.set_value("2007", 3, tzi(*ZONES["Pacific Standard Time"][1]))  # type: ignore[arg-type]


def machine_tree(shared: Path, root: Path, *, sysprepped: bool = False) -> Path:
    """RathbunVM's real hives + a SOFTWARE with a time-zone database, an existing local-GPO
    startup script (files and registry) or, Sysprep'd, an existing SetupComplete.cmd."""
    build_real_tree(shared, root)
    config = root / CONFIG
    software = Hive.open(config / "SOFTWARE")
    add_time_zones(software)
    software.create_key("Microsoft\\Windows NT\\CurrentVersion").set_value(
        "SystemRoot", 1, "C:\\Windows")
    if sysprepped:
        software.create_key("Microsoft\\Windows\\CurrentVersion\\Setup\\State").set_value(
            "ImageState", 1, "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE")
        scripts = root / "Windows/Setup/Scripts"
        scripts.mkdir(parents=True)
        (scripts / "SetupComplete.cmd").write_bytes(b"@echo off\r\nrem vendor\r\nexit /b 0")
    else:
        for base in (startup.GP_SCRIPTS, startup.GP_STATE):
            gpo = software.create_key(f"{base}\\0")
            for name, text in (("GPO-ID", "LocalGPO"), ("SOM-ID", "Local"),
                               ("FileSysPath", "C:\\Windows\\System32\\GroupPolicy\\Machine"),
                               ("DisplayName", "Local Group Policy"),
                               ("GPOName", "Local Group Policy")):
                gpo.set_value(name, 1, text)
            existing = software.create_key(f"{base}\\0\\0")
            existing.set_value("Script", 1, "inventory.cmd")
            existing.set_value("Parameters", 1, "/quiet")
        machine = root / GP / "Machine/Scripts/Startup"
        machine.mkdir(parents=True)
        (machine / "inventory.cmd").write_bytes(b"@echo inventory\r\n")
        (root / GP / "Machine/Scripts/scripts.ini").write_bytes(
            b"\xff\xfe" + EXISTING_SCRIPTS_INI.encode("utf-16-le"))
        (root / GP / "gpt.ini").write_bytes(EXISTING_GPT_INI)
    software.save(config / "SOFTWARE")
    (config / "SOFTWARE.reseal-orig").unlink()
    return root


SETTINGS = FirstBootSettings(registered_owner="IT Department",
                             registered_organization="Example Corp",
                             timezone="pacific standard time", locale="de_DE",
                             commands=("ipconfig /registerdns", "echo Grüße > %TEMP%\\x.txt",
                                       "exit 3"))


def run(root: Path, tmp_path: Path, settings: FirstBootSettings, *, dry_run: bool = False
        ) -> object:
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    return run_generalize(root, RunSettings(request=IdentityRequest(firstboot=settings),
                                            only=["windows-firstboot"]),
                          dry_run=dry_run, run_dir=None if dry_run else tmp_path / "run")


def test_settings_and_gpo_hook(shared_dir: Path, tmp_path: Path) -> None:
    root = machine_tree(shared_dir, tmp_path / "root")
    config = root / CONFIG
    before = digests(root)
    result = run(root, tmp_path, SETTINGS)
    software, system = config / "SOFTWARE", config / "SYSTEM"

    version = "Microsoft\\Windows NT\\CurrentVersion"
    assert pyreg_value(software, version, "RegisteredOwner") == "IT Department"
    assert regipy_value(software, version, "RegisteredOrganization") == "Example Corp"

    zone_key = "ControlSet001\\Control\\TimeZoneInformation"
    assert pyreg_value(system, zone_key, "TimeZoneKeyName") == "Pacific Standard Time"
    assert pyreg_value(system, zone_key, "Bias") == 480
    assert hivexget(system, zone_key, "DaylightStart") == struct.pack("<8H", 0, 3, 0, 2, 2, 0,
                                                                      0, 0)
    offset = datetime.now(ZoneInfo("America/Los_Angeles")).utcoffset()
    assert offset is not None
    active = pyreg_value(system, zone_key, "ActiveTimeBias")
    assert isinstance(active, int)
    assert struct.unpack("<i", struct.pack("<I", active))[0] == -int(offset.total_seconds() // 60)
    assert pyreg_value(system, zone_key, "StandardName") == "@tzres.dll,-102"

    for hive, key in ((config / "DEFAULT", "Control Panel\\International"),
                      (root / "Users/Default/NTUSER.DAT", "Control Panel\\International")):
        assert pyreg_value(hive, key, "LocaleName") == "de-DE", hive
        assert regipy_value(hive, key, "Locale") == "00000407", hive
        assert b"sShortDate" not in subprocess_export(hive, key), hive
    assert pyreg_value(system, "ControlSet001\\Control\\Nls\\Locale", "") == "00000407"
    assert pyreg_value(system, "ControlSet001\\Control\\Nls\\CodePage", "OEMCP") == "850"

    # the existing startup script stays first; reseal's hook is appended in both halves
    ini_bytes = (root / GP / "Machine/Scripts/scripts.ini").read_bytes()
    assert ini_bytes.startswith(b"\xff\xfe")
    ini = configparser.ConfigParser()
    ini.read_string(ini_bytes[2:].decode("utf-16-le"))
    assert dict(ini["Startup"]) == {"0cmdline": "inventory.cmd", "0parameters": "/quiet",
                                    "1cmdline": "reseal-firstboot.cmd", "1parameters": ""}
    assert dict(ini["Shutdown"]) == {"0cmdline": "flush.cmd", "0parameters": ""}
    gpt = configparser.ConfigParser()
    gpt.read_string((root / GP / "gpt.ini").read_text("latin-1"))
    assert gpt["General"]["Version"] == "65540"
    assert gpt["General"]["gPCMachineExtensionNames"] == (
        "[{35378EAC-683F-11D2-A89A-00C04FBBCFA2}{D02B1F72-3407-48AE-BA88-E8213C6761F1}]"
        "[{42B5FAAE-6536-11D2-AE5A-0000F87571E3}{40B6664F-4972-11D1-A7CA-0000F87571E3}]")
    for base in (startup.GP_SCRIPTS, startup.GP_STATE):
        assert pyreg_value(software, f"{base}\\0\\1", "Script") == "reseal-firstboot.cmd"
        assert regipy_value(software, f"{base}\\0\\1", "IsPowershell") == 0
    assert pyreg_value(software, f"{startup.GP_SCRIPTS}\\0\\0", "Script") == "inventory.cmd"
    assert pyreg_value(software, startup.WINLOGON_POLICY, "SyncForegroundPolicy") == 1

    hook_dir = root / GP / "Machine/Scripts/Startup"
    hook = (hook_dir / "reseal-firstboot.cmd").read_bytes().decode("ascii")
    work = hook_dir / "reseal-firstboot"
    assert (work / "scripts.ini.after").read_bytes() == \
        b"\xff\xfe" + EXISTING_SCRIPTS_INI.encode("utf-16-le")
    after = configparser.ConfigParser()
    after.read_string((work / "gpt.ini.after").read_text("latin-1"))
    assert after["General"]["Version"] == "65541"  # newer still: the engine reprocesses
    assert "42B5FAAE" not in after["General"]["gPCMachineExtensionNames"]
    assert (work / "command-1.cmd").read_bytes() == b"ipconfig /registerdns\r\n"
    assert (work / "command-2.cmd").read_bytes() == \
        "chcp 65001 >nul\r\necho Grüße > %TEMP%\\x.txt\r\n".encode()
    assert (work / "command-3.cmd").read_bytes() == b"exit 3\r\n"
    assert hook.count('"%ComSpec%" /d /q /c') == 3  # exit 3 ends its own cmd, not the hook
    assert "%SystemRoot%\\Temp\\reseal-firstboot.log" in hook
    assert "exit code %ERRORLEVEL%" in hook
    assert 'copy /y "%RESEAL_HOOK%\\scripts.ini.after"' in hook
    assert "reg delete" in hook and "SyncForegroundPolicy" in hook
    assert hook.rstrip().endswith('(goto) 2>nul & del "%~f0"')
    assert "\r\n" in hook and "\n" not in hook.replace("\r\n", "")
    assert any("before the logon screen" in n for n in result.report.notes)  # type: ignore[attr-defined]

    assert result.journal_dir is not None  # type: ignore[attr-defined]
    undo_run(root, result.journal_dir)  # type: ignore[attr-defined]
    assert digests(root) == before
    assert not (work).exists()


def subprocess_export(hive: Path, key: str) -> bytes:
    import subprocess

    return subprocess.run(["hivexregedit", "--export", str(hive), key], check=True,
                          capture_output=True).stdout


def test_sysprepped_image_uses_setupcomplete(shared_dir: Path, tmp_path: Path) -> None:
    root = machine_tree(shared_dir, tmp_path / "root", sysprepped=True)
    before = digests(root)
    result = run(root, tmp_path, FirstBootSettings(commands=("net start w32time",)))
    scripts = root / "Windows/Setup/Scripts"
    assert (scripts / "SetupComplete.cmd").read_bytes() == \
        b"@echo off\r\nrem vendor\r\nexit /b 0\r\ncall \"%~dp0reseal-firstboot.cmd\"\r\n"
    assert (scripts / "reseal-firstboot/SetupComplete.cmd.before").read_bytes() == \
        b"@echo off\r\nrem vendor\r\nexit /b 0"
    hook = (scripts / "reseal-firstboot.cmd").read_text("ascii")
    assert 'copy /y "%RESEAL_HOOK%\\SetupComplete.cmd.before" "%~dp0SetupComplete.cmd"' in hook
    assert not (root / GP).exists()
    assert any("ImageState IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE" in n
               for n in result.report.notes)  # type: ignore[attr-defined]
    undo_run(root, result.journal_dir)  # type: ignore[attr-defined]
    assert digests(root) == before


@pytest.mark.parametrize(("settings", "message"), [
    (FirstBootSettings(timezone="Pacific Standrd Time"), "did you mean 'Pacific Standard Time'"),
    (FirstBootSettings(locale="xx-YY"), "not a Windows locale name"),
    (FirstBootSettings(commands=("ok", "")), "firstboot.commands[1]: empty command"),
])
def test_refusals_touch_nothing(shared_dir: Path, tmp_path: Path,
                                settings: FirstBootSettings, message: str) -> None:
    root = machine_tree(shared_dir, tmp_path / "root")
    before = digests(root)
    with pytest.raises(BadInput) as caught:
        run(root, tmp_path, settings)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert digests(root) == before


def test_earlier_hook_still_waiting_is_refused(shared_dir: Path, tmp_path: Path) -> None:
    root = machine_tree(shared_dir, tmp_path / "root")
    run(root, tmp_path, FirstBootSettings(commands=("echo one",)))
    before = digests(root)
    with pytest.raises(BadInput, match="already holds a reseal first-boot hook"):
        run(root, tmp_path / "again", FirstBootSettings(commands=("echo two",),
                                                        registered_owner="X"))
    assert digests(root) == before


@pytest.mark.parametrize("name", sorted(ZONES))
def test_active_bias_matches_the_iana_database(name: str) -> None:
    iana, rule = ZONES[name]
    software = Hive.new("ROOT")
    add_time_zones(software)
    zone = firstboot.find_time_zone(software, name)
    start = datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    for step in range(0, 3 * 365 * 24, 7):  # every 7 hours over three years
        when = start + timedelta(hours=step)
        local = when.astimezone(ZoneInfo(iana))
        offset = local.utcoffset()
        assert offset is not None
        assert firstboot.active_bias(zone, when) == -int(offset.total_seconds() // 60), when
    del rule


def test_dynamic_dst_picks_the_year_rule() -> None:
    software = Hive.new("ROOT")
    add_time_zones(software)
    zone = firstboot.find_time_zone(software, "Pacific Standard Time")
    # 2003: DST ended on the last Sunday of October (the rule of 2000 applies until 2006)
    assert firstboot.active_bias(zone, datetime(2003, 10, 30, 12, tzinfo=UTC)) == 480
    assert firstboot.active_bias(zone, datetime(2023, 10, 30, 12, tzinfo=UTC)) == 420
