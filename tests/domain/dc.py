"""A throwaway Samba Active Directory domain controller for tests.

Provisioned under a temporary directory, started in a private mount namespace (its own
/run/samba, so several DCs and other Samba servers can run on one machine at once), bound to a
free 127.0.0.x address chosen at run time, stopped by closing its stdin. Nothing of the host
configuration is read or written: every path is under `workdir`, Kerberos clients get their
own krb5.conf through KRB5_CONFIG.

API (used by the Linux and Windows domain tests):

    with start_domain_controller(tmp_dir) as dc:
        dc.address, dc.realm, dc.dns_name, dc.netbios, dc.fqdn, dc.base_dn, dc.ca_file
        dc.admin_account ("RESEAL\\Administrator"), dc.admin_password
        dc.endpoint()                        -> reseal.domain.ldapacct.Endpoint (LDAPS, CA checked)
        dc.kinit_keytab(keytab, principal)   -> CompletedProcess of `kinit -k -t`
        dc.kinit_password(principal, pw)     -> CompletedProcess of `kinit` (password on stdin)
        dc.computer(name)                    -> dict of attributes read with ldbsearch (the DB
                                                itself, not LDAP: an independent oracle) or None
        dc.password_events(since)            -> the audit log's passwordChange events
        dc.log_offset()                      -> where the audit log ends now (for `since`)
        dc.samba_tool(*args)                 -> CompletedProcess of samba-tool on this DC
        dc.add_user(name, password), dc.add_ou(dn), dc.delegate_computer_create(ou, user)
        dc.admin_auth_file(work)             -> a 0600 `-A` credentials file in work
        dc.run_as_client(work, commands)     -> CompletedProcess of shell commands (`net ...`)
                                                in a namespace whose /etc/hosts names the DC

The pytest fixture `domain_controller` (tests/domain/conftest.py) starts one per test session
(per xdist worker) and stops it at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REALM = "RESEAL.TEST"
DNS_NAME = "reseal.test"
NETBIOS = "RESEAL"
DC_HOST = "dc1"
ADMIN_PASSWORD = "Adm1n-Secret-4-Tests!"
NEEDED_TOOLS = ("samba", "samba-tool", "kinit", "ldbsearch", "unshare")
LOCK_DIR = Path("/run/lock/reseal-test-dc")
# TCP and UDP ports a DC binds; an address where any of them is taken is not free.
TCP_PORTS = (53, 88, 135, 139, 389, 445, 464, 636, 3268, 3269)
UDP_PORTS = (53, 88, 389, 464)
START_TIMEOUT = 60.0
AUDIT_LOG_LEVEL = "1 auth_json_audit:3 dsdb_password_json_audit:5 dsdb_json_audit:5"


def missing_tools() -> list[str]:
    return [tool for tool in NEEDED_TOOLS if shutil.which(tool) is None]


def _port_free(address: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def free_loopback_address() -> Iterator[str]:
    """A 127.0.0.x address no one listens on, held (flock) until the context ends.

    The lock keeps two test DCs of this project from choosing the same address between the
    check and the start; the port check keeps off anyone else's server."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    candidates = list(range(2, 255))
    random.SystemRandom().shuffle(candidates)
    for last in candidates:
        address = f"127.0.0.{last}"
        lock: IO[str] = open(LOCK_DIR / f"{address}.lock", "w")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if all(_port_free(address, p, socket.SOCK_STREAM) for p in TCP_PORTS) and all(
                _port_free(address, p, socket.SOCK_DGRAM) for p in UDP_PORTS):
            try:
                yield address
            finally:
                lock.close()
            return
        lock.close()
    raise RuntimeError("no free 127.0.0.x address for a test domain controller")


