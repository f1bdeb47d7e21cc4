"""The DC's answer to an LDAP ping: its flags and sites, as Windows' DC locator sees them.

An LDAP ping is a base search of the rootDSE with the filter `(&(DnsDomain=D)(NtVer=V))` for
the attribute `Netlogon` ([MS-ADTS] 6.3.3, "LDAP Ping"); over TCP as well as CLDAP, Samba and
Windows DCs answer it. With NtVer 6 (NETLOGON_NT_VERSION_5 | _5EX) the answer is a
NETLOGON_SAM_LOGON_RESPONSE_EX ([MS-ADTS] 6.3.1.9):

    Opcode (2) Sbz (2) Flags (4) DomainGuid (16)
    DnsForestName DnsDomainName DnsHostName NetbiosDomainName NetbiosComputerName UserName
    DcSiteName ClientSiteName   (each an RFC 1035 name, compressed with pointers into the
                                 message) ... NtVersion LmNtToken Lm20Token

`DsGetDcName` turns it into a DOMAIN_CONTROLLER_INFO
(https://learn.microsoft.com/windows/win32/api/dsgetdc/ns-dsgetdc-domain_controller_infow):
the response's flags plus DS_DNS_CONTROLLER/DOMAIN/FOREST_FLAG when the names are DNS names.
The Windows offline join keeps that record for the clone's first boot (`reseal.windows.odj`).

The message comes from the network: every length and pointer is checked, a name is at most
255 bytes and 128 labels, pointer chains are bounded. Python 3.8+ like the rest of the package.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from reseal.errors import BadInput

LOGON_SAM_LOGON_RESPONSE_EX = 23
LOGON_SAM_USER_UNKNOWN_EX = 25
NT_VERSION_5_5EX = 6
DS_DNS_CONTROLLER_FLAG = 0x20000000
DS_DNS_DOMAIN_FLAG = 0x40000000
DS_DNS_FOREST_FLAG = 0x80000000
MAX_NAME = 255
MAX_LABELS = 128
MAX_MESSAGE = 4096


class PingError(BadInput):
    """The DC's answer to the LDAP ping is not a NETLOGON_SAM_LOGON_RESPONSE_EX."""


@dataclass(frozen=True)
class DcPing:
    """The fields of a NETLOGON_SAM_LOGON_RESPONSE_EX a join keeps."""

    flags: int  # DS_*_FLAG bits as the DC sent them
    domain_guid: str
    forest: str
    dns_domain: str
    dc_host: str  # the DC's DNS host name
    netbios_domain: str
    dc_netbios: str
    dc_site: str | None
    client_site: str | None

    @property
    def locator_flags(self) -> int:
        """The flags DsGetDcName reports: the DC's, plus the three DNS-name flags."""
        return self.flags | DS_DNS_CONTROLLER_FLAG | DS_DNS_DOMAIN_FLAG | DS_DNS_FOREST_FLAG


def ping_filter(dns_domain: str) -> str:
    """The LDAP filter of an LDAP ping for `dns_domain` (NtVer as an escaped 4-byte value)."""
    escaped = "".join(f"\\{b:02x}" for b in struct.pack("<I", NT_VERSION_5_5EX))
    safe = "".join(c for c in dns_domain if c.isalnum() or c in ".-")
    return f"(&(DnsDomain={safe})(NtVer={escaped}))"


def _name(message: bytes, offset: int) -> tuple[str, int]:
    """One compressed name at `offset`: (text, offset after it in the main sequence)."""
    labels: list[str] = []
    size = 0
    end: int | None = None
    jumps = 0
    position = offset
    while True:
        if position >= len(message):
            raise PingError("LDAP ping answer: a name runs past the end of the message")
        length = message[position]
        if length == 0:
            position += 1
            break
        if length & 0xC0 == 0xC0:
            if position + 1 >= len(message):
                raise PingError("LDAP ping answer: a name pointer is cut off")
            target = ((length & 0x3F) << 8) | message[position + 1]
            if end is None:
                end = position + 2
            jumps += 1
            if jumps > MAX_LABELS or target >= len(message):
                raise PingError("LDAP ping answer: a name pointer loops or points outside")
            position = target
            continue
        if length & 0xC0:
            raise PingError("LDAP ping answer: a name label has reserved length bits")
        label = message[position + 1: position + 1 + length]
        if len(label) != length:
            raise PingError("LDAP ping answer: a name label runs past the end of the message")
        size += length + 1
        labels.append(label.decode("utf-8", errors="replace"))
        if size > MAX_NAME or len(labels) > MAX_LABELS:
            raise PingError("LDAP ping answer: a name is longer than 255 bytes")
        position += 1 + length
    return ".".join(labels), (end if end is not None else position)


def parse_ping(message: bytes) -> DcPing:
    """Decode a NETLOGON_SAM_LOGON_RESPONSE_EX (PingError when it is not one)."""
    if len(message) > MAX_MESSAGE:
        raise PingError(f"LDAP ping answer: {len(message)} bytes, more than a DC sends")
    if len(message) < 24:
        raise PingError("LDAP ping answer: shorter than its fixed header")
    opcode, _sbz, flags = struct.unpack_from("<HHI", message, 0)
    if opcode not in (LOGON_SAM_LOGON_RESPONSE_EX, LOGON_SAM_USER_UNKNOWN_EX):
        raise PingError(f"LDAP ping answer: opcode {opcode}, not a SAM logon response (23)")
    guid = str(uuid.UUID(bytes_le=bytes(message[8:24])))
    names = []
    offset = 24
    for _ in range(8):
        text, offset = _name(message, offset)
        names.append(text)
    forest, domain, host, netbios_domain, dc_netbios, _user, dc_site, client_site = names
    return DcPing(flags=flags, domain_guid=guid, forest=forest.lower(), dns_domain=domain.lower(),
                  dc_host=host.lower(), netbios_domain=netbios_domain.upper(),
                  dc_netbios=dc_netbios.upper(), dc_site=dc_site or None,
                  client_site=client_site or None)
