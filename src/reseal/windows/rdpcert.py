"""The Remote Desktop listener's self-signed certificate, as stored offline.

Windows makes a self-signed certificate named after the computer for Remote Desktop (TLS and
Network Level Authentication) and keeps it in the machine store `Remote Desktop`: SOFTWARE
`Microsoft\\SystemCertificates\\Remote Desktop\\Certificates\\<SHA-1 thumbprint>`, value `Blob`
(a serialized store element: `{property id, 1, length, data}` records; property 32 is the DER
certificate, property 2 the `CRYPT_KEY_PROV_INFO` naming the private key's container). The
private key is a file under `ProgramData\\Microsoft\\Crypto\\RSA\\MachineKeys` (CryptoAPI; the
container name is in its header) or `ProgramData\\Microsoft\\Crypto\\Keys` (CNG; the name in
UTF-16). Remote Desktop Services makes a new certificate when the store has none ("Removing
Self-Signed RDP Certificates", Microsoft Ask PFE Platforms blog, topic 1,
https://blogs.technet.microsoft.com/askpfeplat/2017/02/01/removing-self-signed-rdp-certificates/).
A certificate whose issuer is not its subject was deployed on purpose and is left alone.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from reseal.errors import CorruptData

RDP_STORE = "Microsoft\\SystemCertificates\\Remote Desktop\\Certificates"
KEY_DIRS = ("ProgramData/Microsoft/Crypto/RSA/MachineKeys", "ProgramData/Microsoft/Crypto/Keys")
CERT_KEY_PROV_INFO_PROP_ID = 2
CERT_CERT_PROP_ID = 32
MAX_KEY_FILE = 64 << 10


@dataclass(frozen=True)
class StoredCertificate:
    thumbprint: str  # upper-case hex of the SHA-1 of the DER certificate
    der: bytes
    container: str | None  # private key container name
    self_signed: bool
    subject_cn: str | None


def parse_store_blob(blob: bytes, *, where: str) -> StoredCertificate:
    properties: dict[int, bytes] = {}
    pos = 0
    while pos + 12 <= len(blob):
        prop_id, _reserved, length = struct.unpack_from("<III", blob, pos)
        pos += 12
        if pos + length > len(blob):
            raise CorruptData(f"{where}: certificate property {prop_id} runs past the blob")
        properties[prop_id] = blob[pos:pos + length]
        pos += length
    der = properties.get(CERT_CERT_PROP_ID)
    if der is None:
        raise CorruptData(f"{where}: no certificate in the store element")
    issuer, subject = _issuer_and_subject(der, where)
    return StoredCertificate(hashlib.sha1(der).hexdigest().upper(), der,
                             _container_name(properties.get(CERT_KEY_PROV_INFO_PROP_ID)),
                             issuer == subject, _common_name(subject))


def _container_name(info: bytes | None) -> str | None:
    """pwszContainerName of a serialized CRYPT_KEY_PROV_INFO (offsets from its start)."""
    if info is None or len(info) < 4:
        return None
    (offset,) = struct.unpack_from("<I", info)
    if not 0 < offset < len(info):
        return None
    end = offset
    while end + 1 < len(info) and info[end:end + 2] != b"\0\0":
        end += 2
    return info[offset:end].decode("utf-16-le", errors="replace") or None


# ------------------------------------------------------------------ minimal DER
def _tlv(data: bytes, pos: int, where: str) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at `pos`, bounds-checked."""
    if pos + 2 > len(data):
        raise CorruptData(f"{where}: certificate DER ends early")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise CorruptData(f"{where}: certificate DER length is malformed")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise CorruptData(f"{where}: certificate DER element runs past the end")
    return tag, pos, pos + length


def _issuer_and_subject(der: bytes, where: str) -> tuple[bytes, bytes]:
    _tag, start, _end = _tlv(der, 0, where)  # Certificate
    _tag, pos, tbs_end = _tlv(der, start, where)  # TBSCertificate
    fields: list[bytes] = []
    while pos < tbs_end and len(fields) < 6:
        tag, content, end = _tlv(der, pos, where)
        if tag != 0xA0:  # skip the explicit [0] version
            fields.append(der[pos:end])
        pos = end
    if len(fields) < 5:
        raise CorruptData(f"{where}: certificate has too few fields")
    # serialNumber, signature, issuer, validity, subject
    return fields[2], fields[4]


def _common_name(name: bytes) -> str | None:
    """The first commonName (2.5.4.3) of a DER Name."""
    marker = b"\x06\x03\x55\x04\x03"
    at = name.find(marker)
    if at < 0:
        return None
    try:
        _tag, start, end = _tlv(name, at + len(marker), "common name")
    except CorruptData:
        return None
    return name[start:end].decode("utf-8", errors="replace")


def key_file_names_container(data: bytes, container: str) -> bool:
    """Whether a CryptoAPI or CNG key file holds `container` as its name."""
    return container.encode("ascii", "ignore") + b"\0" in data or \
        container.encode("utf-16-le") + b"\0\0" in data
