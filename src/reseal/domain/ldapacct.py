"""Computer accounts in Active Directory over LDAP (ldap3): find, pre-stage, create, reset,
change, disable, delete, and the domain's own identity (DNS and NetBIOS names, SID, GUID).

Used by the imaging host (`linux-domain-join`, the Windows offline join) and, inside a
zipapp, by the clone's first-boot program, so it needs only ldap3 and Python 3.8+.

Transport: a simple bind, only ever inside TLS (LDAPS on 636, or StartTLS on 389), with the
DC's certificate checked against a CA file and the DC's DNS name (`Endpoint.server_name`),
whatever address is used to reach it. AD accepts `unicodePwd` writes only on such a
connection; Samba refuses simple binds without it ("Transport encryption required").

Accounts are made like adcli makes them: `sAMAccountName=NAME$`, userAccountControl
WORKSTATION_TRUST_ACCOUNT (0x1000), dNSHostName, the four SPNs `host/NAME`, `host/FQDN`,
`RestrictedKrbHost/NAME`, `RestrictedKrbHost/FQDN`, msDS-SupportedEncryptionTypes (AES by
default) and operatingSystem/-Version; the password goes into the same LDAP add, so an
account never exists without one. Every LDAP failure becomes one `DomainError` line that
says what the DC refused and what to do; a password never appears in one.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseal.domain.krbkeys import AES_ONLY
from reseal.domain.passwords import unicode_pwd
from reseal.errors import BadInput

UF_ACCOUNTDISABLE = 0x0002
UF_WORKSTATION_TRUST_ACCOUNT = 0x1000
UF_DONT_EXPIRE_PASSWD = 0x10000
COMPUTERS_CONTAINER_GUID = "AA312825768811D1ADED00C04FD8D5CD"  # well-known Computers
ACCOUNT_ATTRIBUTES = ("sAMAccountName", "dNSHostName", "servicePrincipalName",
                      "userAccountControl", "msDS-KeyVersionNumber", "objectSid",
                      "objectGUID", "msDS-SupportedEncryptionTypes", "operatingSystem",
                      "operatingSystemVersion", "whenCreated")
DEFAULT_TIMEOUT = 10.0
MAX_NETBIOS_NAME = 15


class DomainError(BadInput):
    """The domain refused or could not be reached; one line, never a secret."""


class DomainUnreachable(DomainError):
    """No TCP or TLS session with the DC (worth retrying later, unlike a refusal)."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach a DC: `address` to connect to, `server_name` its certificate must name."""

    address: str
    server_name: str
    tls: str = "ldaps"  # "ldaps" (636) or "starttls" (389)
    port: int | None = None
    ca_file: Path | None = None  # None: the system's CA certificates
    timeout: float = DEFAULT_TIMEOUT

    @property
    def effective_port(self) -> int:
        return self.port or (636 if self.tls == "ldaps" else 389)

    def describe(self) -> str:
        shown = self.address if self.address == self.server_name else \
            f"{self.server_name} ({self.address})"
        return f"{shown}:{self.effective_port} ({self.tls})"


@dataclass(frozen=True)
class DomainInfo:
    dns_name: str  # reseal.test
    netbios_name: str  # RESEAL
    sid: str  # S-1-5-21-...
    guid: str  # objectGUID of the domain object, lower-case text form
    base_dn: str  # DC=reseal,DC=test
    computers_dn: str  # CN=Computers,DC=reseal,DC=test
    dc_dns_name: str  # the DC's own dnsHostName (rootDSE)
    forest: str = ""  # DNS name of the forest root domain (rootDSE rootDomainNamingContext)

    @property
    def realm(self) -> str:
        return self.dns_name.upper()


@dataclass(frozen=True)
class ComputerAccount:
    dn: str
    name: str  # NetBIOS name, without the $
    dns_host_name: str | None
    spns: tuple[str, ...]
    user_account_control: int
    kvno: int | None
    sid: str | None
    guid: str | None
    enctypes: int | None
    operating_system: str | None = None

    @property
    def enabled(self) -> bool:
        return not self.user_account_control & UF_ACCOUNTDISABLE

    @property
    def ou(self) -> str:
        return self.dn.split(",", 1)[1] if "," in self.dn else ""