@dataclass
class DomainController:
    workdir: Path
    address: str
    admin_password: str = ADMIN_PASSWORD
    realm: str = REALM
    dns_name: str = DNS_NAME
    netbios: str = NETBIOS
    host_name: str = DC_HOST
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ names and paths
    @property
    def fqdn(self) -> str:
        return f"{self.host_name}.{self.dns_name}"

    @property
    def base_dn(self) -> str:
        return ",".join(f"DC={part}" for part in self.dns_name.split("."))

    @property
    def admin_account(self) -> str:
        return f"{self.netbios}\\Administrator"

    @property
    def smb_conf(self) -> Path:
        return self.workdir / "etc" / "smb.conf"

    @property
    def sam_ldb(self) -> Path:
        return self.workdir / "private" / "sam.ldb"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "private" / "tls" / "ca.pem"

    @property
    def krb5_conf(self) -> Path:
        return self.workdir / "client-krb5.conf"

    @property
    def log_file(self) -> Path:
        return self.workdir / "log" / "samba.out"  # `samba -i` logs to its stdout

    def endpoint(self, tls: str = "ldaps", **overrides: Any) -> Any:
        """Where reseal's LDAP module reaches this DC (certificate checked against the CA)."""
        from reseal.domain.ldapacct import Endpoint

        values: dict[str, Any] = {"address": self.address, "server_name": self.fqdn,
                                  "tls": tls, "ca_file": self.ca_file}
        values.update(overrides)
        return Endpoint(**values)

    # ------------------------------------------------------------------ oracles
    def kerberos_env(self, ccache: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["KRB5_CONFIG"] = str(self.krb5_conf)
        env["KRB5CCNAME"] = f"FILE:{ccache or (self.workdir / 'ccache-default')}"
        env.pop("KRB5_KTNAME", None)
        return env

    def admin_auth_file(self, work: Path) -> Path:
        """The administrator's credentials as Samba's `-A` file, made 0600 from the start."""
        path = work / "admin-auth"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"username = Administrator\npassword = {self.admin_password}\n"
                         f"domain = {self.netbios}\n")
        return path

    def run_as_client(self, work: Path, commands: str,
                      timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Shell `commands` (Samba's `net` acting as a domain member) in a mount namespace of
        their own, whose /etc/hosts names this DC and whose /run/samba is private, so nothing
        of the host's configuration is read or written."""
        hosts = work / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{self.address} {self.fqdn} {self.host_name}\n")
        setup = (f"mount --bind '{hosts}' /etc/hosts && mkdir -p /run/samba && "
                 "mount -t tmpfs -o mode=0755 tmpfs /run/samba")
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               f"{setup} && {commands}"], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "KRB5_CONFIG": str(self.krb5_conf)})

    def kinit_keytab(self, keytab: Path, principal: str) -> subprocess.CompletedProcess[str]:
        """`kinit -k -t KEYTAB PRINCIPAL`: a Kerberos AS exchange with the keytab's keys."""
        ccache = self.workdir / f"ccache-{os.getpid()}-{time.monotonic_ns()}"
        try:
            return subprocess.run(["kinit", "-k", "-t", str(keytab), principal],
                                  env=self.kerberos_env(ccache), capture_output=True, text=True,
                                  timeout=30)
        finally:
            ccache.unlink(missing_ok=True)

    def kinit_password(self, principal: str, password: str) -> subprocess.CompletedProcess[str]:
        ccache = self.workdir / f"ccache-{os.getpid()}-{time.monotonic_ns()}"
        try:
            return subprocess.run(["kinit", principal], input=password + "\n",
                                  env=self.kerberos_env(ccache), capture_output=True, text=True,
                                  timeout=30)
        finally:
            ccache.unlink(missing_ok=True)

    def ldbsearch(self, expression: str, *attributes: str) -> list[dict[str, list[str]]]:
        """Records read from the DC's database directly (ldbsearch -H sam.ldb)."""
        result = subprocess.run(
            ["ldbsearch", "-H", str(self.sam_ldb), "-s", "sub",
             "-b", self.base_dn, expression, *attributes],
            capture_output=True, text=True, timeout=60, check=True)
        records: list[dict[str, list[str]]] = []
        current: dict[str, list[str]] | None = None
        for line in result.stdout.splitlines():
            if line.startswith("# record"):
                current = {}
                records.append(current)
                continue
            if current is None or not line or line.startswith("#"):
                continue
            if line.startswith(" ") and current:
                last = list(current)[-1]
                current[last][-1] += line[1:]
                continue
            name, sep, value = line.partition(":")
            if sep:
                current.setdefault(name, []).append(value.strip())
        return records

    def computer(self, name: str) -> dict[str, list[str]] | None:
        found = self.ldbsearch(f"(&(objectClass=computer)(sAMAccountName={name.upper()}$))",
                               "*", "msDS-KeyVersionNumber")  # constructed: only when asked
        return found[0] if found else None

    def log_offset(self) -> int:
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def password_events(self, since: int = 0) -> list[dict[str, Any]]:
        """passwordChange events of the audit log (dsdb_password_json_audit) after `since`."""
        events = []
        with open(self.log_file, "rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8", errors="replace")
        for match in re.finditer(r"^\s*(\{.*\"type\": \"passwordChange\".*\})\s*$", text,
                                 re.MULTILINE):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(match.group(1))["passwordChange"])
        return events

    def samba_tool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["samba-tool", *args, "-s", str(self.smb_conf)],
                              capture_output=True, text=True, timeout=120, check=check)

    def add_user(self, name: str, password: str) -> None:
        self.samba_tool("user", "create", name, password)

    def add_ou(self, dn: str) -> None:
        self.samba_tool("ou", "create", dn)

    def user_sid(self, name: str) -> str:
        found = self.ldbsearch(f"(sAMAccountName={name})", "objectSid")
        return found[0]["objectSid"][0]

    def delegate_computer_create(self, ou_dn: str, user: str) -> None:
        """Let `user` create (and manage the ones it made) computer objects in `ou_dn`."""
        sid = self.user_sid(user)
        computer_class = "bf967a86-0de6-11d0-a285-00aa003049e2"
        self.samba_tool("dsacl", "set", f"--objectdn={ou_dn}",
                        f"--sddl=(OA;CI;CCDC;{computer_class};;{sid})")

    def delete_computer_if_present(self, name: str) -> None:
        if self.computer(name) is not None:
            self.samba_tool("computer", "delete", name, check=False)

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # samba -i stops on EOF
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _provision(workdir: Path, address: str) -> None:
    subprocess.run(
        ["samba-tool", "domain", "provision", f"--realm={REALM}", f"--domain={NETBIOS}",
         "--server-role=dc", "--dns-backend=SAMBA_INTERNAL", f"--adminpass={ADMIN_PASSWORD}",
         f"--targetdir={workdir}", f"--host-name={DC_HOST}", f"--host-ip={address}",
         "--use-rfc2307",
         f"--option=interfaces={address}/8", "--option=bind interfaces only=yes",
         "--option=dns forwarder=", "--option=disable netbios=yes",
         f"--option=log file={workdir}/log/samba.log", "--option=max log size=0",
         f"--option=log level={AUDIT_LOG_LEVEL}",
         f"--option=pid directory={workdir}/run"],
        capture_output=True, text=True, timeout=300, check=True,
        env={**os.environ, "KRB5_CONFIG": str(workdir / "unused-krb5.conf")})
    conf = workdir / "etc" / "smb.conf"
    # provision copies the host's nameserver as a forwarder: nothing may leave the machine
    text = re.sub(r"^\s*dns forwarder\s*=.*\n", "", conf.read_text(), flags=re.MULTILINE)
    # A changed password stops working at once (by default the old one keeps working for
    # 60 minutes over NTLM and simple binds), so tests can show a password is gone.
    text = text.replace("[global]\n", "[global]\n\told password allowed period = 0\n", 1)
    conf.write_text(text)


