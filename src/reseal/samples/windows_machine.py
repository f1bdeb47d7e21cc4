"""A Windows domain member as a sample: hives, profile, tasks, backups and crafted ACLs.

Everything a generalize run of a real domain member meets, on two NTFS volumes: the member's
real SAM, SECURITY and DEFAULT from ../shared/fixtures (Win10 Belkasoft CTF, a member of
PRAIVACYMATRIX) with a real Windows 10 SYSTEM (dissect.regf) where those are present, the
project's own synthetic hives otherwise (said so in `facts["source"]`). No SYSTEM in ../shared
opens a SECURITY there, so SECURITY gets a new LSA key under SYSTEM's boot key and every secret
a known value; SYSTEM gets the member's DNS suffix and Netlogon start type; SOFTWARE is built
for the member's SID and name with the WSUS, MSDTC, Remote Desktop and TaskCache state Windows
keeps. Files: a user profile (hives, DPAPI `Protect\\<SID>`), `$Recycle.Bin\\<SID>` on both
volumes (and a look-alike SID folder that must stay), a scheduled task naming the user,
`RegBack` copies, a machine key file, an event log, and descriptors with allow, deny and object
ACEs, a SACL, a domain SID and a look-alike SID.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib.util
import struct
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from reseal.registry import Hive
from reseal.windows.domain import read_domain_state
from reseal.windows.lsa import LsaSecrets, aes_value_key_id, boot_key, install_lsa_key
from reseal.windows.sam import decode_policy_name, domain_sid_from_v, encode_policy_name
from reseal.windows.sid import Sid

REPO = Path(__file__).resolve().parents[3]
# the real domain members of ../shared/fixtures: (SAM/SECURITY/DEFAULT folder, the SYSTEM paired)
MEMBERS = {
    "belkasoft": ("hives/dfir-artifact-museum/Win10-BelkasoftCTF", "hives/dissect.regf/SYSTEM.xz"),
    "win7-ez": ("hives/dfir-artifact-museum/Win7-EZ", "hives/regipy/SYSTEM.xz"),
    "dfwinreg": ("hives/dfwinreg", "hives/regipy/SYSTEM.xz"),
}
SYNTHETIC_DOMAIN = ("RESEALLAB", "reseal-lab.example", "S-1-5-21-3301220001-1843304529-927371212")
USER_RID = 1001
GUEST_RID = 501
TASK_NAME = "ResealSampleTask"
WIN10_TASK = "Microsoft/Windows/ResealRegistryTask"
TASK_CACHE = "Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache"
RDP_STORE = "Microsoft\\SystemCertificates\\Remote Desktop\\Certificates"
EVERYONE, SYSTEM_SID = Sid.parse("S-1-1-0"), Sid.parse("S-1-5-18")
ADMINISTRATORS = Sid.parse("S-1-5-32-544")
OBJECT_TYPE = uuid.UUID("bf967aba-0de6-11d0-a285-00aa003049e2").bytes_le


@dataclass
class WindowsMachineSample:
    """Files and ACLs of the two volumes, and the facts tests and the demo check."""

    system_files: dict[str, bytes | Path] = field(default_factory=dict)
    data_files: dict[str, bytes | Path] = field(default_factory=dict)
    system_acls: dict[str, bytes] = field(default_factory=dict)
    data_acls: dict[str, bytes] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def fixture_builder() -> ModuleType:
    """scripts/build_fixture_hives.py (the project's hive builder) as a module."""
    name = "reseal_build_fixture_hives"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "build_fixture_hives.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{REPO / 'scripts' / 'build_fixture_hives.py'}: not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _read_maybe_xz(path: Path) -> bytes:
    if path.name.endswith(".xz"):
        import lzma

        with lzma.open(path) as handle:
            return handle.read()
    return path.read_bytes()


def compose_windows_machine(shared: Path | None, workdir: Path, member: str = "belkasoft"
                            ) -> WindowsMachineSample:
    """The sample machine; hive files are written to `workdir` (they are large). `member`
    names the real member of ../shared to use (MEMBERS)."""
    builder = fixture_builder()
    sample = WindowsMachineSample()
    folder, system_file = MEMBERS[member]
    real = shared is not None and (shared / folder / "SECURITY").is_file() \
        and (shared / system_file).is_file()
    if real:
        assert shared is not None
        system = Hive.from_bytes(_read_maybe_xz(shared / system_file), name="SYSTEM")
        sam = Hive.open(shared / folder / "SAM")
        security = Hive.open(shared / folder / "SECURITY")
        default = Hive.open(shared / folder / "DEFAULT") if (shared / folder / "DEFAULT").is_file() \
            else builder.new_hive("ROOT")
        state = read_domain_state(security)
        domain, dns = state.primary_name or "", state.dns_name or ""
        sample.facts["source"] = (f"real hives: {folder} SAM/SECURITY (a member of {domain}) with "
                                  f"the {system_file} SYSTEM; project-built SOFTWARE")
    else:
        machine = builder.Machine()
        system = builder.build_system(machine)
        sam = builder.build_sam(machine)
        security = builder.build_security(machine)
        default = builder.new_hive("ROOT")
        domain, dns = SYNTHETIC_DOMAIN[0], SYNTHETIC_DOMAIN[1]
        _synthetic_membership(security, domain, dns, Sid.parse(SYNTHETIC_DOMAIN[2]))
        sample.facts["source"] = ("synthetic hives built by the project (../shared/fixtures is "
                                  "absent, so no real Windows hives)")
    account = sam.key("SAM\\Domains\\Account")
    assert account is not None and (v := account.value("V")) is not None
    machine_sid = domain_sid_from_v(v.raw)
    name_key = security.key("Policy\\PolAcDmN")
    assert name_key is not None and (stored := name_key.value("")) is not None
    computer = decode_policy_name(stored.raw)
    user_name = _user_name(sam, USER_RID) or "alice"
    machine = builder.Machine(sid=machine_sid, name=computer)
    user_sid = machine.user_sid(USER_RID)
    domain_sid = _domain_sid(security)
    facts = sample.facts
    facts.update(machine_sid=str(machine_sid), computer_name=computer, user_name=user_name,
                 user_sid=str(user_sid), domain=domain, dns_domain=dns, domain_sid=str(domain_sid),
                 lookalike_text=f"{machine_sid}5-{USER_RID}",
                 neighbour_sid=str(Sid(5, (*machine_sid.sub_authorities[:3],
                                           machine_sid.sub_authorities[3] + 1, USER_RID))))
    _member_system(system, dns)
    facts["secrets"] = _consistent_secrets(security, boot_key(system))
    software = builder.build_software(machine)
    software.key("Microsoft\\Windows NT\\CurrentVersion\\Winlogon").set_value(
        "DefaultDomainName", 1, domain)
    guid = software.key("Microsoft\\Cryptography")
    machine_guid = guid.value("MachineGuid").data if guid is not None else ""  # type: ignore[union-attr]
    _software_state(sample, software, machine_sid, user_sid, computer, user_name, str(machine_guid))
    hives = {"SYSTEM": system, "SOFTWARE": software, "SAM": sam, "SECURITY": security,
             "DEFAULT": default}
    config = "Windows/System32/config"
    for hive_name, hive in hives.items():
        path = workdir / hive_name
        path.write_bytes(hive.to_bytes())
        sample.system_files[f"{config}/{hive_name}"] = path
        sample.system_files[f"{config}/RegBack/{hive_name}"] = path  # the master's backup
    for relative, data in builder.build_user_hives(machine).items():
        sample.system_files[relative.replace("Users/alice/", f"Users/{user_name}/")] = data
    _profile_and_folders(sample, user_sid, user_name)
    _acls(sample, machine_sid, user_sid, domain_sid, user_name)
    return sample


def _user_name(sam: Hive, rid: int) -> str | None:
    from reseal.windows.sam import user_name_from_v

    key = sam.key(f"SAM\\Domains\\Account\\Users\\{rid:08X}")
    value = key.value("V") if key is not None else None
    return user_name_from_v(value.raw, where=f"SAM {key.path}") if key and value else None


def _domain_sid(security: Hive) -> Sid:
    key = security.key("Policy\\PolPrDmS")
    value = key.value("") if key is not None else None
    assert value is not None and value.raw, "the sample machine must be a domain member"
    return Sid.from_bytes(value.raw)[0]


def _synthetic_membership(security: Hive, domain: str, dns: str, domain_sid: Sid) -> None:
    for name, data in (("PolPrDmN", encode_policy_name(domain)), ("PolPrDmS", domain_sid.to_bytes()),
                       ("PolDnDDN", encode_policy_name(dns)), ("PolDnTrN", encode_policy_name(dns)),
                       ("PolDnDmG", uuid.UUID(int=0x5EA1).bytes_le)):
        (security.key(f"Policy\\{name}") or security.create_key(f"Policy\\{name}")).set_value(
            "", 0, data)
    cache = security.create_key("Cache")
    cache.set_value("NL$Control", 3, struct.pack("<II", 0x00010004, 2))
    used = bytearray(168)
    struct.pack_into("<HH", used, 0, 10, 18)
    used[64:80] = bytes(range(1, 17))
    cache.set_value("NL$1", 3, bytes(used))
    empty = bytearray(168)
    struct.pack_into("<I", empty, 40, 0x00010004)
    cache.set_value("NL$2", 3, bytes(empty))


def _member_system(system: Hive, dns: str) -> None:
    for cs in (k.name for k in system.root.subkeys() if k.name.lower().startswith("controlset")):
        tcpip = system.key(f"{cs}\\Services\\Tcpip\\Parameters")
        if tcpip is not None:
            tcpip.set_value("Domain", 1, dns)
            tcpip.set_value("NV Domain", 1, dns)
        (system.key(f"{cs}\\Services\\Netlogon") or system.create_key(
            f"{cs}\\Services\\Netlogon")).set_value("Start", 4, 2)
        system.create_key(f"{cs}\\Services\\Netlogon\\Parameters").set_value(
            "DynamicSiteName", 1, "Default-First-Site-Name")


def _consistent_secrets(security: Hive, boot: bytes) -> dict[str, str]:
    """A new LSA key under `boot` (keeping the GUID the secrets name), known secret values."""
    key_id = None
    secrets_key = security.key("Policy\\Secrets")
    for secret in secrets_key.subkeys() if secrets_key is not None else []:
        stored = secret.subkey("CurrVal")
        current = stored.value("") if stored is not None else None
        if current is not None and len(current.raw) > 60:
            key_id = aes_value_key_id(current.raw)
            break
    lsa = LsaSecrets(security, install_lsa_key(security, boot, key_id=key_id))
    written: dict[str, str] = {}
    for name in [*lsa.names(), "$MACHINE.ACC", "NL$KM", "DPAPI_SYSTEM"]:
        if name in written:
            continue
        if name.upper() == "DPAPI_SYSTEM":
            value = struct.pack("<I", 1) + hashlib.sha1(b"machine").digest() + \
                hashlib.sha1(b"user").digest()
        elif name.upper() == "NL$KM":
            value = hashlib.sha512(b"sample cached-logon key").digest()
        elif name.upper() == "$MACHINE.ACC":
            value = ("sample-machine-password-" * 6)[:120].encode("utf-16-le")
        else:
            value = f"sample value of {name}".encode("utf-16-le")
        lsa.write(name, value, value, when=datetime(2023, 5, 1, tzinfo=UTC))
        written[name] = value.hex()
    return written


def _task_xml(user_sid: Sid, computer: str, user: str, lookalike: str) -> bytes:
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>\r\n'
        '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">\r\n'
        f"  <RegistrationInfo>\r\n    <Author>{computer}\\{user}</Author>\r\n"
        f"    <URI>\\{TASK_NAME}</URI>\r\n"
        f"    <SecurityDescriptor>D:(A;;FA;;;SY)(A;;FA;;;{user_sid})(A;;FR;;;{lookalike})"
        "</SecurityDescriptor>\r\n  </RegistrationInfo>\r\n"
        f"  <Principals>\r\n    <Principal id=\"Author\">\r\n      <UserId>{user_sid}</UserId>\r\n"
        "      <LogonType>InteractiveToken</LogonType>\r\n    </Principal>\r\n  </Principals>\r\n"
        "  <Actions Context=\"Author\">\r\n    <Exec>\r\n      <Command>notepad.exe</Command>\r\n"
        "    </Exec>\r\n  </Actions>\r\n</Task>\r\n"
    )
    return codecs.BOM_UTF16_LE + text.encode("utf-16-le")


