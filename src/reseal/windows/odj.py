"""An offline domain join written into a Windows image: SECURITY, SYSTEM, SAM, SOFTWARE.

What a join is on disk, and where each piece comes from:

* `djoin /provision` makes the account and a blob, `ODJ_PROVISION_DATA`, whose
  `ODJ_WIN7BLOB` carries lpDomain, lpMachineName, lpMachinePassword, the
  `ODJ_POLICY_DNS_DOMAIN_INFO` (NetBIOS name, DNS name, forest, domain GUID, domain SID) and
  `DcInfo`, a DOMAIN_CONTROLLER_INFOW of the DC that made the account; the Windows 8+ part
  `OP_JOINPROV3_PART` adds the account's RID and SID
  (https://learn.microsoft.com/windows/win32/netmgmt/odj-odj_win7blob,
  .../odj-odj_policy_dns_domain_info, .../odj-op_joinprov3_part). Samba's
  `source3/libnet/libnet_join_offline.c` (libnet_odj_compose_ODJ_WIN7BLOB,
  libnet_odj_compose_OP_JOINPROV3_PART) fills exactly these fields from an LDAP/RPC join, and
  its `net offlinejoin requestodj` applies them to Samba's secrets the way Windows applies
  them to LSA.
* `djoin /requestodj /windowspath` (NetRequestOfflineDomainJoin: "the registry is loaded from
  the image and provisioning blob data is written where it can be retrieved during the
  completion phase", https://learn.microsoft.com/windows/win32/api/lmjoin/
  nf-lmjoin-netrequestofflinedomainjoin); at the next boot NetpCompleteOfflineDomainJoin
  stores the machine secret, the primary-domain policy and the DNS domain, and adds the
  domain's groups to the local ones (the NetSetup.log lines NetpManageMachineSecret,
  NetpManageLocalGroupsForJoin, "setting ComputerNamePhysicalDnsDomain" in Microsoft's
  troubleshooting articles on offline join).

reseal writes that completed state directly, as LSA itself keeps it, so no clear-text password
ever sits in SYSTEM waiting for the first boot:

* SECURITY, [MS-LSAD] 3.1.1.1 PolicyPrimaryDomainInformation / PolicyDnsDomainInformation:
  `PolPrDmN` (NetBIOS name) and `PolPrDmS` (domain SID), `PolDnDDN` (DNS name), `PolDnTrN`
  (forest), `PolDnDmG` (domain GUID), and on Windows 10 and later, where SECURITY has them,
  `PolMachineAccountS`/`R` (the account's SID and RID, OP_JOINPROV3_PART); the LSA secret
  `$MACHINE.ACC` with CurrVal = OldVal = the new password (UTF-16LE), as djoin leaves it;
* SYSTEM, every control set: `Services\\Tcpip\\Parameters` `Domain` and `NV Domain` = the
  DNS domain (the primary DNS suffix follows membership unless `SyncDomainWithMembership`
  is 0), Netlogon `Start` = 2 (automatic, as on every member), and `Services\\Netlogon\\
  JoinDomain`: the DC record of the blob's DcInfo (the DOMAIN_CONTROLLER_INFOW fields
  DomainControllerName, DomainControllerAddress(+Type), DomainGuid, DomainName, DnsForestName,
  Flags, DcSiteName, ClientSiteName,
  https://learn.microsoft.com/windows/win32/api/dsgetdc/ns-dsgetdc-domain_controller_infow),
  the key a join leaves for Netlogon's first start so that the clone first asks the DC that
  holds its new account; configuration tools read its presence as "domain join pending a
  restart" (e.g. saltstack `salt.utils.win_system.get_pending_domain_join`), and Netlogon
  consumes it when it starts;
* SAM: Domain Admins (RID 512) in Administrators, Domain Users (513) in Users
  (`reseal.windows.localgroups`);
* SOFTWARE Winlogon `CachePrimaryDomain` = the NetBIOS domain name.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from reseal.registry import Key
from reseal.windows.domain import MACHINE_ACCOUNT_SECRET, policy_bytes
from reseal.windows.hives import LoadedHive, control_sets
from reseal.windows.localgroups import (
    ADMINISTRATORS,
    DOMAIN_ADMINS,
    DOMAIN_USERS,
    USERS,
    add_alias_member,
)
from reseal.windows.lsa import LsaSecrets
from reseal.windows.sam import decode_policy_name, encode_policy_name
from reseal.windows.sid import Sid

REG_SZ = 1
REG_BINARY = 3
REG_DWORD = 4
REG_NONE = 0
SERVICE_AUTO_START = 2
DS_INET_ADDRESS = 1
DS_NETBIOS_ADDRESS = 2
WINLOGON = "Microsoft\\Windows NT\\CurrentVersion\\Winlogon"
JOIN_DOMAIN = "Services\\Netlogon\\JoinDomain"

Record = Callable[[str, str, "str | None", "str | None"], None]  # where, action, old, new


@dataclass(frozen=True)
class DcRecord:
    """The DC that made the account, as DsGetDcName would describe it."""

    host: str  # DNS host name
    address: str  # IP address the clone reaches it at, or its NetBIOS name
    flags: int
    dc_site: str | None = None
    client_site: str | None = None

    @property
    def address_type(self) -> int:
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            return DS_NETBIOS_ADDRESS
        return DS_INET_ADDRESS


@dataclass(frozen=True)
class JoinRecord:
    """Everything the image learns about its domain (never the password)."""

    netbios_domain: str
    dns_domain: str
    forest: str
    domain_sid: Sid
    domain_guid: uuid.UUID
    computer_name: str
    account_sid: Sid | None = None
    dc: DcRecord | None = None

    def describe(self) -> str:
        return f"{self.netbios_domain} ({self.dns_domain}, {self.domain_sid})"


def _set_policy(security: LoadedHive, name: str, data: bytes, shown: str,
                record: Record) -> None:
    path = f"Policy\\{name}"
    key = security.key(path) or security.hive.create_key(path)
    current = key.value("")
    old = current.raw if current is not None else None
    if old == data:
        return
    key.set_value("", current.type if current is not None else REG_NONE, data)
    record(security.where(path), "set", _shown_policy(name, old), shown)


def _shown_policy(name: str, raw: bytes | None) -> str | None:
    if raw is None:
        return None
    if not raw or not any(raw):
        return "empty"
    if name in ("PolPrDmN", "PolDnDDN", "PolDnTrN"):
        try:
            return decode_policy_name(raw).rstrip("\0")
        except Exception:  # noqa: BLE001 - shown only; a damaged value shows as its size
            return f"{len(raw)} bytes"
    if name in ("PolPrDmS", "PolMachineAccountS"):
        try:
            return str(Sid.from_bytes(raw)[0])
        except Exception:  # noqa: BLE001
            return f"{len(raw)} bytes"
    return f"{len(raw)} bytes"


def write_policy(security: LoadedHive, join: JoinRecord, record: Record) -> None:
    """The primary-domain and DNS-domain policy of a member of `join`'s domain."""
    _set_policy(security, "PolPrDmN", encode_policy_name(join.netbios_domain),
                join.netbios_domain, record)
    _set_policy(security, "PolPrDmS", join.domain_sid.to_bytes(), str(join.domain_sid), record)
    _set_policy(security, "PolDnDDN", encode_policy_name(join.dns_domain), join.dns_domain,
                record)
    _set_policy(security, "PolDnTrN", encode_policy_name(join.forest), join.forest, record)
    _set_policy(security, "PolDnDmG", join.domain_guid.bytes_le, str(join.domain_guid), record)
    if join.account_sid is not None and \
            policy_bytes(security.hive, "PolMachineAccountS") is not None:
        _set_policy(security, "PolMachineAccountS", join.account_sid.to_bytes(),
                    str(join.account_sid), record)
        _set_policy(security, "PolMachineAccountR", join.account_sid.rid().to_bytes(4, "little"),
                    str(join.account_sid.rid()), record)


