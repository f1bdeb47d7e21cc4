"""A Linux root joined for real to the test DC, as `realm join` + Samba would leave it.

`join_root(dc, root, name)` runs Samba's own `net ads join` and `net ads keytab create` with a
private smb.conf whose state lives inside `root` (so the image gets a real secrets.tdb and a
real /etc/krb5.keytab), in a mount namespace with a private /etc/hosts (the DC's name) and
/run/samba: nothing of the host changes. It also writes what realmd and SSSD leave behind:
krb5.conf, sssd.conf naming the machine, an SSSD cache (an LDB made by ldbadd), logs.

`fake_linux_root(root, hostname)` makes a minimal Linux tree (os-release, hostname, hosts, a
python3 with the standard library files the first-boot check looks for) for directory targets.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.domain.dc import DomainController

STDLIB_FILES = ("os.py", "ssl.py", "json/__init__.py", "dataclasses.py", "secrets.py",
                "hashlib.py")


def fake_linux_root(root: Path, hostname: str, *, python: bool = True) -> Path:
    for directory in ("etc", "usr/bin", "var/lib", "var/log", "var/cache", "boot"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text('NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
                                         'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    (root / "etc/hostname").write_text(hostname + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}.reseal.test "
                                    f"{hostname}\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    if python:
        (root / "usr/bin/python3").write_text("#!/bin/false\n")
        (root / "usr/bin/python3").chmod(0o755)
        for name in STDLIB_FILES:
            path = root / "usr/lib/python3.11" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    return root


def join_root(dc: DomainController, root: Path, name: str = "MASTER") -> None:
    """Join `root` (a Linux tree or a mounted image) to the DC as NAME, for real."""
    short, fqdn = name.upper(), f"{name.lower()}.{dc.dns_name}"
    work = dc.workdir / f"join-{name.lower()}-{os.getpid()}"
    for directory in ("lock", "log"):
        (work / directory).mkdir(parents=True, exist_ok=True)
    for directory in ("var/lib/samba/private", "var/cache/samba", "etc/samba", "etc/sssd",
                      "var/lib/sss/db", "var/log/sssd", "var/log/samba"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    host_conf = work / "smb.conf"
    host_conf.write_text(
        "[global]\n"
        f"\tworkgroup = {dc.netbios}\n\trealm = {dc.realm}\n\tsecurity = ads\n"
        f"\tnetbios name = {short}\n"
        f"\tprivate dir = {root}/var/lib/samba/private\n"
        f"\tstate directory = {root}/var/lib/samba\n"
        f"\tcache directory = {root}/var/cache/samba\n"
        f"\tlock directory = {work}/lock\n\tlog file = {work}/log/net.log\n"
        "\tkerberos method = dedicated keytab\n"
        f"\tdedicated keytab file = {root}/etc/krb5.keytab\n")
    secret = dc.admin_auth_file(work)
    script = (f"net ads join -s '{host_conf}' -A '{secret}' -S {dc.fqdn} --no-dns-updates && "
              f"net ads keytab create -s '{host_conf}' -P")
    for _attempt in range(6):  # a DC that has just started may not serve RPC for a while
        result = dc.run_as_client(work, script, timeout=180)
        if result.returncode == 0 or "lookup DC info" not in result.stdout + result.stderr:
            break
        time.sleep(5)
    secret.unlink()
    if result.returncode != 0:
        raise RuntimeError(f"net ads join failed: {result.stdout[-800:]} {result.stderr[-800:]}")
    os.chmod(root / "etc/krb5.keytab", 0o600)
    # what realmd/SSSD write on a joined machine (guest paths, not the host's)
    (root / "etc/krb5.conf").write_text(
        f"[libdefaults]\n    default_realm = {dc.realm}\n    rdns = false\n"
        f"[realms]\n    {dc.realm} = {{\n        kdc = {dc.fqdn}\n    }}\n")
    (root / "etc/samba/smb.conf").write_text(
        f"[global]\n   workgroup = {dc.netbios}\n   realm = {dc.realm}\n   security = ads\n"
        f"   netbios name = {short}\n   kerberos method = secrets and keytab\n")
    sssd = root / "etc/sssd/sssd.conf"
    sssd.write_text(
        f"[sssd]\ndomains = {dc.dns_name}\nservices = nss, pam\n\n[domain/{dc.dns_name}]\n"
        f"ad_domain = {dc.dns_name}\nkrb5_realm = {dc.realm}\nad_hostname = {fqdn}\n"
        f"ldap_sasl_authid = {short}$\nid_provider = ad\naccess_provider = ad\n"
        "cache_credentials = True\nrealmd_tags = manages-system joined-with-adcli\n")
    sssd.chmod(0o600)
    ldif = work / "cache.ldif"
    ldif.write_text(f"dn: name=alice@{dc.dns_name},cn=users,cn={dc.dns_name},cn=sysdb\n"
                    f"name: alice@{dc.dns_name}\nobjectClass: user\nuidNumber: 1234501104\n"
                    f"originalDN: CN=alice,CN=Users,{dc.base_dn}\n")
    subprocess.run(["ldbadd", "-H", str(root / f"var/lib/sss/db/cache_{dc.dns_name}.ldb"),
                    str(ldif)], capture_output=True, check=True, timeout=60)
    (root / f"var/log/sssd/sssd_{dc.dns_name}.log").write_text(
        f"(2026-01-01 00:00:00): [be[{dc.dns_name}]] Machine account {short}$ authenticated\n")
    (root / "var/log/samba/log.winbindd").write_text(f"winbindd for {short} started\n")