def _software_state(sample: WindowsMachineSample, software: Hive, machine_sid: Sid, user_sid: Sid,
                    computer: str, user: str, machine_guid: str) -> None:
    wu = software.key("Microsoft\\Windows\\CurrentVersion\\WindowsUpdate")
    assert wu is not None
    wu.set_value("PingID", 1, "{6d1e3a5c-7f42-4c1b-9a0e-31f2d4c5b6a7}")
    wu.set_value("AccountDomainSid", 1, sample.facts["domain_sid"])
    for root in ("Classes\\CID", "Classes\\CID.Local"):
        for cid, description in (("{5ea1c1d0-0000-4000-8000-00000000dcdc}", "MSDTC"),
                                 ("{5ea1c1d0-0000-4000-8000-0000000000ee}", "MSDTCUIS")):
            software.create_key(f"{root}\\{cid}\\Description").set_value("", 1, description)
    sample.facts["msdtc_cid"] = "5ea1c1d0-0000-4000-8000-00000000dcdc"
    task = _task_xml(user_sid, computer, user, sample.facts["lookalike_text"])
    sample.system_files[f"Windows/System32/Tasks/{TASK_NAME}"] = task
    win10 = _task_xml(user_sid, computer, user, sample.facts["lookalike_text"])
    sample.system_files[f"Windows/System32/Tasks/{WIN10_TASK}"] = win10
    from reseal.windows.secdesc import build_descriptor

    for path, data, ident, hashed in ((TASK_NAME, task, "{0A7C7E55-0000-4000-8000-000000000001}", True),
                                      (WIN10_TASK, win10, "{0A7C7E55-0000-4000-8000-000000000002}", False)):
        tree = software.create_key(f"{TASK_CACHE}\\Tree\\{path.replace('/', chr(92))}")
        tree.set_value("Id", 1, ident)
        tree.set_value("SD", 3, build_descriptor(ADMINISTRATORS, SYSTEM_SID,
                                                 [(0, 0, 0x1F019F, user_sid)]))
        entry = software.create_key(f"{TASK_CACHE}\\Tasks\\{ident}")
        entry.set_value("Path", 1, "\\" + path.replace("/", "\\"))
        entry.set_value("Author", 1, f"{computer}\\{user}")
        entry.set_value("Hash", 3, hashlib.sha256(data).digest() if hashed
                        else hashlib.sha256(b"definition kept in the registry").digest())
    sample.facts["task_hash_before"] = hashlib.sha256(task).hexdigest()
    cert, key_file, container = _rdp_certificate(computer)
    if cert is not None:
        thumb = hashlib.sha1(cert).hexdigest().upper()
        container_utf16 = container.encode("utf-16-le") + b"\0\0"
        prov = struct.pack("<IIIIIII", 28, 28 + len(container_utf16), 24, 0x20, 0, 0, 1)
        prov += container_utf16 + "Microsoft Enhanced RSA and AES Cryptographic Provider\0".encode(
            "utf-16-le")
        blob = struct.pack("<III", 2, 1, len(prov)) + prov + struct.pack("<III", 32, 1, len(cert)) + cert
        software.create_key(f"{RDP_STORE}\\{thumb}").set_value("Blob", 3, blob)
        name = hashlib.md5(container.lower().encode()).hexdigest() + "_" + machine_guid
        sample.system_files[f"ProgramData/Microsoft/Crypto/RSA/MachineKeys/{name}"] = key_file
        sample.facts["rdp_thumbprint"] = thumb
        sample.facts["rdp_key_file"] = f"/ProgramData/Microsoft/Crypto/RSA/MachineKeys/{name}"