def write_machine_secret(security: LoadedHive, lsa: LsaSecrets, password: str,
                         record: Record, when: datetime | None = None) -> None:
    """`$MACHINE.ACC`: CurrVal = OldVal = the password, UTF-16LE, as djoin leaves it."""
    existed = security.key(f"Policy\\Secrets\\{MACHINE_ACCOUNT_SECRET}") is not None
    value = password.encode("utf-16-le")
    lsa.write(MACHINE_ACCOUNT_SECRET, value, value, when=when)
    record(security.where(f"Policy\\Secrets\\{MACHINE_ACCOUNT_SECRET}"),
           "set" if existed else "create", "a machine password" if existed else None,
           f"new machine password ({len(password)} characters, current and old)")


def write_system(system: LoadedHive, join: JoinRecord, record: Record) -> list[str]:
    """Tcpip, Netlogon and the JoinDomain record in every control set; returns notes."""
    notes: list[str] = []
    for cs in control_sets(system):
        kept = _tcpip_domain(system, f"{cs}\\Services\\Tcpip\\Parameters", join.dns_domain,
                             record)
        if kept:
            notes.append(kept)
        netlogon = system.key(f"{cs}\\Services\\Netlogon")
        if netlogon is None:
            continue  # not a complete control set (no Netlogon service): nothing to start
        start = netlogon.value("Start")
        before = None if start is None else start.data
        if before != SERVICE_AUTO_START:
            netlogon.set_value("Start", REG_DWORD, SERVICE_AUTO_START)
            record(system.where(netlogon.path, "Start"), "set",
                   None if before is None else str(before), "2 (automatic)")
        if join.dc is not None:
            _join_domain_record(system, f"{cs}\\{JOIN_DOMAIN}", join, join.dc, record)
    return notes


