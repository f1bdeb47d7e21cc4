"""windows-domain-join against the real Samba AD DC of the test session (here, beside the
Linux join tests, so that one DC per test session serves both).

A Windows directory target is built from a real domain member of ../shared (its SAM, SECURITY,
DEFAULT; a real SYSTEM made consistent with it, see domain_helpers) and generalized with the
CLI, as a user runs it, with an `os: windows` answer file naming the DC. Oracles, none of
them reseal's own code: impacket's offline LSASecrets reads `$MACHINE.ACC` back; the password
it finds must authenticate on the DC as NAME$ (a Kerberos AS exchange with `kinit -k` and a
keytab of keys derived from it, and an LDAPS simple bind); ldbsearch on the DC's database
gives the domain SID and GUID and the account's SID that SECURITY must hold; python-registry,
regipy and hivexregedit read every hive back; `reseal hive check` passes; `reseal undo`
restores every byte. Refusals (wrong join password, DC unreachable, existing account) leave
image and DC as they were, and a failed image write leaves no account behind.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from regipy.registry import RegistryHive
from Registry import Registry
from tests.domain.dc import DomainController
from tests.domain.test_join import PASSWORD_ENV, RESEAL, reseal
from tests.domain.test_ldapacct import unique_name
from tests.windows.domain_helpers import MemberTree, build_member_tree
from tests.windows.helpers import CONFIG, digests, hivexget, pyreg_value, regipy_value
from tests.windows.lsa_helpers import impacket_dump

from reseal.domain import keytab, krbkeys
from reseal.domain.ldapacct import AccountSession, ComputerSpec
from reseal.domain.settings import DomainSettings, PasswordRef
from reseal.errors import ResealError
from reseal.operations.base import IdentityRequest
from reseal.pipeline.runner import RunSettings, run_generalize
from reseal.registry import Hive
from reseal.windows.hives import HiveSet
from reseal.windows.sam import alias_members, decode_policy_name
from reseal.windows.sid import Sid

CURRENT_VERSION = "Microsoft\\Windows NT\\CurrentVersion"
HIVES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT")


def windows_member(shared: Path, root: Path, which: str = "belkasoft") -> MemberTree:
    """A real domain member whose SOFTWARE says which Windows it is (operatingSystem)."""
    tree = build_member_tree(shared, root, which)
    config = tree.root / CONFIG
    software = Hive.open(config / "SOFTWARE")
    version = software.create_key(CURRENT_VERSION)
    version.set_value("ProductName", 1, "Windows 10 Pro")
    version.set_value("CurrentMajorVersionNumber", 4, 10)
    version.set_value("CurrentMinorVersionNumber", 4, 0)
    version.set_value("CurrentBuildNumber", 1, "19045")
    version.set_value("SystemRoot", 1, "C:\\Windows")
    software.save(config / "SOFTWARE")
    (config / "SOFTWARE.reseal-orig").unlink()
    return tree


def answer_file(dc: DomainController, where: Path, hostname: str,
                firstboot: dict[str, object] | None = None, **domain: object) -> Path:
    settings = {"name": dc.dns_name, "account": dc.admin_account, "password_env": PASSWORD_ENV,
                "controller": dc.fqdn, "address": dc.address, "ca_file": str(dc.ca_file),
                **domain}
    defaults: dict[str, object] = {"domain": settings}
    if firstboot:
        defaults["firstboot"] = firstboot
    body = {"version": 1, "os": "windows", "machines": [{"hostname": hostname}],
            "defaults": defaults}
    path = where / f"{hostname}.yaml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def image_machine_password(config: Path) -> str:
    """$MACHINE.ACC as impacket's offline dump prints it (current and history equal)."""
    values = {line.rsplit(":", 1)[1] for line in impacket_dump(config)
              if ":plain_password_hex:" in line}
    assert len(values) == 1, values  # CurrVal = OldVal, as djoin leaves it
    return bytes.fromhex(values.pop()).decode("utf-16-le")


def authenticates(dc: DomainController, name: str, password: str, where: Path,
                  kvno: int = 1) -> None:
    """The password is the account's: Kerberos AS exchange with derived keys, LDAPS bind."""
    keys = krbkeys.derive_keys(password, krbkeys.computer_salt(dc.realm, name),
                               krbkeys.enctypes_for(krbkeys.AES_ONLY))
    path = where / f"{name}.keytab"
    path.write_bytes(keytab.serialize_keytab(keytab.machine_entries(
        dc.realm, name, f"{name.lower()}.{dc.dns_name}", kvno, keys)))
    kinit = dc.kinit_keytab(path, f"{name}$@{dc.realm}")
    assert kinit.returncode == 0, kinit.stderr
    with AccountSession.open(dc.endpoint(), f"{name}$", password, dc.dns_name) as machine:
        assert machine.find_computer(name) is not None