def _rdp_certificate(computer: str) -> tuple[bytes | None, bytes, str]:
    """A self-signed certificate for CN=computer, as Remote Desktop makes it, and a CryptoAPI
    key file naming its container (the key material itself is not needed here)."""
    container = "TSSecKeySet1"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        return None, b"", container
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, computer)])
    now = datetime(2023, 5, 1, tzinfo=UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(0x5EA1)
            .not_valid_before(now).not_valid_after(now + timedelta(days=182))
            .sign(key, hashes.SHA256()))
    header = struct.pack("<IIIIIIIIII", 2, 0, len(container) + 1, 0, 0, 0x494, 0, 0, 0, 0)
    key_file = header + container.encode() + b"\0" + key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.DER), key_file, container


def _profile_and_folders(sample: WindowsMachineSample, user_sid: Sid, user: str) -> None:
    files = sample.system_files
    protect = f"Users/{user}/AppData/Roaming/Microsoft/Protect/{user_sid}"
    files[f"{protect}/1f6b2c3d-0000-4000-8000-00000000a11c"] = b"\x02\x00\x00\x00" + bytes(736)
    files[f"{protect}/Preferred"] = bytes(24)
    files[f"Users/{user}/Documents/notes.txt"] = b"notes of the master's user\r\n"
    bin_ini = b"[.ShellClassInfo]\r\nCLSIDD={645FF040-5081-101B-9F08-00AA002F954E}\r\n"
    files[f"$Recycle.Bin/{user_sid}/desktop.ini"] = bin_ini
    files[f"$Recycle.Bin/{user_sid}/$IABC123.txt"] = b"\x02" + bytes(23)
    files[f"$Recycle.Bin/{user_sid}/$RABC123.txt"] = b"deleted by the master's user\r\n"
    files[f"$Recycle.Bin/{sample.facts['lookalike_text']}/desktop.ini"] = bin_ini
    files["Windows/System32/winevt/Logs/System.evtx"] = (
        b"ElfFile\x00" + bytes(120) + f"{sample.facts['computer_name']} {user_sid}".encode(
            "utf-16-le"))
    files["Windows/explorer.exe"] = b"MZ sample placeholder\r\n"
    data = sample.data_files
    data[f"$Recycle.Bin/{user_sid}/desktop.ini"] = bin_ini
    data["Data/Projects/report.txt"] = b"a document on the data volume\r\n"
    data["Data/Shared/readme.txt"] = b"shared with the domain\r\n"


