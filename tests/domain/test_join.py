"""Host side and first-boot program end to end against the real DC, on directory targets.

A master tree joined for real (Samba `net ads join`: real secrets.tdb and keytab) is copied per
clone; `reseal generalize` runs as a user runs it (the CLI, a subprocess); the clone's first-boot
program (the zipapp reseal installed) runs with `--root` on the clone's tree. Oracles: kinit
(Kerberos AS exchange with the keytab), ldbsearch on the DC's database, the DC's password
audit log, klist, tdbdump. The VM boot test (test_firstboot_vm.py) does the same on a real boot.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.domain.dc import DomainController
from tests.domain.master import fake_linux_root, join_root
from tests.domain.test_ldapacct import unique_name

from reseal.domain.ldapacct import AccountSession, DomainError

RESEAL = [sys.executable, "-m", "reseal"]
PASSWORD_ENV = "RESEAL_TEST_JOIN_PASSWORD"


@pytest.fixture(scope="module")
def master_tree(domain_controller: DomainController,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    name = unique_name("M")
    root = fake_linux_root(tmp_path_factory.mktemp("master") / "root", name.lower())
    join_root(domain_controller, root, name)
    yield root
    domain_controller.delete_computer_if_present(name)


def master_name(root: Path) -> str:
    return (root / "etc/hostname").read_text().strip().upper()


def copy_tree(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, symlinks=True)
    return destination


def answer_file(dc: DomainController, where: Path, hostname: str, **domain: object) -> Path:
    settings = {"name": dc.dns_name, "account": dc.admin_account, "password_env": PASSWORD_ENV,
                "controller": dc.fqdn, "address": dc.address, "firstboot_address": dc.address,
                "ca_file": str(dc.ca_file),
                **domain}
    body = {"version": 1, "os": "linux", "machines": [{"hostname": hostname}],
            "defaults": {"domain": settings,
                         "firstboot": {"commands": ["echo first-boot-ran > /tmp/fb-mark",
                                                    "exit 3"]}},
            "operations": {"disable": ["linux-leftovers"]}}
    path = where / f"{hostname}.yaml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def reseal(*args: str, dc: DomainController, state: Path,
           password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESEAL_STATE_DIR": str(state),
           PASSWORD_ENV: dc.admin_password if password is None else password}
    return subprocess.run([*RESEAL, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def tree_digest(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def run_firstboot(root: Path, *, retry: dict[str, float] | None = None
                  ) -> subprocess.CompletedProcess[str]:
    """The zipapp reseal installed, run on the clone's tree with the host's python3."""
    if retry is not None:
        config = root / "etc/reseal/firstboot.json"
        body = json.loads(config.read_text())
        body["retry"] = retry
        config.write_text(json.dumps(body))
    return subprocess.run(["python3", str(root / "usr/local/lib/reseal/reseal-firstboot.pyz"),
                           "--root", str(root)], capture_output=True, text=True, timeout=300,
                          env={"PATH": os.environ["PATH"]})


def secrets_absent(texts: list[str], secrets: list[str]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text


def world_readable_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and p.stat().st_mode & stat.S_IROTH]


def test_firstboot_join_of_two_clones(domain_controller: DomainController, master_tree: Path,
                                      tmp_path: Path) -> None:
    dc = domain_controller
    master = master_name(master_tree)
    master_keytab = tmp_path / "master.keytab"
    shutil.copy(master_tree / "etc/krb5.keytab", master_keytab)
    clones = {}
    outputs: list[str] = []
    for index in (1, 2):
        name = unique_name("C")
        root = copy_tree(master_tree, tmp_path / name / "root")
        result = reseal("generalize", str(root), "--answer-file",
                        str(answer_file(dc, tmp_path / name, name.lower())),
                        dc=dc, state=tmp_path / name / "state")
        assert result.returncode == 0, result.stderr
        outputs += [result.stdout, result.stderr]
        clones[name] = root
        # pre-staged on the DC, by the host, with the adcli attribute set
        record = dc.computer(name)
        assert record is not None and record["msDS-KeyVersionNumber"] == ["1"]
        assert record["dNSHostName"] == [f"{name.lower()}.{dc.dns_name}"]
        # the master's secrets left the clone; its configuration names the clone
        assert not (root / "var/lib/samba/private/secrets.tdb").exists()
        assert not (root / "etc/krb5.keytab").exists()
        assert not list((root / "var/lib/sss/db").iterdir())
        sssd = (root / "etc/sssd/sssd.conf").read_text()
        assert f"ad_hostname = {name.lower()}.reseal.test" in sssd
        assert f"ldap_sasl_authid = {name}$" in sssd and master not in sssd.upper()
        otp_file = root / "var/lib/reseal-firstboot/one-time-password"
        assert stat.S_IMODE(otp_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(otp_file.parent.stat().st_mode) == 0o700
        assert (root / "etc/systemd/system/multi-user.target.wants/"
                "reseal-firstboot.service").is_symlink()
        del index

    for name, root in clones.items():
        one_time = (root / "var/lib/reseal-firstboot/one-time-password").read_text()
        since = dc.log_offset()
        started = time.monotonic()
        first = run_firstboot(root)
        took = time.monotonic() - started
        assert first.returncode == 0, first.stdout + first.stderr
        assert "joined reseal.test" in first.stdout
        assert "command 2/2 exited with 3" in first.stdout and took < 60
        outputs += [first.stdout, first.stderr]
        keytab = root / "etc/krb5.keytab"
        assert stat.S_IMODE(keytab.stat().st_mode) == 0o600
        kinit = dc.kinit_keytab(keytab, f"{name}$@{dc.realm}")
        assert kinit.returncode == 0, kinit.stderr
        assert not (root / "var/lib/reseal-firstboot/one-time-password").exists()
        assert not (root / "var/lib/reseal-firstboot/pending-password").exists()
        assert not (root / "etc/systemd/system/multi-user.target.wants/"
                    "reseal-firstboot.service").exists()
        with pytest.raises(DomainError, match="invalid credentials"):
            AccountSession.open(dc.endpoint(), f"{name}$", one_time)
        events = [e for e in dc.password_events(since) if e["dn"].startswith(f"CN={name},")]
        assert [e["action"] for e in events] == ["Change"]
        assert dc.computer(name)["msDS-KeyVersionNumber"] == ["2"]  # type: ignore[index]
        klist = subprocess.run(["klist", "-k", str(keytab)], capture_output=True, text=True,
                               check=True).stdout
        assert f"host/{name.lower()}.reseal.test@RESEAL.TEST" in klist
        again = run_firstboot(root)
        assert again.returncode == 0 and "already done; nothing to do" in again.stdout
        secrets_absent(outputs + [first.stdout], [one_time, dc.admin_password])
        for path in (tmp_path / name / "state").rglob("*"):  # report, journal
            if path.is_file():
                secrets_absent([path.read_bytes().decode("latin-1")],
                               [one_time, dc.admin_password])
        for path in world_readable_files(root):
            secrets_absent([path.read_bytes().decode("latin-1")], [one_time, dc.admin_password])

    # the master's own keytab still works after both clones joined
    kinit = dc.kinit_keytab(master_keytab, f"{master}$@{dc.realm}")
    assert kinit.returncode == 0, kinit.stderr
    for name in clones:
        dc.delete_computer_if_present(name)


def test_offline_join_inspect_verify_undo(domain_controller: DomainController,
                                          master_tree: Path, tmp_path: Path) -> None:
    dc = domain_controller
    name = unique_name("O")
    root = copy_tree(master_tree, tmp_path / "root")
    before = tree_digest(root)
    result = reseal("generalize", str(root), "--answer-file",
                    str(answer_file(dc, tmp_path, name.lower(), mode="offline")),
                    "--json", dc=dc, state=tmp_path / "state")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["identity"]["domain-account"]["old"] == f"{master_name(master_tree)}$@RESEAL.TEST"
    assert report["identity"]["domain-account"]["new"] == f"{name}$@RESEAL.TEST"
    kinit = dc.kinit_keytab(root / "etc/krb5.keytab", f"{name}$@{dc.realm}")
    assert kinit.returncode == 0, kinit.stderr
    assert not (root / "etc/reseal/firstboot.json").exists() or \
        "domain" not in json.loads((root / "etc/reseal/firstboot.json").read_text())

    inspect = reseal("inspect", str(root), dc=dc, state=tmp_path / "state")
    assert f"machine account  {name}$@RESEAL.TEST" in inspect.stdout or \
        f"{name}$@RESEAL.TEST" in inspect.stdout
    assert "belongs to" in inspect.stdout and "this machine" in inspect.stdout
    report_path = next((tmp_path / "state").rglob("report.json"))
    verify = reseal("verify", str(root), "--report", str(report_path), dc=dc,
                    state=tmp_path / "state")
    assert verify.returncode == 0, verify.stdout
    assert stat.S_IMODE(report_path.stat().st_mode) == 0o600
    secrets_absent([result.stdout, result.stderr, report_path.read_text(), inspect.stdout],
                   [dc.admin_password])

    journal = report_path.parent / "journal"
    undo = reseal("undo", str(root), str(journal), dc=dc, state=tmp_path / "state")
    assert undo.returncode == 0, undo.stderr
    assert tree_digest(root) == before
    dc.delete_computer_if_present(name)


def test_verify_and_inspect_see_the_masters_secrets(domain_controller: DomainController,
                                                    master_tree: Path, tmp_path: Path) -> None:
    dc = domain_controller
    master = master_name(master_tree)
    root = copy_tree(master_tree, tmp_path / "root")
    inspect = reseal("inspect", str(root), "--json", dc=dc, state=tmp_path / "state")
    linux = json.loads(inspect.stdout)["linux"][0]["domain"]
    assert linux["machine_principal"] == f"{master}$@RESEAL.TEST"
    assert linux["kvnos"] and linux["belongs_to"] == "this machine"
    assert linux["samba"][0]["machine_password_domains"] == [dc.netbios]
    # a run that skips the leave: verify finds the keytab entries and secrets.tdb records
    result = reseal("generalize", str(root), "--hostname", "other1",
                    "--disable", "linux-domain-leave,linux-leftovers", "--run-dir",
                    str(tmp_path / "run"), dc=dc, state=tmp_path / "state")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run/report.json").read_text())
    report["identity"]["domain-account"] = {"name": "domain-account",
                                            "old": f"{master}$@RESEAL.TEST", "new": None}
    (tmp_path / "run/report.json").write_text(json.dumps(report))
    verify = reseal("verify", str(root), "--report", str(tmp_path / "run/report.json"),
                    "--json", dc=dc, state=tmp_path / "state")
    assert verify.returncode == 1
    hits = json.loads(verify.stdout)["hits"]
    where = {(h["where"], h["match"]) for h in hits}
    assert ("/etc/krb5.keytab", f"{master}$@RESEAL.TEST") in where
    assert ("/var/lib/samba/private/secrets.tdb", f"SECRETS/SID/{master}") in where
    assert ("/var/lib/samba/private/secrets.tdb",
            f"SECRETS/MACHINE_PASSWORD/{dc.netbios}") in where
    # the same keys as Samba's own tdbdump lists
    dump = subprocess.run(["tdbdump", "-k", "SECRETS/SID/" + master,
                           str(root / "var/lib/samba/private/secrets.tdb")],
                          capture_output=True, text=True)
    assert dump.returncode == 0


def test_leave_without_a_domain_removes_or_reports(domain_controller: DomainController,
                                                   master_tree: Path, tmp_path: Path) -> None:
    dc = domain_controller
    report_root = copy_tree(master_tree, tmp_path / "report")
    before = tree_digest(report_root)
    options = tmp_path / "report.yaml"
    options.write_text(json.dumps({"version": 1, "machines": [{"hostname": "plain1"}],
                                   "operations": {"options": {"linux-domain-leave": {
                                       "action": "report"}}}}))
    result = reseal("generalize", str(report_root), "--answer-file", str(options),
                    "--operations", "linux-domain-leave", dc=dc, state=tmp_path / "s1")
    assert result.returncode == 0, result.stderr
    assert "still the master's domain identity (kept: action report)" in result.stderr
    assert tree_digest(report_root) == before

    root = copy_tree(master_tree, tmp_path / "remove")
    result = reseal("generalize", str(root), "--hostname", "plain2", dc=dc,
                    state=tmp_path / "s2")
    assert result.returncode == 0, result.stderr
    for gone in ("etc/krb5.keytab", "var/lib/samba/private/secrets.tdb",
                 f"var/lib/sss/db/cache_{dc.dns_name}.ldb",
                 f"var/log/sssd/sssd_{dc.dns_name}.log", "var/log/samba/log.winbindd"):
        assert not (root / gone).exists(), gone
    assert "plain2.reseal.test" in (root / "etc/sssd/sssd.conf").read_text()
    assert "netbios name = PLAIN2" in (root / "etc/samba/smb.conf").read_text()


def test_refusals_touch_nothing(domain_controller: DomainController, master_tree: Path,
                               tmp_path: Path) -> None:
    dc = domain_controller
    root = copy_tree(master_tree, tmp_path / "root")
    before = tree_digest(root)
    taken = unique_name("X")
    with AccountSession.open(dc.endpoint(), dc.admin_account, dc.admin_password) as admin:
        from reseal.domain.ldapacct import ComputerSpec
        from reseal.domain.passwords import machine_password

        admin.create_computer(ComputerSpec(taken, f"{taken.lower()}.reseal.test"),
                              machine_password())
    fresh = unique_name("R")
    cases = [
        ((taken.lower(), {}), None, "already exists", None),
        ((fresh.lower(), {}), "wrong-password", "invalid credentials", fresh),
        ((fresh.lower(), {"controller": "wrong.reseal.test"}), None,
         "certificate does not name wrong.reseal.test", fresh),
        ((fresh.lower(), {"tls": "none"}), None, "plain LDAP would send passwords", fresh),
        ((master_name(master_tree).lower(), {}), None, "the master's own computer account",
         None),
    ]
    for index, ((hostname, extra), password, expected, orphan) in enumerate(cases):
        state = tmp_path / f"state{index}"
        answer = answer_file(dc, tmp_path, hostname, **extra)
        result = reseal("generalize", str(root), "--answer-file", str(answer), dc=dc,
                        state=state, password=password)
        assert result.returncode == 2, (expected, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert expected in result.stderr and len(lines) == 1, result.stderr
        assert tree_digest(root) == before
        assert not state.exists() or not list(state.rglob("report.json"))
        if orphan:
            assert dc.computer(orphan) is None
        secrets_absent([result.stdout, result.stderr], [dc.admin_password])
    # no python3 in the image: firstboot mode refuses and points to offline mode
    bare = copy_tree(master_tree, tmp_path / "bare")
    shutil.rmtree(bare / "usr/lib/python3.11")
    (bare / "usr/bin/python3").unlink()
    result = reseal("generalize", str(bare), "--answer-file",
                    str(answer_file(dc, tmp_path, fresh.lower())), dc=dc,
                    state=tmp_path / "bare-state")
    assert result.returncode == 2 and "domain.mode: offline" in result.stderr
    assert dc.computer(fresh) is None
    dc.delete_computer_if_present(taken)


def test_firstboot_retries_with_back_off_then_stays_pending(
        domain_controller: DomainController, master_tree: Path, tmp_path: Path) -> None:
    dc = domain_controller
    name = unique_name("B")
    root = copy_tree(master_tree, tmp_path / "root")
    result = reseal("generalize", str(root), "--answer-file",
                    str(answer_file(dc, tmp_path, name.lower())), dc=dc, state=tmp_path / "s")
    assert result.returncode == 0, result.stderr
    config = root / "etc/reseal/firstboot.json"
    body = json.loads(config.read_text())
    body["domain"]["address"], body["domain"]["port"] = "127.0.0.1", 9  # nothing listens
    config.write_text(json.dumps(body))
    started = time.monotonic()
    failed = run_firstboot(root, retry={"attempts": 3, "first_delay": 0.5, "max_delay": 1})
    took = time.monotonic() - started
    assert failed.returncode == 1
    assert [line for line in failed.stdout.splitlines() if "attempt" in line][0].startswith(
        "reseal-firstboot: attempt 1/3 failed")
    assert "next attempt in 0 s" in failed.stdout or "next attempt in 1 s" in failed.stdout
    assert "attempt 3/3 failed" in failed.stdout and "giving up for this boot" in failed.stdout
    assert 1.4 < took < 60  # 0.5 + 1 s of back-off, no busy loop
    assert (root / "var/lib/reseal-firstboot/one-time-password").exists()
    assert (root / "etc/systemd/system/multi-user.target.wants/"
            "reseal-firstboot.service").is_symlink()
    assert not (root / "tmp/fb-mark").exists()  # commands wait for the join
    # the DC is back: the next boot joins
    body["domain"]["address"], body["domain"]["port"] = dc.address, None
    config.write_text(json.dumps(body))
    joined = run_firstboot(root)
    assert joined.returncode == 0, joined.stdout
    assert dc.kinit_keytab(root / "etc/krb5.keytab", f"{name}$@{dc.realm}").returncode == 0
    dc.delete_computer_if_present(name)


def test_dry_run_checks_the_dc_and_writes_nothing(domain_controller: DomainController,
                                                  master_tree: Path, tmp_path: Path) -> None:
    dc = domain_controller
    name = unique_name("D")
    root = copy_tree(master_tree, tmp_path / "root")
    before = tree_digest(root)
    result = reseal("generalize", str(root), "--join-domain", dc.dns_name, "--hostname",
                    name.lower(), "--domain-account", dc.admin_account,
                    "--domain-password-env", PASSWORD_ENV, "--domain-controller", dc.fqdn,
                    "--domain-address", dc.address, "--domain-ca-file", str(dc.ca_file),
                    "--dry-run", dc=dc, state=tmp_path / "s")
    assert result.returncode == 0, result.stderr
    assert f"CN={name},CN=Computers,{dc.base_dn}" in result.stdout
    assert tree_digest(root) == before and dc.computer(name) is None


def test_domain_command(domain_controller: DomainController, tmp_path: Path) -> None:
    dc = domain_controller
    name = unique_name("K")
    with AccountSession.open(dc.endpoint(), dc.admin_account, dc.admin_password) as admin:
        from reseal.domain.ldapacct import ComputerSpec
        from reseal.domain.passwords import machine_password

        admin.create_computer(ComputerSpec(name, f"{name.lower()}.reseal.test"),
                              machine_password())
    password_file = tmp_path / "pw"
    password_file.write_text(dc.admin_password + "\n")
    password_file.chmod(0o600)
    common = ["--domain", dc.dns_name, "--account", dc.admin_account, "--password-file",
              str(password_file), "--controller", dc.fqdn, "--address", dc.address,
              "--ca-file", str(dc.ca_file)]
    info = reseal("domain", "info", *common, "--json", dc=dc, state=tmp_path)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["netbios_name"] == dc.netbios
    show = reseal("domain", "show", name.lower(), *common, dc=dc, state=tmp_path)
    assert show.returncode == 0 and f"CN={name},CN=Computers" in show.stdout
    disable = reseal("domain", "disable", name, *common, "--json", dc=dc, state=tmp_path)
    assert disable.returncode == 0 and json.loads(disable.stdout)["user_account_control"] & 2
    delete = reseal("domain", "delete", name, *common, dc=dc, state=tmp_path)
    assert delete.returncode == 0 and dc.computer(name) is None
    missing = reseal("domain", "show", name, *common, dc=dc, state=tmp_path)
    assert missing.returncode == 2 and "no computer account" in missing.stderr
    for output in (info, show, disable, delete, missing):
        secrets_absent([output.stdout, output.stderr], [dc.admin_password])


def test_firstboot_refusal_is_logged_not_retried(domain_controller: DomainController,
                                                 master_tree: Path, tmp_path: Path) -> None:
    dc = domain_controller
    name = unique_name("F")
    root = copy_tree(master_tree, tmp_path / "root")
    result = reseal("generalize", str(root), "--answer-file",
                    str(answer_file(dc, tmp_path, name.lower(), enctypes="aes+rc4")),
                    dc=dc, state=tmp_path / "s")
    assert result.returncode == 0, result.stderr
    otp = root / "var/lib/reseal-firstboot/one-time-password"
    good = otp.read_text()
    otp.write_text("not-the-one-time-password")
    started = time.monotonic()
    refused = run_firstboot(root)
    assert refused.returncode == 1 and time.monotonic() - started < 30
    assert "the domain refused the join" in refused.stdout
    assert "invalid credentials" in refused.stdout and "attempt 2" not in refused.stdout
    assert (root / "etc/systemd/system/multi-user.target.wants/"
            "reseal-firstboot.service").is_symlink()
    otp.write_text(good)
    joined = run_firstboot(root)
    assert joined.returncode == 0, joined.stdout
    listing = subprocess.run(["klist", "-ke", str(root / "etc/krb5.keytab")],
                             capture_output=True, text=True, check=True).stdout
    assert "arcfour-hmac" in listing  # aes+rc4 asked for: RC4 keys from the pure MD4 too
    assert dc.kinit_keytab(root / "etc/krb5.keytab", f"{name}$@{dc.realm}").returncode == 0
    dc.delete_computer_if_present(name)


def test_firstboot_recovers_a_change_cut_short(domain_controller: DomainController,
                                               master_tree: Path, tmp_path: Path) -> None:
    """Power lost after the DC took the new password but before the keytab was written: the
    next boot binds with the saved new password and finishes, no second change."""
    from reseal.domain.passwords import machine_password

    dc = domain_controller
    name = unique_name("P")
    root = copy_tree(master_tree, tmp_path / "root")
    result = reseal("generalize", str(root), "--answer-file",
                    str(answer_file(dc, tmp_path, name.lower())), dc=dc, state=tmp_path / "s")
    assert result.returncode == 0, result.stderr
    state = root / "var/lib/reseal-firstboot"
    one_time = (state / "one-time-password").read_text()
    new = machine_password()
    (state / "pending-password").write_text(new)  # what the program saves before changing
    record = dc.computer(name)
    assert record is not None
    with AccountSession.open(dc.endpoint(), f"{name}$", one_time, dc.dns_name) as machine:
        machine.change_password(record["distinguishedName"][0], one_time, new)
    since = dc.log_offset()
    finished = run_firstboot(root)
    assert finished.returncode == 0, finished.stdout
    assert "a password change from an earlier run took effect" in finished.stdout
    assert not [e for e in dc.password_events(since) if e["dn"].startswith(f"CN={name},")]
    assert dc.kinit_keytab(root / "etc/krb5.keytab", f"{name}$@{dc.realm}").returncode == 0
    assert not (state / "pending-password").exists()
    assert not (state / "one-time-password").exists()
    dc.delete_computer_if_present(name)


def test_ipa_client_state_leaves_with_the_master(domain_controller: DomainController,
                                                 master_tree: Path, tmp_path: Path) -> None:
    dc = domain_controller
    root = copy_tree(master_tree, tmp_path / "root")
    master = master_name(master_tree).lower()
    (root / "etc/ipa").mkdir()
    (root / "etc/ipa/default.conf").write_text(
        f"[global]\nbasedn = dc=ipa,dc=test\nrealm = IPA.TEST\ndomain = reseal.test\n"
        f"server = ipa1.ipa.test\nhost = {master}.reseal.test\nxmlrpc_uri = "
        "https://ipa1.ipa.test/ipa/xml\n")
    (root / "var/log/ipaclient-install.log").write_text(f"enrolled {master}.reseal.test\n")
    result = reseal("generalize", str(root), "--hostname", "ipaclone", dc=dc,
                    state=tmp_path / "s")
    assert result.returncode == 0, result.stderr
    conf = (root / "etc/ipa/default.conf").read_text()
    assert "host = ipaclone.reseal.test" in conf and "server = ipa1.ipa.test" in conf
    assert not (root / "var/log/ipaclient-install.log").exists()