def _tcpip_domain(system: LoadedHive, path: str, dns: str, record: Record) -> str | None:
    tcpip = system.key(path)
    if tcpip is None:
        return None
    sync = tcpip.value("SyncDomainWithMembership")
    if sync is not None and sync.data == 0:
        return (f"{system.where(path)}: SyncDomainWithMembership is 0, the primary DNS suffix "
                "the administrator set is kept")
    for name in ("Domain", "NV Domain"):
        held = tcpip.value(name)
        before = None if held is None else str(held.data)
        if before == dns:
            continue
        tcpip.set_value(name, REG_SZ, dns)
        record(system.where(path, name), "set", before, dns)
    return None


def _join_domain_record(system: LoadedHive, path: str, join: JoinRecord, dc: DcRecord,
                        record: Record) -> None:
    if system.key(path) is not None:
        system.hive.delete_key(path)
    key: Key = system.hive.create_key(path)
    key.set_value("DomainControllerName", REG_SZ, f"\\\\{dc.host}")
    key.set_value("DomainControllerAddress", REG_SZ, f"\\\\{dc.address}")
    key.set_value("DomainControllerAddressType", REG_DWORD, dc.address_type)
    key.set_value("DomainGuid", REG_BINARY, join.domain_guid.bytes_le)
    key.set_value("DomainName", REG_SZ, join.dns_domain)
    key.set_value("DnsForestName", REG_SZ, join.forest)
    key.set_value("Flags", REG_DWORD, dc.flags & 0xFFFFFFFF)
    if dc.dc_site:
        key.set_value("DcSiteName", REG_SZ, dc.dc_site)
    if dc.client_site:
        key.set_value("ClientSiteName", REG_SZ, dc.client_site)
    record(system.where(path), "create", None,
           f"{dc.host} ({dc.address}), site {dc.dc_site or '-'}, flags {dc.flags:#010x}")


def write_local_groups(sam: LoadedHive, join: JoinRecord, record: Record) -> bool:
    changed = False
    for alias, rid, name in ((ADMINISTRATORS, DOMAIN_ADMINS, "Administrators"),
                             (USERS, DOMAIN_USERS, "Users")):
        member = Sid(join.domain_sid.authority, (*join.domain_sid.sub_authorities, rid))
        if add_alias_member(sam.hive, alias, member):
            record(sam.where(f"SAM\\Domains\\Builtin\\Aliases\\{alias:08X}", "C"), "add",
                   None, f"{member} ({join.netbios_domain} "
                   f"{'Domain Admins' if rid == DOMAIN_ADMINS else 'Domain Users'}) in {name}")
            changed = True
    return changed


def write_winlogon(software: LoadedHive, join: JoinRecord, record: Record) -> bool:
    winlogon = software.key(WINLOGON)
    if winlogon is None:
        return False
    held = winlogon.value("CachePrimaryDomain")
    before = None if held is None else str(held.data)
    if before == join.netbios_domain:
        return False
    winlogon.set_value("CachePrimaryDomain", REG_SZ, join.netbios_domain)
    record(software.where(WINLOGON, "CachePrimaryDomain"), "set", before,
           join.netbios_domain)
    return True