# ------------------------------------------------------------------ descriptors
def _ace(ace_type: int, flags: int, mask: int, sid: Sid, object_type: bytes | None = None) -> bytes:
    body = struct.pack("<I", mask)
    if object_type is not None:
        body += struct.pack("<I", 1) + object_type
    body += sid.to_bytes()
    return struct.pack("<BBH", ace_type, flags, 4 + len(body)) + body


def _acl(aces: list[bytes]) -> bytes:
    payload = b"".join(aces)
    return struct.pack("<BBHHH", 4, 0, 8 + len(payload), len(aces), 0) + payload


def rich_descriptor(owner: Sid, group: Sid, dacl: list[bytes], sacl: list[bytes]) -> bytes:
    """Self-relative descriptor with a SACL and a DACL (any ACE types, given as bytes)."""
    sacl_raw, dacl_raw = _acl(sacl), _acl(dacl)
    control = 0x8000 | 0x0004 | (0x0010 if sacl else 0)
    off_sacl = 20 if sacl else 0
    off_dacl = 20 + (len(sacl_raw) if sacl else 0)
    off_owner = off_dacl + len(dacl_raw)
    off_group = off_owner + owner.size
    header = struct.pack("<BBHIIII", 1, 0, control, off_owner, off_group, off_sacl, off_dacl)
    return header + (sacl_raw if sacl else b"") + dacl_raw + owner.to_bytes() + group.to_bytes()