def _write_client_krb5(dc: DomainController) -> None:
    dc.krb5_conf.write_text(
        "[libdefaults]\n"
        f"    default_realm = {dc.realm}\n"
        "    dns_lookup_kdc = false\n    dns_lookup_realm = false\n    rdns = false\n"
        "    dns_canonicalize_hostname = false\n"
        "[realms]\n"
        f"    {dc.realm} = {{\n        kdc = {dc.address}\n"
        f"        kpasswd_server = {dc.address}\n        admin_server = {dc.address}\n    }}\n"
        f"[domain_realm]\n    .{dc.dns_name} = {dc.realm}\n    {dc.dns_name} = {dc.realm}\n")


def _wait_listening(address: str, port: int, process: subprocess.Popen[bytes],
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"samba exited with {process.returncode} while starting")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((address, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"samba did not listen on {address}:{port} within {timeout:.0f} s")


@contextlib.contextmanager
def start_domain_controller(workdir: Path) -> Iterator[DomainController]:
    """Provision and start a DC under `workdir`; stopped (and its address released) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    with free_loopback_address() as address:
        dc = DomainController(workdir=workdir, address=address)
        (workdir / "log").mkdir(exist_ok=True)
        _provision(workdir, address)
        _write_client_krb5(dc)
        script = ("mkdir -p /run/samba && mount -t tmpfs -o mode=0755 tmpfs /run/samba && "
                  f"exec samba -i -M single -s '{dc.smb_conf}'")
        stderr = open(dc.log_file, "wb")  # noqa: SIM115
        try:
            dc.process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.PIPE, stdout=stderr, stderr=stderr)
            _wait_listening(address, 636, dc.process, START_TIMEOUT)
            _wait_listening(address, 88, dc.process, START_TIMEOUT)
            _wait_listening(address, 445, dc.process, START_TIMEOUT)  # SMB: net ads join
            yield dc
        finally:
            dc.stop()
            stderr.close()