@dataclass(frozen=True)
class ComputerSpec:
    """What a computer account should look like (adcli's attribute set)."""

    name: str  # NetBIOS computer name, at most 15 characters, without $
    dns_host_name: str  # FQDN
    enctypes: int = AES_ONLY
    os_name: str | None = None
    os_version: str | None = None
    extra_spns: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_computer_name(self.name)

    @property
    def sam_account_name(self) -> str:
        return self.name.upper() + "$"

    def spns(self) -> list[str]:
        short, fqdn = self.name.upper(), self.dns_host_name.lower()
        return [f"host/{short}", f"host/{fqdn}", f"RestrictedKrbHost/{short}",
                f"RestrictedKrbHost/{fqdn}", *self.extra_spns]


def check_computer_name(name: str) -> None:
    bare = name[:-1] if name.endswith("$") else name
    if not bare or len(bare) > MAX_NETBIOS_NAME or not all(
            c.isascii() and (c.isalnum() or c == "-") for c in bare):
        raise DomainError(f"{name!r}: a computer account name is 1-{MAX_NETBIOS_NAME} letters, "
                          "digits or hyphens (its NetBIOS name)")


def sid_to_text(raw: bytes) -> str:
    if len(raw) < 8 or raw[0] != 1 or len(raw) != 8 + 4 * raw[1]:
        raise DomainError("the DC returned a malformed objectSid")
    authority = int.from_bytes(raw[2:8], "big")
    subs = struct.unpack("<" + "I" * raw[1], raw[8:])
    return "S-1-" + "-".join([str(authority), *map(str, subs)])


def bind_name(account: str, dns_name: str) -> str:
    """The name a simple bind takes: a DN or user@domain as given, DOMAIN\\user (or a bare
    user) as its implicit UPN user@dns-domain."""
    if "=" in account or "@" in account:
        return account
    user = account.split("\\", 1)[1] if "\\" in account else account
    return f"{user}@{dns_name.lower()}"


def describe_ldap_failure(result: dict[str, Any], doing: str, hint: str = "") -> str:
    """One line for an LDAP result: what was being done, what the DC said, what to do."""
    code = result.get("result")
    desc = result.get("description") or f"result {code}"
    message = (result.get("message") or "").strip().replace("\n", " ")
    low = message.lower()
    if desc == "invalidCredentials":
        why = "the DC rejected the name or password (invalid credentials)"
    elif desc == "strongerAuthRequired":
        why = "the DC requires transport encryption or signing (strongerAuthRequired)"
    elif desc == "insufficientAccessRights":
        why = "the account lacks the right to do this (insufficientAccessRights)"
    elif desc == "unwillingToPerform" and ("216d" in low or "quota" in low):
        why = "the join account has used up its machine account quota (ms-DS-MachineAccountQuota)"
        hint = hint or "pre-create the account or use an account with delegated rights"
    elif desc == "constraintViolation" and ("spn" in low or "dnshostname" in low):
        why = ("the DC refused dNSHostName or an SPN (constraint violation: another computer "
               "may already use that name)")
        hint = hint or "remove the stale computer object that holds the name"
    elif desc == "constraintViolation" and ("password" in low or "pwd" in low):
        why = "the DC refused the new password (constraint violation: password policy)"
    elif desc == "entryAlreadyExists":
        why = "an object with that name already exists"
    elif desc == "noSuchObject":
        why = "the container does not exist (noSuchObject)"
        hint = hint or "create the OU first, or correct domain.ou"
    else:
        why = f"the DC answered {desc}" + (f": {message[:160]}" if message else "")
    return f"{doing}: {why}" + (f"; {hint}" if hint else "")


def _tls(endpoint: Endpoint) -> Any:
    from ldap3 import Tls

    if endpoint.ca_file is not None and not Path(endpoint.ca_file).is_file():
        raise DomainError(f"{endpoint.ca_file}: CA certificate file not found; give the CA "
                          "that signed the DC's certificate (domain.ca_file)")
    return Tls(validate=ssl.CERT_REQUIRED,
               ca_certs_file=str(endpoint.ca_file) if endpoint.ca_file else None,
               valid_names=[endpoint.server_name], sni=endpoint.server_name)


