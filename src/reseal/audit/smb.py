"""What a Windows or Samba host tells over SMB (impacket), without and with a login.

- The NTLM CHALLENGE of a session setup carries the NetBIOS and DNS names of the computer and
  its domain and the OS version; it arrives before the login is decided, so an anonymous
  (null session) login that fails still yields the names.
- The machine SID comes over `\\pipe\\lsarpc`: LsarOpenPolicy2 + LsarQueryInformationPolicy
  (opnum 7) with PolicyAccountDomainInformation, which answers on Windows and Samba (opnum 46,
  used by lookupsid, does not on Samba). PolicyPrimaryDomainInformation tells a domain
  controller apart: there the account domain is the domain, shared by every DC by design.
- With a login: MachineGuid, SusClientId and the DHCPv6 DUID over `\\pipe\\winreg`. The audit
  never starts the RemoteRegistry service; when it is stopped the probe says so.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from dataclasses import dataclass, field

from impacket.dcerpc.v5 import lsad, rrp, transport
from impacket.smbconnection import SMBConnection

from reseal.audit.credentials import SmbLogin

REGISTRY_VALUES = (
    ("machine-guid", "SOFTWARE\\Microsoft\\Cryptography", "MachineGuid"),
    ("sus-client-id", "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\WindowsUpdate", "SusClientId"),
    ("dhcp-duid", "SYSTEM\\CurrentControlSet\\Services\\Tcpip6\\Parameters", "Dhcpv6DUID"),
)
MAX_NAME = 256  # longest host-supplied name kept


@dataclass
class SmbFacts:
    status: str  # status of the connection/negotiation: "ok", "closed", "no answer", ...
    detail: str = ""
    dialect: str = ""
    server_guid: str = ""
    names: dict[str, str] = field(default_factory=dict)  # netbios, domain, dns, dns_domain
    os: str = ""
    login: str = ""  # "anonymous", "user", or "" when refused
    lsa_status: str = "skipped"
    lsa_detail: str = ""
    account_domain: str = ""
    machine_sid: str = ""
    primary_domain: str = ""
    primary_sid: str = ""
    registry_status: str = "skipped"
    registry_detail: str = ""
    registry: dict[str, str] = field(default_factory=dict)  # kind -> value


def classify(exc: BaseException) -> tuple[str, str]:
    """A probe failure as (status, one-line detail) for the report."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "closed", "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "no answer", "connection reset by the host"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer", "timed out"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH,
                                                  errno.EHOSTDOWN):
        return "unreachable", exc.strerror or text
    name = type(exc).__name__
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in name.lower() or lowered == "no answer!":
        return "no answer", "timed out"
    if "reset by peer" in lowered or "connection reset" in lowered:
        return "no answer", "connection reset by the host"
    if "refused" in lowered:
        return "closed", "connection refused"
    if "access_denied" in lowered or "logon_failure" in lowered or "access denied" in lowered:
        return "denied", text
    if isinstance(exc, OSError):
        return "error", text
    return "garbage", f"{name}: {text}"


def _clip(value: object) -> str:
    text = value.decode("utf-16-le", errors="replace") if isinstance(value, bytes) else str(value)
    return text.replace("\x00", "")[:MAX_NAME]


def probe_smb(address: str, timeout: float, login: SmbLogin | None) -> SmbFacts:
    try:
        conn = SMBConnection(address, address, sess_port=445, timeout=timeout)
    except Exception as exc:  # impacket wraps socket errors in its own types
        cause = exc.__context__ if isinstance(exc.__context__, OSError) else exc
        return SmbFacts(*classify(cause))
    facts = SmbFacts("ok")
    try:
        _negotiated(conn, facts)
        logged_in = _login(conn, login, facts)
        _names(conn, facts)
        if logged_in:
            _lsa(conn, facts)
            if login is not None:
                _registry(conn, facts)
        elif login is None:
            facts.lsa_status = "denied"
            facts.lsa_detail = "anonymous login refused; give --credentials with an smb: login"
    finally:
        with contextlib.suppress(Exception):  # the host may have dropped it already
            conn.close()
    return facts


def _negotiated(conn: object, facts: SmbFacts) -> None:
    try:
        dialect = conn.getDialect()  # type: ignore[attr-defined]
        facts.dialect = hex(dialect) if isinstance(dialect, int) else str(dialect)
    except Exception:
        facts.dialect = ""
    try:
        server = conn.getSMBServer()  # type: ignore[attr-defined]
        guid = server._Connection["ServerGuid"]  # SMB2/3 only; SMB1 has none
        if isinstance(guid, bytes) and len(guid) == 16:
            import uuid

            facts.server_guid = str(uuid.UUID(bytes_le=guid))
    except Exception:
        facts.server_guid = ""