def domain_object(dc: DomainController) -> dict[str, list[str]]:
    found = [r for r in dc.ldbsearch("(objectClass=domainDNS)", "objectSid", "objectGUID")
             if r.get("dn", [""])[0].lower() == dc.base_dn.lower()]
    return found[0]


def walk_all(hive: Path) -> int:
    """Every key and value read by python-registry; hivexregedit exports the whole hive."""
    count = 0
    stack = [Registry.Registry(str(hive)).root()]
    while stack:
        key = stack.pop()
        for value in key.values():
            if value.value_type() <= 11:  # the others (counts in SAM, device property types
                value.value()             # in SYSTEM) python-registry reads as raw data
            else:
                value.raw_data()
            count += 1
        stack.extend(key.subkeys())
    export = subprocess.run(["hivexregedit", "--export", str(hive), "\\"], capture_output=True,
                            timeout=120)
    assert export.returncode == 0, export.stderr[:300]
    return count


def regipy_reads_changes(config: Path, report: Path) -> int:
    """regipy opens every key (and value) the join wrote, as the report names them."""
    changes = json.loads(report.read_text())["changes"]
    read = 0
    opened: dict[str, RegistryHive] = {}
    for change in changes:
        hive_name, _, rest = change["where"].partition("\\")
        if change["operation"] != "windows-domain-join" or hive_name not in HIVES:
            continue
        path, _, value = rest.partition(" [")
        hive = opened.setdefault(hive_name, RegistryHive(str(config / hive_name)))
        key = hive.get_key("\\" + path)
        if value:
            key.get_value(value.rstrip("]").replace("(default)", "(default)"))
        read += 1
    return read


@pytest.fixture
def member(shared_dir: Path, tmp_path: Path) -> MemberTree:
    return windows_member(shared_dir, tmp_path / "root")