def _tls_failure(endpoint: Endpoint, exc: BaseException) -> DomainError:
    text = str(exc)
    if "doesn't match" in text or "match any name" in text:
        return DomainError(f"{endpoint.describe()}: the DC's certificate does not name "
                           f"{endpoint.server_name}; set domain.controller to the name in its "
                           "certificate")
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return DomainError(f"{endpoint.describe()}: the DC's certificate is not signed by a "
                           "trusted CA; give the issuing CA in domain.ca_file")
    if any(sign in text for sign in ("WRONG_VERSION_NUMBER", "wrong version number", "EOF",
                                     "reset by peer", "UNEXPECTED_RECORD")):
        return DomainUnreachable(f"{endpoint.describe()}: no TLS there (the server did not "
                                 "answer a TLS handshake); use LDAPS on 636 or StartTLS on 389")
    if "refused" in text.lower():
        return DomainUnreachable(f"{endpoint.describe()}: connection refused; is the DC up "
                                 "and is this its address?")
    if "invalid server address" in text:
        return DomainUnreachable(f"{endpoint.describe()}: the address does not resolve "
                                 "(DNS) or is not valid")
    if "timed out" in text.lower() or isinstance(exc, socket.timeout):
        return DomainUnreachable(f"{endpoint.describe()}: no answer within "
                                 f"{endpoint.timeout:.0f} s")
    first = text.splitlines()[0][:200] if text else type(exc).__name__
    return DomainUnreachable(f"{endpoint.describe()}: cannot open a TLS session: {first}")