def _login(conn: object, login: SmbLogin | None, facts: SmbFacts) -> bool:
    try:
        if login is None:
            conn.login("", "")  # type: ignore[attr-defined]
            facts.login = "anonymous"
        else:
            conn.login(login.username, login.password, login.domain)  # type: ignore[attr-defined]
            facts.login = "user"
        return True
    except Exception as exc:
        status, detail = classify(exc)
        if status in ("no answer", "garbage", "closed", "unreachable"):
            facts.status, facts.detail = status, detail
        facts.login = ""
        facts.lsa_detail = f"login refused: {detail}"
        return False


def _names(conn: object, facts: SmbFacts) -> None:
    getters = {"netbios": "getServerName", "domain": "getServerDomain",
               "dns": "getServerDNSHostName", "dns_domain": "getServerDNSDomainName"}
    for key, getter in getters.items():
        try:
            value = _clip(getattr(conn, getter)())
        except Exception:
            value = ""
        if value:
            facts.names[key] = value
    try:
        facts.os = _clip(conn.getServerOS())  # type: ignore[attr-defined]
    except Exception:
        facts.os = ""
    if facts.os.strip() in ("", "Windows 0.0 Build 0"):
        facts.os = ""


def _pipe(conn: object, name: str, interface: bytes) -> object:
    rpc = transport.SMBTransport(conn.getRemoteHost(), filename=name,  # type: ignore[attr-defined]
                                 smb_connection=conn)
    dce = rpc.get_dce_rpc()
    dce.connect()
    dce.bind(interface)
    return dce


def _lsa(conn: object, facts: SmbFacts) -> None:
    started = time.monotonic()
    try:
        dce = _pipe(conn, r"\lsarpc", lsad.MSRPC_UUID_LSAD)
        policy = lsad.hLsarOpenPolicy2(dce, lsad.POLICY_VIEW_LOCAL_INFORMATION)["PolicyHandle"]
        info = lsad.hLsarQueryInformationPolicy(
            dce, policy, lsad.POLICY_INFORMATION_CLASS.PolicyAccountDomainInformation)
        account = info["PolicyInformation"]["PolicyAccountDomainInfo"]
        facts.account_domain = _clip(account["DomainName"])
        facts.machine_sid = account["DomainSid"].formatCanonical()
        primary = lsad.hLsarQueryInformationPolicy(
            dce, policy, lsad.POLICY_INFORMATION_CLASS.PolicyPrimaryDomainInformation)
        info2 = primary["PolicyInformation"]["PolicyPrimaryDomainInfo"]
        facts.primary_domain = _clip(info2["Name"])
        sid = info2["Sid"]
        facts.primary_sid = sid.formatCanonical() if hasattr(sid, "formatCanonical") else ""
        facts.lsa_status = "ok"
        facts.lsa_detail = f"{time.monotonic() - started:.2f} s"
    except Exception as exc:
        facts.lsa_status, facts.lsa_detail = classify(exc)


def _registry(conn: object, facts: SmbFacts) -> None:
    try:
        dce = _pipe(conn, r"\winreg", rrp.MSRPC_UUID_RRP)
        root = rrp.hOpenLocalMachine(dce)["phKey"]
    except Exception as exc:
        status, detail = classify(exc)
        if "object_name_not_found" in detail.lower() or "pipe_not_available" in detail.lower():
            detail = "no \\pipe\\winreg (the RemoteRegistry service is stopped; reseal does " \
                     "not start it)"
        facts.registry_status, facts.registry_detail = status, detail
        return
    missing = []
    for kind, path, name in REGISTRY_VALUES:
        try:
            key = rrp.hBaseRegOpenKey(dce, root, path, samDesired=rrp.KEY_READ)["phkResult"]
            _type, data = rrp.hBaseRegQueryValue(dce, key, name)
            facts.registry[kind] = _registry_text(data)
        except Exception:
            missing.append(name)
    facts.registry_status = "ok"
    facts.registry_detail = f"not present: {', '.join(missing)}" if missing else ""


def _registry_text(data: object) -> str:
    if isinstance(data, bytes):
        return data.hex()
    return _clip(data).strip()