def _acls(sample: WindowsMachineSample, machine_sid: Sid, user_sid: Sid, domain_sid: Sid,
          user: str) -> None:
    guest = Sid(5, (*machine_sid.sub_authorities, GUEST_RID))
    domain_users = Sid(5, (*domain_sid.sub_authorities, 513))
    neighbour = Sid.parse(sample.facts["neighbour_sid"])
    longer = Sid(5, (21, 1, *machine_sid.sub_authorities[1:], USER_RID))  # old SID's parts, shifted
    sample.facts["longer_lookalike_sid"] = str(longer)
    rich = rich_descriptor(
        user_sid, Sid(5, (*machine_sid.sub_authorities, 513)),
        dacl=[_ace(0x01, 0, 0x000116, guest),  # deny the local Guest write
              _ace(0x00, 0x03, 0x1F01FF, user_sid),
              _ace(0x00, 0x03, 0x1F01FF, SYSTEM_SID),
              _ace(0x05, 0, 0x000100, user_sid, OBJECT_TYPE),  # object ACE
              _ace(0x00, 0, 0x1200A9, domain_users),
              _ace(0x00, 0, 0x1200A9, neighbour),
              _ace(0x00, 0, 0x1200A9, longer)],
        sacl=[_ace(0x02, 0xC0, 0x0D0000, user_sid), _ace(0x02, 0x40, 0x0D0000, EVERYONE)])
    foreign = rich_descriptor(ADMINISTRATORS, SYSTEM_SID,
                              dacl=[_ace(0x00, 0, 0x1F01FF, domain_users),
                                    _ace(0x00, 0, 0x1200A9, neighbour),
                                    _ace(0x00, 0, 0x1200A9, longer)],
                              sacl=[_ace(0x02, 0x40, 0x0D0000, domain_users)])
    sample.system_acls[f"/Users/{user}"] = rich
    sample.system_acls[f"/Users/{user}/Documents/notes.txt"] = rich
    sample.system_acls[f"/$Recycle.Bin/{user_sid}"] = rich
    sample.system_acls["/Windows/explorer.exe"] = foreign
    sample.data_acls["/Data/Projects"] = rich
    sample.data_acls["/Data/Projects/report.txt"] = rich
    sample.data_acls[f"/$Recycle.Bin/{user_sid}"] = rich
    sample.data_acls["/Data/Shared/readme.txt"] = foreign
    sample.facts["rich_acl"] = rich.hex()
    sample.facts["foreign_acl"] = foreign.hex()