def test_offline_join_end_to_end(domain_controller: DomainController,
                                 member: MemberTree, tmp_path: Path) -> None:
    dc = domain_controller
    name = unique_name("W")
    config = member.root / CONFIG
    before = digests(member.root)
    state = tmp_path / "state"
    firstboot = {"registered_owner": "IT", "commands": ["gpupdate /target:computer"]}
    result = reseal("generalize", str(member.root), "--answer-file",
                    str(answer_file(dc, tmp_path, name, firstboot)), "--machine-sid", "random",
                    dc=dc, state=state)
    try:
        assert result.returncode == 0, result.stderr
        record = dc.computer(name)
        assert record is not None
        assert record["userAccountControl"] == ["4096"]
        assert record["operatingSystem"] == ["Windows 10 Pro"]
        assert record["operatingSystemVersion"] == ["10.0 (19045)"]
        assert record["dNSHostName"] == [f"{name.lower()}.{dc.dns_name}"]

        password = image_machine_password(config)
        assert len(password) == 120
        authenticates(dc, name, password, tmp_path)
        # neither password reaches the terminal, the report or any file of the run directory
        run_files = [p for p in state.rglob("*") if p.is_file()]
        texts = [result.stdout, result.stderr] + [p.read_bytes().decode("latin-1")
                                                 for p in run_files]
        for secret in (password, dc.admin_password):
            for text in texts:
                assert secret not in text
                assert secret.encode("utf-16-le").decode("latin-1") not in text

        # SECURITY: the domain as the DC reports it, the account's SID
        security = config / "SECURITY"
        domain = domain_object(dc)
        raw_sid = pyreg_value(security, "Policy\\PolPrDmS", "")
        assert isinstance(raw_sid, bytes)
        assert str(Sid.from_bytes(raw_sid)[0]) == domain["objectSid"][0]
        assert pyreg_value(security, "Policy\\PolDnDmG", "") == \
            uuid.UUID(domain["objectGUID"][0]).bytes_le
        name_raw = regipy_value(security, "Policy\\PolPrDmN", "")
        assert isinstance(name_raw, bytes) and decode_policy_name(name_raw) == dc.netbios
        assert decode_policy_name(hivexget(security, "Policy\\PolDnDDN", "")) == dc.dns_name
        assert decode_policy_name(hivexget(security, "Policy\\PolDnTrN", "")) == dc.dns_name
        account_sid = pyreg_value(security, "Policy\\PolMachineAccountS", "")
        assert isinstance(account_sid, bytes)
        assert str(Sid.from_bytes(account_sid)[0]) == record["objectSid"][0]
        assert pyreg_value(security, "Policy\\PolMachineAccountR", "") == struct.pack(
            "<I", int(record["objectSid"][0].rsplit("-", 1)[1]))

        # SYSTEM: DNS suffix, Netlogon, the DC record
        system = config / "SYSTEM"
        tcpip = "ControlSet001\\Services\\Tcpip\\Parameters"
        assert pyreg_value(system, tcpip, "NV Domain") == dc.dns_name
        assert regipy_value(system, tcpip, "Domain") == dc.dns_name
        assert pyreg_value(system, "ControlSet001\\Services\\Netlogon", "Start") == 2
        join_domain = "ControlSet001\\Services\\Netlogon\\JoinDomain"
        assert pyreg_value(system, join_domain, "DomainName") == dc.dns_name
        assert pyreg_value(system, join_domain, "DomainControllerName") == f"\\\\{dc.fqdn}"
        assert pyreg_value(system, join_domain, "DomainControllerAddress") == f"\\\\{dc.address}"
        assert pyreg_value(system, join_domain, "DcSiteName") == "Default-First-Site-Name"
        flags = pyreg_value(system, join_domain, "Flags")
        assert isinstance(flags, int) and flags & 0x20000000 and flags & 0x10  # DNS name, DS

        # SAM: the domain's admins and users in the local groups
        sam = config / "SAM"
        admins = pyreg_value(sam, "SAM\\Domains\\Builtin\\Aliases\\00000220", "C")
        users = pyreg_value(sam, "SAM\\Domains\\Builtin\\Aliases\\00000221", "C")
        assert isinstance(admins, bytes) and isinstance(users, bytes)
        assert Sid.parse(f"{domain['objectSid'][0]}-512") in alias_members(admins, where="C")
        assert Sid.parse(f"{domain['objectSid'][0]}-513") in alias_members(users, where="C")
        assert pyreg_value(config / "SOFTWARE", f"{CURRENT_VERSION}\\Winlogon",
                           "CachePrimaryDomain") == dc.netbios
        # the same run applied firstboot: (written before the join commit wrote SOFTWARE)
        assert pyreg_value(config / "SOFTWARE", CURRENT_VERSION, "RegisteredOwner") == "IT"
        assert (member.root / "Windows/System32/GroupPolicy/Machine/Scripts/Startup/"
                "reseal-firstboot/command-1.cmd").read_bytes() == b"gpupdate /target:computer\r\n"

        report = next(state.glob("runs/*/report.json"))
        assert regipy_reads_changes(config, report) >= 15
        for hive in HIVES:
            assert walk_all(config / hive) > 0, hive
            check = subprocess.run([*RESEAL, "hive", "check", str(config / hive)],
                                   capture_output=True, text=True, timeout=120)
            assert check.returncode == 0, (hive, check.stdout, check.stderr)

        # inspect shows the membership (never the secret); verify finds no master trace
        shown = subprocess.run([*RESEAL, "inspect", str(member.root), "--json"],
                               capture_output=True, text=True, timeout=300)
        assert shown.returncode == 0, shown.stderr
        assert password not in shown.stdout
        windows = json.loads(shown.stdout)["windows"][0]
        assert windows["domain_sid"] == domain["objectSid"][0]
        assert windows["machine_account_sid"] == record["objectSid"][0]
        assert windows["membership"].startswith(f"domain {dc.netbios} ")
        assert windows["machine_secret"].startswith("$MACHINE.ACC present, set ")
        assert dc.fqdn in windows["join_pending"]
        verified = subprocess.run([*RESEAL, "verify", str(member.root), "--report", str(report)],
                                  capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "RESEAL_STATE_DIR": str(state)})
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "domain logon" not in verified.stdout and "$MACHINE.ACC" not in verified.stdout

        journal = next(state.glob("runs/*/journal"))
        undo = subprocess.run([*RESEAL, "undo", str(member.root), str(journal)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "RESEAL_STATE_DIR": str(state)})
        assert undo.returncode == 0, undo.stderr
        assert digests(member.root) == before
    finally:
        dc.delete_computer_if_present(name)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("case", ["wrong password", "unreachable", "existing account"])
