"""The remaining Sysprep generalize items on directory targets built from real hives: non-present
PnP devices (real Windows 10 SYSTEM), event logs, RegBack removal, SID-named folders with undo,
scheduled tasks whose TaskCache holds no file hash, and a REG_SZ holding the old name inside a
longer word (explained as such)."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest
from Registry import Registry

from reseal.operations.base import IdentityRequest
from reseal.operations.windows_regback import RegBackOptions
from reseal.pipeline.runner import RunSettings, run_generalize
from reseal.pipeline.undo import undo_run
from reseal.registry import Hive

from .helpers import CONFIG, RATHBUN_SID, build_real_tree, digests

NEW_SID = "S-1-5-21-1234567890-987654321-555555555"


@pytest.fixture
def tree(shared_dir: Path, tmp_path: Path) -> Path:
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    return build_real_tree(shared_dir, tmp_path / "root")


def test_nonpresent_devices_removed_from_real_system(tree: Path, tmp_path: Path) -> None:
    system_path = tree / CONFIG / "SYSTEM"
    enum = "ControlSet001\\Enum"
    before = Registry.Registry(str(system_path))
    gone = ["SWD\\PRINTENUM\\{30D69C51-C860-4590-80A2-59FC3BABC16A}"]
    for instance in gone:
        before.open(f"{enum}\\{instance}")
    result = run_generalize(tree, RunSettings(only=["windows-pnp-nonpresent"]),
                            run_dir=tmp_path / "run")
    removed = [c.where for c in result.report.changes if c.where.startswith(f"SYSTEM\\{enum}")]
    assert len(removed) == 5  # 7 removed after their last arrival, 2 of them root-enumerated
    after = Registry.Registry(str(system_path))
    for instance in gone:
        with pytest.raises(Registry.RegistryKeyNotFoundException):
            after.open(f"{enum}\\{instance}")
    after.open(f"{enum}\\ROOT\\KDNIC\\0000")  # root-enumerated: stays
    assert result.journal_dir is not None
    undo_run(tree, result.journal_dir)


def test_event_logs_regback_removal_and_undo(tree: Path, tmp_path: Path) -> None:
    logs = tree / "Windows/System32/winevt/Logs"
    logs.mkdir(parents=True)
    (logs / "System.evtx").write_bytes(b"ElfFile\0" + RATHBUN_SID.encode("utf-16-le"))
    (logs / "Security.evtx").write_bytes(b"ElfFile\0")
    regback = tree / CONFIG / "RegBack"
    regback.mkdir()
    (regback / "SAM").write_bytes((tree / CONFIG / "SAM").read_bytes())
    (regback / "SOFTWARE").write_bytes(b"")  # Windows 10 1803+ leaves empty placeholders
    before = digests(tree)
    result = run_generalize(tree, RunSettings(
        request=IdentityRequest(machine_sid=NEW_SID),
        only=["windows-machine-sid", "windows-event-logs", "windows-regback"],
        options={"windows-regback": RegBackOptions(remove=True)}), run_dir=tmp_path / "run")
    assert not list(logs.iterdir())
    assert not (regback / "SAM").exists() and (regback / "SOFTWARE").stat().st_size == 0
    assert result.journal_dir is not None
    undo_run(tree, result.journal_dir)
    assert digests(tree) == before


def test_regback_refreshed_from_generalized_hives(tree: Path, tmp_path: Path) -> None:
    regback = tree / CONFIG / "RegBack"
    regback.mkdir()
    (regback / "SAM").write_bytes((tree / CONFIG / "SAM").read_bytes())
    run_generalize(tree, RunSettings(request=IdentityRequest(machine_sid=NEW_SID),
                                     only=["windows-machine-sid", "windows-regback"]),
                   run_dir=tmp_path / "run")
    copy = Registry.Registry(str(regback / "SAM"))
    members = [k.name() for k in copy.open("SAM\\Domains\\Builtin\\Aliases\\Members").subkeys()]
    assert NEW_SID in members and RATHBUN_SID not in members
    # the same cells as the live hive (base blocks differ in sequence numbers only)
    assert (regback / "SAM").read_bytes()[4096:] == (tree / CONFIG / "SAM").read_bytes()[4096:]


def test_sid_folders_renamed_lookalike_and_dpapi_kept(tree: Path, tmp_path: Path) -> None:
    user = f"{RATHBUN_SID}-1001"
    lookalike = f"{RATHBUN_SID}9-1001"
    bin_dir = tree / "$Recycle.Bin"
    (bin_dir / user).mkdir(parents=True)
    (bin_dir / user / "desktop.ini").write_bytes(b"[.ShellClassInfo]\r\n")
    (bin_dir / lookalike).mkdir()
    protect = tree / "Users/AndrewRathbun/AppData/Roaming/Microsoft/Protect" / user
    protect.mkdir(parents=True)
    (protect / "Preferred").write_bytes(bytes(24))
    before = digests(tree)
    result = run_generalize(tree, RunSettings(request=IdentityRequest(machine_sid=NEW_SID),
                                              only=["windows-machine-sid", "windows-sid-folders"]),
                            run_dir=tmp_path / "run")
    assert (bin_dir / f"{NEW_SID}-1001" / "desktop.ini").exists()
    assert not (bin_dir / user).exists() and (bin_dir / lookalike).is_dir()
    assert protect.is_dir()
    assert any("DPAPI" in note and str(protect.relative_to(tree)) in note
               for note in result.report.notes)
    assert result.journal_dir is not None
    undo_run(tree, result.journal_dir)
    assert digests(tree) == before and (bin_dir / user).is_dir()


def test_task_without_file_hash_and_name_inside_a_word(tree: Path, tmp_path: Path) -> None:
    from .helpers import REAL_SYSTEM_NAME

    tasks = tree / "Windows/System32/Tasks"
    tasks.mkdir(parents=True)
    text = (f'<?xml version="1.0" encoding="UTF-16"?>\r\n<Task><RegistrationInfo><Author>'
            f"{REAL_SYSTEM_NAME}\\AndrewRathbun</Author></RegistrationInfo><Principals><Principal>"
            f"<UserId>{RATHBUN_SID}-1001</UserId></Principal></Principals></Task>\r\n")
    (tasks / "Nightly").write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    software = Hive.open(tree / CONFIG / "SOFTWARE")
    cache = "Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache"
    software.create_key(f"{cache}\\Tree\\Nightly").set_value("Id", 1, "{11111111-2222-3333-4444-555555555555}")
    software.create_key(f"{cache}\\Tasks\\{{11111111-2222-3333-4444-555555555555}}").set_value(
        "Hash", 3, bytes(32))
    software.create_key("Microsoft\\Reseal").set_value("Word", 1, f"{REAL_SYSTEM_NAME}X-share")
    software.save(tree / CONFIG / "SOFTWARE")
    result = run_generalize(tree, RunSettings(
        request=IdentityRequest(hostname="CLONE-5", machine_sid=NEW_SID),
        only=["windows-machine-sid", "windows-computer-name", "windows-scheduled-tasks"]),
        run_dir=tmp_path / "run")
    data = (tasks / "Nightly").read_bytes()
    assert data.startswith(codecs.BOM_UTF16_LE)
    rewritten = data[2:].decode("utf-16-le")
    assert f"<UserId>{NEW_SID}-1001</UserId>" in rewritten and "CLONE-5\\AndrewRathbun" in rewritten
    assert any("hold no SHA-256" in note for note in result.report.notes)
    held = Registry.Registry(str(tree / CONFIG / "SOFTWARE")).open(
        f"{cache}\\Tasks\\{{11111111-2222-3333-4444-555555555555}}").value("Hash").raw_data()
    assert held == bytes(32)  # not a file hash: left as it is
    assert any("Microsoft\\Reseal [Word]" in note and "string value" in note
               and "longer word" in note for note in result.report.notes)
