"""windows-domain-leave on the real domain members of ../shared (Belkasoft Win10, Win7-EZ,
dfwinreg): after a default run impacket's offline dump finds no $MACHINE.ACC and no cached
logon, SECURITY's primary domain is the workgroup as three readers see it, undo puts every
byte back; a workgroup machine is left alone; a bad workgroup name touches nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reseal.errors import BadInput
from reseal.operations.base import IdentityRequest
from reseal.operations.windows_domain_leave import DomainLeaveOptions
from reseal.pipeline.runner import RunSettings, run_generalize, select_operations
from reseal.pipeline.undo import undo_run
from reseal.registry import Hive
from reseal.windows.domain import read_domain_state
from reseal.windows.lsa import LsaSecrets, boot_key
from reseal.windows.sam import decode_policy_name

from .domain_helpers import MEMBERS, build_member_tree, impacket_cached_logons
from .helpers import CONFIG, build_real_tree, digests, hivexget, pyreg_value, regipy_value
from .lsa_helpers import impacket_dump

NEW_NAME = "CLONE-7"
# what a domain member's leave depends on (the whole default run is in test_machine_image)
MEMBER_OPERATIONS = ["windows-machine-sid", "windows-computer-name", "windows-domain-leave"]


@pytest.mark.parametrize("which", sorted(MEMBERS))
def test_member_leaves_its_domain(shared_dir: Path, tmp_path: Path, which: str) -> None:
    tree = build_member_tree(shared_dir, tmp_path / "root", which)
    config = tree.root / CONFIG
    before = digests(tree.root)
    dumped = impacket_dump(config)
    assert any("plain_password_hex" in line for line in dumped)  # the master's secret is there
    assert any(line.startswith("NL$KM:") for line in dumped)
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    result = run_generalize(tree.root, RunSettings(request=IdentityRequest(
        hostname=NEW_NAME, machine_sid="random", seed=3), only=MEMBER_OPERATIONS),
        run_dir=tmp_path / "run")
    assert "windows-domain-leave" in result.report.operations_run
    assert any("must be joined" in note and tree.member.domain in note
               for note in result.report.notes)

    after = impacket_dump(config)
    assert not any("plain_password_hex" in line or "MACHINE.ACC" in line for line in after)
    nlkm = [line for line in after if line.startswith("NL$KM:")]
    assert len(nlkm) == 1 and nlkm[0] not in dumped and len(nlkm[0]) == len("NL$KM:") + 128
    assert impacket_cached_logons(config) == []

    security = config / "SECURITY"
    for reader in (pyreg_value, regipy_value):
        raw = reader(security, "Policy\\PolPrDmN", "")
        assert isinstance(raw, bytes) and decode_policy_name(raw) == "WORKGROUP", reader
        assert reader(security, "Policy\\PolPrDmS", "") in (b"", None, ""), reader
    assert hivexget(security, "Policy\\PolDnDDN", "") == b""
    assert hivexget(security, "Policy\\PolDnDmG", "") == bytes(16)
    state = read_domain_state(Hive.open(security))
    assert not state.member and not state.machine_secret and state.cached_logons == 0
    system = config / "SYSTEM"
    assert pyreg_value(system, "ControlSet001\\Services\\Tcpip\\Parameters", "NV Domain") == ""
    assert pyreg_value(system, "ControlSet001\\Services\\Netlogon", "Start") == 3
    assert pyreg_value(config / "SOFTWARE", "Microsoft\\Windows NT\\CurrentVersion\\Winlogon",
                       "DefaultDomainName") == NEW_NAME
    # the other secrets are still readable with the (unchanged) LSA key
    lsa = LsaSecrets.open(Hive.open(security), boot_key(Hive.open(system)))
    new_sid = result.report.identity["machine-sid"].new
    assert new_sid is not None
    for name, value in tree.secrets.items():
        if name.upper() not in ("$MACHINE.ACC", "NL$KM"):
            secret = lsa.read(name.replace(tree.machine_sid, new_sid))  # L$_SQSA_<SID> follows
            assert secret is not None and secret.current == value, name

    assert result.journal_dir is not None
    undo_run(tree.root, result.journal_dir)
    assert digests(tree.root) == before


def test_workgroup_member_is_left_alone(shared_dir: Path, tmp_path: Path) -> None:
    root = build_real_tree(shared_dir, tmp_path / "root")
    security_before = Hive.open(root / CONFIG / "SECURITY")
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    result = run_generalize(root, RunSettings(request=IdentityRequest(hostname=NEW_NAME),
                                              only=["windows-domain-leave"]), dry_run=True)
    assert result.report.changes == []
    assert any("not a domain member" in note for note in result.report.notes)
    assert not read_domain_state(security_before).member


def test_on_by_default_and_can_be_disabled() -> None:
    default = [op.name for op in select_operations(RunSettings())]
    assert "windows-domain-leave" in default
    assert default.index("windows-domain-leave") > default.index("windows-computer-name")
    disabled = select_operations(RunSettings(disable=["windows-domain-leave"]))
    assert "windows-domain-leave" not in [op.name for op in disabled]


@pytest.mark.parametrize("workgroup", ["", "A" * 16, "BAD/NAME"])
def test_bad_workgroup_touches_nothing(shared_dir: Path, tmp_path: Path, workgroup: str) -> None:
    tree = build_member_tree(shared_dir, tmp_path / "root", "dfwinreg")
    before = digests(tree.root)
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    with pytest.raises(BadInput, match="workgroup"):
        run_generalize(tree.root, RunSettings(
            request=IdentityRequest(hostname=NEW_NAME),
            options={"windows-domain-leave": DomainLeaveOptions(workgroup=workgroup)}))
    assert digests(tree.root) == before
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("entries.jsonl"))
    shutil.rmtree(tree.root)