def test_refusals_touch_neither_image_nor_dc(domain_controller: DomainController,
                                             member: MemberTree, tmp_path: Path,
                                             case: str) -> None:
    dc = domain_controller
    name = unique_name("R")
    existing = None
    domain: dict[str, object] = {}
    password = None
    if case == "wrong password":
        password = "not-the-password"
    elif case == "unreachable":
        domain = {"address": "127.0.0.1", "port": _closed_port()}
    else:
        with AccountSession.open(dc.endpoint(), dc.admin_account, dc.admin_password) as admin:
            existing = admin.create_computer(ComputerSpec(name, f"{name.lower()}.x.test"),
                                             "Pre-Existing-Pw-1!")
    before = digests(member.root)
    try:
        result = reseal("generalize", str(member.root), "--answer-file",
                        str(answer_file(dc, tmp_path, name, **domain)), dc=dc,
                        state=tmp_path / "state", password=password)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        expected = {"wrong password": "invalid credentials", "unreachable": "connection refused",
                    "existing account": "already exists"}[case]
        assert expected in lines[0], lines[0]
        assert digests(member.root) == before
        record = dc.computer(name)
        if existing is None:
            assert record is None  # nothing made on the DC
        else:
            assert record is not None and record["msDS-KeyVersionNumber"] == ["1"]
            assert record["dNSHostName"] == [f"{name.lower()}.x.test"]
    finally:
        dc.delete_computer_if_present(name)


def _settings(dc: DomainController, **extra: object) -> DomainSettings:
    return DomainSettings(name=dc.dns_name, account=dc.admin_account,
                          password=PasswordRef(env=PASSWORD_ENV), controller=dc.fqdn,
                          address=dc.address, ca_file=dc.ca_file, **extra)  # type: ignore[arg-type]


@pytest.fixture
def join_password(domain_controller: DomainController,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(PASSWORD_ENV, domain_controller.admin_password)
    yield


def test_failed_image_write_leaves_no_account(domain_controller: DomainController,
                                              member: MemberTree, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              join_password: None) -> None:
    dc = domain_controller
    name = unique_name("F")
    made: list[str] = []

    def failing_commit(self: HiveSet) -> list[str]:
        record = dc.computer(name)
        made.append(record["distinguishedName"][0] if record else "")
        raise ResealError("disk full (simulated)")

    monkeypatch.setattr(HiveSet, "commit", failing_commit)
    monkeypatch.setenv("RESEAL_STATE_DIR", str(tmp_path / "state"))
    before = digests(member.root)
    with pytest.raises(ResealError, match="simulated"):
        run_generalize(member.root, RunSettings(
            request=IdentityRequest(hostname=name, domain=_settings(dc)),
            only=["windows-domain-join", "windows-domain-leave"]), run_dir=tmp_path / "run")
    assert made and made[0]  # the account existed when the hives were to be written ...
    assert dc.computer(name) is None  # ... and was deleted again: no orphan
    assert digests(member.root) == before


def test_reuse_existing_account_and_dry_run(domain_controller: DomainController,
                                            member: MemberTree, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            join_password: None) -> None:
    dc = domain_controller
    name = unique_name("U")
    monkeypatch.setenv("RESEAL_STATE_DIR", str(tmp_path / "state"))
    with AccountSession.open(dc.endpoint(), dc.admin_account, dc.admin_password) as admin:
        admin.create_computer(ComputerSpec(name, f"{name.lower()}.{dc.dns_name}"),
                              "Pre-Existing-Pw-1!")
    try:
        settings = RunSettings(request=IdentityRequest(
            hostname=name, domain=_settings(dc, reuse_existing=True)),
            only=["windows-domain-join", "windows-domain-leave"])
        before = digests(member.root)
        plan = run_generalize(member.root, settings, dry_run=True)
        assert digests(member.root) == before
        planned = {c.where for c in plan.report.changes if c.operation == "windows-domain-join"}
        assert "SECURITY\\Policy\\Secrets\\$MACHINE.ACC" in planned
        assert dc.computer(name)["msDS-KeyVersionNumber"] == ["1"]  # type: ignore[index]

        result = run_generalize(member.root, settings, run_dir=tmp_path / "run")
        assert any(c.action == "reset" and "reused" in (c.new or "")
                   for c in result.report.changes)
        record = dc.computer(name)
        assert record is not None and record["msDS-KeyVersionNumber"] == ["2"]
        authenticates(dc, name, image_machine_password(member.root / CONFIG), tmp_path, kvno=2)
    finally:
        dc.delete_computer_if_present(name)
