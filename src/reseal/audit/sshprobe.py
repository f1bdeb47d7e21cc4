"""SSH facts: the host keys of every type, and with a login the machine-id and the DHCP DUID.

Host keys come from key exchanges with paramiko: the first exchange also records which host
key algorithms the server offers, and one more exchange per offered key family (ed25519,
ecdsa, rsa) fetches that family's key; nothing is authenticated. A server that offers a DSA
key (which paramiko no longer speaks) gets one `ssh-keyscan -t dsa` for it. Measured on the
lab: about 4 ms of CPU per key this way against about 50 ms for an ssh-keyscan process (its
post-quantum key exchange), which is most of a /24 audit's CPU. Fingerprints are computed
here from the key blobs, the way `ssh-keygen -l` prints them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from reseal.audit.credentials import SshLogin
from reseal.audit.duid import networkd_duid
from reseal.linux.ssh import ssh_fingerprint

KEY_TYPES = "dsa,rsa,ecdsa,ed25519"  # sk (security-key) types need a touch per signature: no host key
MAX_OUTPUT = 256 << 10
MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")
HEX = re.compile(r"^[0-9a-fA-F:]{4,400}$")
# Fixed, read-only commands: the machine-id, networkd's DUID settings and the client ids of its
# DHCP leases, dhclient's default DUID. Each section is marked so that the parser knows it.
REMOTE_SCRIPT = (
    "echo '#machine-id'; cat /etc/machine-id 2>/dev/null; "
    "echo '#duid-config'; cat /etc/systemd/networkd.conf /etc/systemd/networkd.conf.d/*.conf "
    "2>/dev/null | grep -i '^[[:space:]]*DUID'; "
    "echo '#leases'; cat /run/systemd/netif/leases/* 2>/dev/null | grep '^CLIENTID='; "
    "echo '#dhclient'; cat /var/lib/dhcp/dhclient*.leases 2>/dev/null | grep default-duid; "
    "echo '#networkd'; test -e /run/systemd/netif/state && echo running; "
    "echo '#end'"
)


@dataclass
class HostKey:
    key_type: str
    fingerprint: str


@dataclass
class SshKeys:
    status: str  # "ok", "closed", "no answer", "garbage", "error"
    keys: list[HostKey] = field(default_factory=list)
    banner: str = ""
    detail: str = ""


@dataclass
class SshLoginFacts:
    status: str
    detail: str = ""
    machine_id: str = ""
    duids: list[tuple[str, str]] = field(default_factory=list)  # (value, where it came from)


KEY_FAMILIES = {  # paramiko's names for the host key algorithms of each family
    "ed25519": ("ssh-ed25519",),
    "ecdsa": ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
    "rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}


def _family(algorithm: str) -> str | None:
    if algorithm == "ssh-dss":
        return "dsa"
    return next((f for f, names in KEY_FAMILIES.items() if algorithm in names), None)


def _exchange(address: str, port: int, algorithms: tuple[str, ...],
              timeout: float) -> tuple[Any, list[str], str]:
    """One key exchange: (server host key, host key algorithms the server offered, banner)."""
    import paramiko

    offered: list[str] = []

    class Recorder(paramiko.Transport):
        def _really_parse_kex_init(self, m: Any, ignore_first_byte: bool = False) -> Any:
            parsed = super()._really_parse_kex_init(m, ignore_first_byte)
            if not offered:  # the first KEXINIT parsed is the server's
                offered.extend(str(a) for a in parsed.get("server_key_algo_list", []))
            return parsed

    sock = socket.create_connection((address, port), timeout=timeout)
    transport = Recorder(sock)
    try:
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        known = set(paramiko.Transport._key_info)  # the algorithms this paramiko speaks
        transport.get_security_options().key_types = [a for a in algorithms if a in known]
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key(), offered, str(transport.remote_version or "")
    finally:
        transport.close()
        sock.close()


def host_keys(address: str, timeout: float, port: int = 22) -> SshKeys:
    """Every host key the server holds, within `timeout` seconds in all."""
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # failures are the result
    end = time.monotonic() + timeout
    all_algorithms = tuple(a for names in KEY_FAMILIES.values() for a in names)
    try:
        first, offered, banner = _exchange(address, port, all_algorithms, timeout)
    except Exception as exc:
        from reseal.audit.smb import classify

        status, detail = classify(exc)
        if status == "error" and ("banner" in detail.lower() or "protocol" in detail.lower()):
            status = "garbage"
        if status == "error" and "incompatible" in detail.lower():
            return keyscan(address, max(0.5, end - time.monotonic()), port)  # e.g. DSA only
        return SshKeys(status, detail=detail)
    keys = [_host_key(first)]
    families = {_family(a) for a in offered} - {None, _family(first.get_name())}
    result = SshKeys("ok", keys, banner=banner[:200])
    for family in sorted(f for f in families if f is not None):
        left = end - time.monotonic()
        if left <= 0:
            result.detail = f"stopped after {timeout:g} s"
            break
        try:
            if family == "dsa":
                raise ValueError("paramiko has no DSA")
            key, _, _ = _exchange(address, port, KEY_FAMILIES[family], left)
            keys.append(_host_key(key))
        except Exception:  # e.g. an old server's SHA-1 ssh-rsa: OpenSSH's own client then
            fallback = keyscan(address, max(0.5, end - time.monotonic()), port, family)
            keys += fallback.keys
            if not fallback.keys:
                result.detail = f"the {family} key the server offers did not come"
    return result


def _host_key(key: Any) -> HostKey:
    blob = key.asbytes()
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return HostKey(str(key.get_name())[:64], f"SHA256:{digest}")


def keyscan(address: str, timeout: float, port: int = 22, types: str = KEY_TYPES) -> SshKeys:
    """OpenSSH's ssh-keyscan: used for DSA host keys, and by the benchmark's peer."""
    argv = ["ssh-keyscan", "-T", str(max(1, round(timeout))), "-p", str(port), "-t", types,
            address]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        return SshKeys("error", detail=f"cannot run ssh-keyscan: {exc.strerror}")
    try:
        out, err = proc.communicate(timeout=timeout + 0.5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        keys = _parse_keys(out[:MAX_OUTPUT].decode("utf-8", "replace"), address)
        if keys:
            return SshKeys("ok", keys, detail=f"stopped after {timeout:g} s")
        return SshKeys("no answer", detail=f"no key within {timeout:g} s")
    text = out[:MAX_OUTPUT].decode("utf-8", "replace")
    errors = err[:MAX_OUTPUT].decode("utf-8", "replace")
    keys = _parse_keys(text, address)
    banner = next((line.split(" ", 2)[2] for line in (text + "\n" + errors).splitlines()
                   if line.startswith("# ") and line.count(" ") >= 2), "")
    if keys:
        return SshKeys("ok", keys, banner=banner[:200])
    lowered = errors.lower()
    if "connection refused" in lowered:
        return SshKeys("closed", detail="connection refused")
    if "timed out" in lowered or "timeout" in lowered:
        return SshKeys("no answer", detail="timed out")
    if "reset" in lowered or "closed by remote" in lowered or "kex_exchange" in lowered:
        return SshKeys("garbage" if banner == "" else "error",
                       detail=(errors.strip().splitlines() or ["no key"])[-1][:200])
    return SshKeys("no answer", detail=(errors.strip().splitlines() or ["no key offered"])[-1][:200])


def _parse_keys(text: str, address: str) -> list[HostKey]:
    keys: list[HostKey] = []
    seen = set()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        parsed = ssh_fingerprint(" ".join(fields[1:3]))
        if parsed is None or parsed in seen:
            continue
        seen.add(parsed)
        keys.append(HostKey(parsed[0][:64], parsed[1]))
    return keys


def login_probe(address: str, timeout: float, login: SshLogin) -> SshLoginFacts:
    """Log in (key or password) and read the machine-id and DUIDs; never changes anything."""
    import logging

    import paramiko

    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # failures are the probe's result
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_AcceptAnyHostKey())
    try:
        client.connect(address, port=login.port, username=login.username,
                       password=login.password or None,
                       key_filename=str(login.key_file) if login.key_file else None,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       channel_timeout=timeout, look_for_keys=False, allow_agent=False)
        _stdin, stdout, _stderr = client.exec_command(REMOTE_SCRIPT, timeout=timeout)
        output = stdout.read(MAX_OUTPUT).decode("utf-8", "replace")
    except paramiko.AuthenticationException:
        return SshLoginFacts("denied", "login refused")
    except Exception as exc:
        from reseal.audit.smb import classify

        status, detail = classify(exc)
        return SshLoginFacts(status, detail)
    finally:
        client.close()
    return parse_remote(output)


def parse_remote(output: str) -> SshLoginFacts:
    """The machine-id and DUIDs out of REMOTE_SCRIPT's output (hostile text, checked)."""
    facts = SshLoginFacts("ok")
    section = ""
    networkd = False
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith("#") and line[1:] in ("machine-id", "duid-config", "leases",
                                                  "dhclient", "networkd", "end"):
            section = line[1:]
            continue
        if section == "machine-id" and MACHINE_ID.match(line) and not facts.machine_id:
            facts.machine_id = line
        elif section == "duid-config" and line.lower().startswith("duidrawdata="):
            value = line.split("=", 1)[1].strip()
            if HEX.match(value):
                facts.duids.append((value.lower(), "networkd.conf DUIDRawData"))
        elif section == "leases" and line.startswith("CLIENTID="):
            value = line.split("=", 1)[1].strip()
            if HEX.match(value):
                facts.duids.append((value.lower(), "networkd DHCP lease client id"))
        elif section == "networkd" and line == "running":
            networkd = True
        elif section == "dhclient" and "default-duid" in line:
            facts.duids.append((line.split("default-duid", 1)[1].strip(" ;\"")[:200],
                                "dhclient default-duid"))
    if networkd and facts.machine_id and not any(w.startswith("networkd.conf") for _, w in facts.duids):
        facts.duids.append((networkd_duid(facts.machine_id),
                            "networkd default DUID (derived from the machine-id)"))
    if not facts.machine_id:
        facts.detail = "no machine-id (empty: the machine makes one on its next boot)"
    return facts


class _AcceptAnyHostKey:
    """The audit collects host keys; it does not trust them for anything."""

    def missing_host_key(self, client: object, hostname: str, key: object) -> None:
        return None
