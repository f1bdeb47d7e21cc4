"""End to end on real hives: generalize a directory target, then check with independent readers.

Tree: RathbunVM (Windows 10) SAM, SECURITY, DEFAULT and two NTUSER.DAT with their logs, the
dissect.regf SYSTEM (another machine: no real SYSTEM matches a SAM), and a project-built SOFTWARE
for the RathbunVM SID and name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from reseal.errors import BadInput
from reseal.image.target import OpenOptions, open_target
from reseal.journal import read_entries
from reseal.operations.base import IdentityRequest
from reseal.operations.windows_leftovers import scan_windows_leftovers
from reseal.pipeline.runner import RunResult, RunSettings, run_generalize
from reseal.windows.sam import decode_policy_name
from reseal.windows.sid import Sid

from .helpers import (
    CONFIG,
    RATHBUN_NAME,
    RATHBUN_SID,
    REAL_SYSTEM_NAME,
    build_real_tree,
    digests,
    hivex_keys,
    hivexget,
    impacket_sam_dump,
    pyreg_value,
    regipy_value,
)

NEW_SID = "S-1-5-21-1234567890-987654321-555555555"
NEW_NAME = "Clone-042"
WINDOWS_OPERATIONS = ["windows-machine-sid", "windows-file-acls", "windows-computer-name",
                      "windows-clone-ids", "windows-hardware-bindings", "windows-leftovers"]


@dataclass
class RealRun:
    root: Path
    before: dict[str, str]
    result: RunResult
    impacket_before: list[str]


@pytest.fixture(scope="module")
def real_run(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    base = tmp_path_factory.mktemp("real")
    root = build_real_tree(shared_dir, base / "root")
    before = digests(root)
    # impacket reads the SAM as stored (logs not applied); compare after applying them ourselves
    os.environ["RESEAL_STATE_DIR"] = str(base / "state")
    result = run_generalize(root, RunSettings(machine="real", request=IdentityRequest(
        hostname=NEW_NAME, machine_sid=NEW_SID, seed=7)), run_dir=base / "run")
    return RealRun(root, before, result, [])


def test_report_identities(real_run: RealRun) -> None:
    identity = real_run.result.report.identity
    assert identity["machine-sid"].old == RATHBUN_SID and identity["machine-sid"].new == NEW_SID
    assert identity["computer-name"].old == REAL_SYSTEM_NAME
    assert identity["computer-name-2"].old == RATHBUN_NAME
    assert identity["machine-guid"].new and identity["machine-guid"].old
    assert any("DPAPI" in note and "AndrewRathbun" in note for note in real_run.result.report.notes)


def test_three_readers_see_new_sid(real_run: RealRun) -> None:
    config = real_run.root / CONFIG
    new = Sid.parse(NEW_SID).to_bytes()
    for reader in (pyreg_value, regipy_value):
        v = reader(config / "SAM", "SAM\\Domains\\Account", "V")
        assert isinstance(v, bytes) and v[-24:] == new, reader
        s = reader(config / "SECURITY", "Policy\\PolAcDmS", "")
        assert isinstance(s, bytes) and s == new, reader
    assert hivexget(config / "SAM", "SAM\\Domains\\Account", "V")[-24:] == new
    assert hivexget(config / "SECURITY", "Policy\\PolAcDmS", "")[:24] == new
    # SID-named keys renamed, as each reader lists them
    accounts = hivex_keys(config / "SECURITY", "Policy\\Accounts")
    assert f"{NEW_SID}-501" in accounts and not any(RATHBUN_SID in a for a in accounts)
    members = hivex_keys(config / "SAM", "SAM\\Domains\\Builtin\\Aliases\\Members")
    assert NEW_SID in members and RATHBUN_SID not in members
    profiles = "Microsoft\\Windows NT\\CurrentVersion\\ProfileList"
    assert pyreg_value(config / "SOFTWARE", f"{profiles}\\{NEW_SID}-1001", "Sid") == \
        Sid.parse(f"{NEW_SID}-1001").to_bytes()


def test_alias_membership_values_keep_type_as_count(real_run: RealRun) -> None:
    from Registry import Registry

    sam = Registry.Registry(str(real_run.root / CONFIG / "SAM"))
    key = sam.open(f"SAM\\Domains\\Builtin\\Aliases\\Members\\{NEW_SID}\\000001F4")
    value = key.value("(default)")
    assert value.value_type() == 1 and value.raw_data() == b"\x20\x02\x00\x00"


def test_three_readers_see_new_name(real_run: RealRun) -> None:
    config = real_run.root / CONFIG
    cs = "ControlSet001"
    places = [
        (f"{cs}\\Control\\ComputerName\\ComputerName", "ComputerName", NEW_NAME.upper()),
        (f"{cs}\\Services\\Tcpip\\Parameters", "Hostname", NEW_NAME),
        (f"{cs}\\Services\\Tcpip\\Parameters", "NV Hostname", NEW_NAME),
        (f"{cs}\\Services\\EventLog\\State", "LastComputerName", NEW_NAME.upper()),
    ]
    for key, value, expected in places:
        assert pyreg_value(config / "SYSTEM", key, value) == expected
        assert regipy_value(config / "SYSTEM", key, value) == expected
        assert hivexget(config / "SYSTEM", key, value).decode().strip() == expected
    raw = pyreg_value(config / "SECURITY", "Policy\\PolAcDmN", "")
    assert isinstance(raw, bytes) and decode_policy_name(raw) == NEW_NAME.upper()
    assert "4e,00,45,00,57,00" not in hivexget(config / "SECURITY", "Policy\\PolAcDmN", "").decode()
    assert pyreg_value(config / "SOFTWARE", "Microsoft\\Windows NT\\CurrentVersion\\Winlogon",
                       "DefaultDomainName") == NEW_NAME.upper()
    from Registry import Registry

    tcpip = Registry.Registry(str(config / "SYSTEM")).open(f"{cs}\\Services\\Tcpip\\Parameters")
    assert "DNSRegisteredAdapters" not in [k.name() for k in tcpip.subkeys()]


def test_three_readers_see_new_guids(real_run: RealRun) -> None:
    config = real_run.root / CONFIG
    identity = real_run.result.report.identity
    guid = identity["machine-guid"].new
    assert guid and re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", guid)
    key = "Microsoft\\Cryptography"
    assert pyreg_value(config / "SOFTWARE", key, "MachineGuid") == guid
    assert regipy_value(config / "SOFTWARE", key, "MachineGuid") == guid
    assert hivexget(config / "SOFTWARE", key, "MachineGuid").decode().strip() == guid
    hw = identity["hw-profile-guid"].new
    hw_key = "ControlSet001\\Control\\IDConfigDB\\Hardware Profiles\\0001"
    assert hivexget(config / "SYSTEM", hw_key, "HwProfileGuid").decode().strip() == hw
    wu = "Microsoft\\Windows\\CurrentVersion\\WindowsUpdate"
    assert hivexget(config / "SOFTWARE", wu).decode().count("SusClientId") == 0


def test_impacket_still_reads_the_sam(real_run: RealRun, shared_dir: Path, tmp_path: Path) -> None:
    """Same users, RIDs, hash fields and Admin flags as the original SAM (recovered the same way)."""
    from reseal.registry import Hive

    from .helpers import copy_with_logs

    original = tmp_path / "orig"
    (original / CONFIG).mkdir(parents=True)
    copy_with_logs(shared_dir / "hives" / "dfir-artifact-museum/Win10-RathbunVM", "SAM",
                   original / CONFIG / "SAM")
    Hive.open(original / CONFIG / "SAM").save(original / CONFIG / "SAM")
    (original / CONFIG / "SYSTEM").write_bytes((real_run.root / CONFIG / "SYSTEM").read_bytes())
    before = impacket_sam_dump(original / CONFIG)
    after = impacket_sam_dump(real_run.root / CONFIG)
    assert [line.split(":")[:2] for line in after] == [line.split(":")[:2] for line in before]
    assert after == before  # same decrypted fields and Admin=True/False flags
    assert any("Administrator:500:" in line and "(Admin=True)" in line for line in after)


def test_no_leftovers_after_full_run(real_run: RealRun) -> None:
    report = real_run.result.report
    assert not [w for w in report.warnings if "windows-leftovers" in w]
    old = {k: v.old for k, v in report.identity.items() if v.old and v.old != v.new}
    with open_target(real_run.root) as target:
        hits = scan_windows_leftovers(target.windows[0], old)
    explained = "\n".join(report.notes)
    unexplained = [h for h in hits if h.where not in explained]
    assert unexplained == []


def test_logs_emptied_and_undo_restores_bytes(real_run: RealRun, tmp_path: Path) -> None:
    config = real_run.root / CONFIG
    for log in ("SAM.LOG1", "SAM.LOG2", "SECURITY.LOG1", "DEFAULT.LOG1"):
        assert (config / log).stat().st_size == 0
    journal = real_run.result.journal_dir
    assert journal is not None
    # undo into a copy so the other tests keep the generalized tree
    import shutil

    copy = tmp_path / "undo"
    shutil.copytree(real_run.root, copy)
    with open_target(copy, OpenOptions(writable=True)) as target:
        fs = target.volumes[0].fs
        assert fs is not None
        from reseal.journal import Journal

        blobs = Journal(journal)
        for entry in reversed(list(read_entries(journal))):
            data = blobs.blob_bytes(entry) if entry.existed else None
            fs.restore_from_journal(entry.path, data, entry.mode, entry.uid, entry.gid)
    assert digests(copy) == real_run.before


def test_second_run_with_same_identity_changes_nothing_more(real_run: RealRun, tmp_path: Path) -> None:
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    again = run_generalize(real_run.root, RunSettings(machine="real", request=IdentityRequest(
        hostname=NEW_NAME, machine_sid=NEW_SID, seed=7), disable=["windows-clone-ids"]),
        dry_run=True)
    sid_changes = [c for c in again.report.changes if c.operation in
                   ("windows-machine-sid", "windows-computer-name")]
    assert sid_changes == []


@pytest.mark.parametrize("hostname,sid,rule", [
    ("BAD_NAME", None, "not allowed"),
    ("12345", None, "all digits"),
    ("-lead", None, "start or end"),
    ("A" * 16, None, "at most 15"),
    (None, "S-1-5-21-1-2", "S-1-5-21-a-b-c"),
    (None, "S-1-5-21-1-2-99999999999", "32 bits"),
])
def test_bad_input_changes_nothing(shared_dir: Path, tmp_path: Path, hostname: str | None,
                                   sid: str | None, rule: str) -> None:
    root = build_real_tree(shared_dir, tmp_path / "root")
    before = digests(root)
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    with pytest.raises(BadInput, match=re.escape(rule)):
        run_generalize(root, RunSettings(request=IdentityRequest(hostname=hostname, machine_sid=sid),
                                         only=WINDOWS_OPERATIONS))
    assert digests(root) == before


def test_dry_run_writes_nothing_but_plans(shared_dir: Path, tmp_path: Path) -> None:
    root = build_real_tree(shared_dir, tmp_path / "root")
    before = digests(root)
    result = run_generalize(root, RunSettings(request=IdentityRequest(
        hostname=NEW_NAME, machine_sid=NEW_SID)), dry_run=True)
    assert digests(root) == before
    wheres = [c.where for c in result.report.changes]
    assert any("PolAcDmS" in w or "Domains\\Account" in w for w in wheres)
    assert any(w.endswith("[ComputerName]") for w in wheres)
    assert {c.path.rsplit("/", 1)[-1] for c in result.file_changes} >= {"SAM", "SECURITY", "SYSTEM"}


def test_dirty_system_with_logs_largest_hive(shared_dir: Path, tmp_path: Path) -> None:
    """regipy SYSTEM_B is dirty with two logs: recovered, generalized, logs emptied, no trace."""
    root = build_real_tree(shared_dir, tmp_path / "root", system="regipy/SYSTEM_B.xz")
    config = root / CONFIG
    assert (config / "SYSTEM.LOG1").stat().st_size > 0
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    result = run_generalize(root, RunSettings(request=IdentityRequest(
        hostname=NEW_NAME, machine_sid=NEW_SID), only=WINDOWS_OPERATIONS))
    assert any("SYSTEM" in w and "recovered" in w for w in result.report.warnings)
    assert (config / "SYSTEM.LOG1").stat().st_size == 0 and (config / "SYSTEM.LOG2").stat().st_size == 0
    assert hivexget(config / "SYSTEM", "ControlSet001\\Control\\ComputerName\\ComputerName",
                    "ComputerName").strip() == NEW_NAME.upper().encode()
    old = {k: v.old for k, v in result.report.identity.items() if v.old and v.old != v.new}
    assert old["computer-name"] == "DESKTOP-PM6C56D"
    with open_target(root) as target:
        hits = scan_windows_leftovers(target.windows[0], old)
    explained = "\n".join(result.report.notes)
    assert [h for h in hits if h.where not in explained] == []


def test_structural_check_passes_on_every_written_hive(real_run: RealRun) -> None:
    from reseal.registry.check import check_bytes

    written = {c.path for c in real_run.result.file_changes if c.new_size}
    assert {"/Windows/System32/config/SAM", "/Windows/System32/config/SYSTEM",
            "/Users/AndrewRathbun/NTUSER.DAT"} <= written
    for path in written:
        assert check_bytes((real_run.root / path.lstrip("/")).read_bytes(), name=path) is None, path