class AccountSession:
    """An LDAP session with a DC, bound over TLS as one account (admin, joiner or NAME$)."""

    def __init__(self, connection: Any, endpoint: Endpoint, user: str) -> None:
        self._conn = connection
        self.endpoint = endpoint
        self.user = user
        self._info: DomainInfo | None = None

    # -------------------------------------------------------------- opening
    @classmethod
    def open(cls, endpoint: Endpoint, account: str, password: str,
             dns_name: str | None = None) -> AccountSession:
        """Connect, start TLS, check the certificate, simple-bind as `account`."""
        from ldap3 import NONE, SIMPLE, Connection, Server
        from ldap3.core.exceptions import LDAPException

        if endpoint.tls not in ("ldaps", "starttls"):
            raise DomainError(f"{endpoint.describe()}: plain LDAP would send passwords in "
                              "clear and AD refuses password writes on it; use ldaps or "
                              "starttls")
        server = Server(endpoint.address, port=endpoint.effective_port,
                        use_ssl=endpoint.tls == "ldaps", tls=_tls(endpoint), get_info=NONE,
                        connect_timeout=int(endpoint.timeout))
        user = bind_name(account, dns_name or endpoint.server_name.split(".", 1)[-1])
        conn = Connection(server, user=user, password=password, authentication=SIMPLE,
                          raise_exceptions=False, receive_timeout=int(endpoint.timeout),
                          auto_referrals=False, read_only=False)
        try:
            conn.open()
            if endpoint.tls == "starttls" and not conn.start_tls():
                raise DomainUnreachable(f"{endpoint.describe()}: the DC did not start TLS")
            bound = conn.bind()
        except DomainError:
            conn.unbind()
            raise
        except (LDAPException, OSError) as exc:
            conn.unbind()
            raise _tls_failure(endpoint, exc) from None
        if not bound:
            result = dict(conn.result or {})
            conn.unbind()
            raise DomainError(describe_ldap_failure(
                result, f"{endpoint.describe()}: bind as {account}",
                "check the account and its password" if result.get("description") ==
                "invalidCredentials" else ""))
        return cls(conn, endpoint, account)

    def peer_address(self) -> str | None:
        """The IP address this session is connected to (None when unknown)."""
        with contextlib.suppress(Exception):
            return str(self._conn.socket.getpeername()[0])
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead session is not an error
            self._conn.unbind()

    def __enter__(self) -> AccountSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- low level
    def _search(self, base: str, expression: str, attributes: tuple[str, ...] | list[str],
                scope: str = "SUBTREE", doing: str = "search") -> list[dict[str, Any]]:
        from ldap3.core.exceptions import LDAPException

        try:
            ok = self._conn.search(base, expression, search_scope=scope,
                                   attributes=list(attributes), size_limit=50)
        except (LDAPException, OSError) as exc:
            raise _tls_failure(self.endpoint, exc) from None
        if not ok and (self._conn.result or {}).get("description") not in (
                "success", "noSuchObject", "sizeLimitExceeded"):
            raise DomainError(describe_ldap_failure(self._conn.result or {},
                                                    f"{self.endpoint.describe()}: {doing}"))
        return [e for e in (self._conn.response or []) if e.get("type") == "searchResEntry"]

    def _modify(self, dn: str, changes: dict[str, Any], doing: str, hint: str = "") -> None:
        from ldap3.core.exceptions import LDAPException

        try:
            ok = self._conn.modify(dn, changes)
        except (LDAPException, OSError) as exc:
            raise _tls_failure(self.endpoint, exc) from None
        if not ok:
            raise DomainError(describe_ldap_failure(self._conn.result or {}, doing, hint))

    @staticmethod
    def _first(entry: dict[str, Any], name: str) -> bytes | None:
        for key, values in entry.get("raw_attributes", {}).items():
            if key.lower() == name.lower() and values:
                return bytes(values[0])
        return None

    @classmethod
    def _text(cls, entry: dict[str, Any], name: str) -> str | None:
        raw = cls._first(entry, name)
        return raw.decode("utf-8", errors="replace") if raw is not None else None

    @staticmethod
    def _all(entry: dict[str, Any], name: str) -> list[str]:
        for key, values in entry.get("raw_attributes", {}).items():
            if key.lower() == name.lower():
                return [bytes(v).decode("utf-8", errors="replace") for v in values]
        return []

    # -------------------------------------------------------------- the domain
    def domain_info(self) -> DomainInfo:
        """The domain's DNS and NetBIOS names, SID and GUID, and its Computers container."""
        if self._info is not None:
            return self._info
        root = self._search("", "(objectClass=*)", ("defaultNamingContext",
                            "configurationNamingContext", "dnsHostName",
                            "rootDomainNamingContext"), scope="BASE",
                            doing="read the rootDSE")
        if not root:
            raise DomainError(f"{self.endpoint.describe()}: the DC returned no rootDSE")
        base = self._text(root[0], "defaultNamingContext") or ""
        config = self._text(root[0], "configurationNamingContext") or ""
        dc_name = self._text(root[0], "dnsHostName") or self.endpoint.server_name
        forest_dn = self._text(root[0], "rootDomainNamingContext") or base
        domain = self._search(base, "(objectClass=domain)", ("objectSid", "objectGUID",
                              "wellKnownObjects"), scope="BASE", doing="read the domain object")
        if not domain:
            raise DomainError(f"{self.endpoint.describe()}: cannot read the domain object "
                              f"{base}")
        sid_raw, guid_raw = self._first(domain[0], "objectSid"), self._first(domain[0],
                                                                            "objectGUID")
        if sid_raw is None or guid_raw is None or len(guid_raw) != 16:
            raise DomainError(f"{self.endpoint.describe()}: the domain object has no SID/GUID")
        computers = f"CN=Computers,{base}"
        for value in self._all(domain[0], "wellKnownObjects"):
            parts = value.split(":", 3)
            if len(parts) == 4 and parts[2].upper() == COMPUTERS_CONTAINER_GUID:
                computers = parts[3]
        netbios = ""
        partitions = self._search(f"CN=Partitions,{config}",
                                  f"(&(objectClass=crossRef)(nCName={_escape(base)}))",
                                  ("nETBIOSName", "dnsRoot"), scope="LEVEL",
                                  doing="read the domain's NetBIOS name")
        dns_name = ".".join(p.split("=", 1)[1] for p in base.split(",") if "=" in p).lower()
        if partitions:
            netbios = self._text(partitions[0], "nETBIOSName") or ""
            dns_name = (self._text(partitions[0], "dnsRoot") or dns_name).lower()
        self._info = DomainInfo(dns_name=dns_name, netbios_name=netbios.upper(),
                                sid=sid_to_text(sid_raw),
                                guid=str(uuid.UUID(bytes_le=guid_raw)), base_dn=base,
                                computers_dn=computers, dc_dns_name=dc_name,
                                forest=_dn_to_dns(forest_dn) or dns_name)
        return self._info

    def netlogon_ping(self) -> bytes | None:
        """The DC's NETLOGON_SAM_LOGON_RESPONSE_EX for its domain (an LDAP ping over this
        session, `reseal.domain.netlogon`), or None when it gives none."""
        from reseal.domain.netlogon import ping_filter

        found = self._search("", ping_filter(self.domain_info().dns_name), ("Netlogon",),
                             scope="BASE", doing="LDAP ping (Netlogon)")
        return self._first(found[0], "Netlogon") if found else None

    # -------------------------------------------------------------- accounts
    def _account(self, entry: dict[str, Any]) -> ComputerAccount:
        sam = self._text(entry, "sAMAccountName") or ""
        kvno = self._text(entry, "msDS-KeyVersionNumber")
        enctypes = self._text(entry, "msDS-SupportedEncryptionTypes")
        sid_raw, guid_raw = self._first(entry, "objectSid"), self._first(entry, "objectGUID")
        return ComputerAccount(
            dn=entry["dn"], name=sam[:-1] if sam.endswith("$") else sam,
            dns_host_name=self._text(entry, "dNSHostName"),
            spns=tuple(self._all(entry, "servicePrincipalName")),
            user_account_control=int(self._text(entry, "userAccountControl") or 0),
            kvno=int(kvno) if kvno else None,
            sid=sid_to_text(sid_raw) if sid_raw else None,
            guid=str(uuid.UUID(bytes_le=guid_raw)) if guid_raw and len(guid_raw) == 16 else None,
            enctypes=int(enctypes) if enctypes else None,
            operating_system=self._text(entry, "operatingSystem"))

    def find_computer(self, name: str) -> ComputerAccount | None:
        check_computer_name(name)
        sam = name.upper().rstrip("$") + "$"
        found = self._search(self.domain_info().base_dn,
                             f"(&(objectClass=computer)(sAMAccountName={_escape(sam)}))",
                             ACCOUNT_ATTRIBUTES, doing=f"look up {sam}")
        return self._account(found[0]) if found else None

    def read_computer(self, dn: str) -> ComputerAccount:
        found = self._search(dn, "(objectClass=computer)", ACCOUNT_ATTRIBUTES, scope="BASE",
                             doing=f"read {dn}")
        if not found:
            raise DomainError(f"{self.endpoint.describe()}: {dn} is not readable or gone")
        return self._account(found[0])

    def key_version(self, dn: str) -> int:
        """msDS-KeyVersionNumber: the kvno a keytab for this account must carry."""
        kvno = self.read_computer(dn).kvno
        if kvno is None:
            raise DomainError(f"{self.endpoint.describe()}: {dn} has no msDS-KeyVersionNumber")
        return kvno

    def container_exists(self, dn: str) -> bool:
        return bool(self._search(dn, "(objectClass=*)", ("objectClass",), scope="BASE",
                                 doing=f"look up {dn}"))

    def create_computer(self, spec: ComputerSpec, password: str,
                        ou: str | None = None) -> ComputerAccount:
        """One LDAP add with adcli's attributes and `unicodePwd`: never an account without
        a password. `ou` defaults to the domain's Computers container."""
        from ldap3.core.exceptions import LDAPException

        container = ou or self.domain_info().computers_dn
        dn = f"CN={spec.name.upper()},{container}"
        attributes: dict[str, Any] = {
            "objectClass": ["top", "person", "organizationalPerson", "user", "computer"],
            "sAMAccountName": spec.sam_account_name,
            "userAccountControl": str(UF_WORKSTATION_TRUST_ACCOUNT),
            "dNSHostName": spec.dns_host_name.lower(),
            "servicePrincipalName": spec.spns(),
            "msDS-SupportedEncryptionTypes": str(spec.enctypes),
            "unicodePwd": unicode_pwd(password),
        }
        if spec.os_name:
            attributes["operatingSystem"] = spec.os_name
        if spec.os_version:
            attributes["operatingSystemVersion"] = spec.os_version
        doing = f"{self.endpoint.describe()}: create computer {spec.sam_account_name} in {container}"
        try:
            ok = self._conn.add(dn, attributes=attributes)
        except (LDAPException, OSError) as exc:
            raise _tls_failure(self.endpoint, exc) from None
        if not ok:
            result = dict(self._conn.result or {})
            if result.get("description") == "noSuchObject":
                raise DomainError(f"{doing}: {container} does not exist; create the OU or "
                                  "correct domain.ou")
            raise DomainError(describe_ldap_failure(
                result, doing, "delegate 'Create computer objects' on the OU to the join "
                "account, or use an account that has it"
                if result.get("description") == "insufficientAccessRights" else ""))
        return self.read_computer(dn)

    def reset_password(self, dn: str, password: str) -> int:
        """Set the password as an administrator does (a reset); returns the new kvno."""
        self._modify(dn, {"unicodePwd": [("MODIFY_REPLACE", [unicode_pwd(password)])]},
                     f"{self.endpoint.describe()}: reset the password of {dn}")
        return self.key_version(dn)

    def change_password(self, dn: str, old_password: str, new_password: str) -> int:
        """Change the password as its owner does: delete the old value, add the new one in
        one modify (a Change in the DC's audit log, not a Reset); returns the new kvno."""
        self._modify(dn, {"unicodePwd": [("MODIFY_DELETE", [unicode_pwd(old_password)]),
                                         ("MODIFY_ADD", [unicode_pwd(new_password)])]},
                     f"{self.endpoint.describe()}: change the password of {dn}",
                     "the old password is no longer valid")
        return self.key_version(dn)

    def update_computer(self, dn: str, *, dns_host_name: str | None = None,
                        spns: list[str] | None = None, enctypes: int | None = None,
                        os_name: str | None = None, os_version: str | None = None) -> None:
        changes: dict[str, Any] = {}
        if dns_host_name is not None:
            changes["dNSHostName"] = [("MODIFY_REPLACE", [dns_host_name.lower()])]
        if spns is not None:
            changes["servicePrincipalName"] = [("MODIFY_REPLACE", spns)]
        if enctypes is not None:
            changes["msDS-SupportedEncryptionTypes"] = [("MODIFY_REPLACE", [str(enctypes)])]
        if os_name is not None:
            changes["operatingSystem"] = [("MODIFY_REPLACE", [os_name])]
        if os_version is not None:
            changes["operatingSystemVersion"] = [("MODIFY_REPLACE", [os_version])]
        if changes:
            self._modify(dn, changes, f"{self.endpoint.describe()}: update {dn}")

    def set_enabled(self, dn: str, enabled: bool) -> None:
        uac = self.read_computer(dn).user_account_control
        new = uac & ~UF_ACCOUNTDISABLE if enabled else uac | UF_ACCOUNTDISABLE
        if new != uac:
            self._modify(dn, {"userAccountControl": [("MODIFY_REPLACE", [str(new)])]},
                         f"{self.endpoint.describe()}: "
                         f"{'enable' if enabled else 'disable'} {dn}")

    def disable_computer(self, dn: str) -> None:
        self.set_enabled(dn, False)

    def delete_computer(self, dn: str) -> None:
        from ldap3.core.exceptions import LDAPException

        try:
            ok = self._conn.delete(dn)
        except (LDAPException, OSError) as exc:
            raise _tls_failure(self.endpoint, exc) from None
        if not ok:
            raise DomainError(describe_ldap_failure(self._conn.result or {},
                                                    f"{self.endpoint.describe()}: delete {dn}"))


def _dn_to_dns(dn: str) -> str:
    """DC=corp,DC=example -> corp.example (other RDNs ignored)."""
    parts = [rdn.split("=", 1)[1] for rdn in dn.split(",")
             if rdn.strip().upper().startswith("DC=")]
    return ".".join(p.strip() for p in parts).lower()


def _escape(value: str) -> str:
    from ldap3.utils.conv import escape_filter_chars

    return str(escape_filter_chars(value))
