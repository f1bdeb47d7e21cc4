"""Build fixtures/hives/: small SYSTEM, SOFTWARE, SAM and SECURITY hives made with reseal's own
writer, holding the keys the Windows operations touch, for tests that run where the real hives
of ../shared are absent.

The four hives belong to one made-up machine: the SAM's domain key is encrypted with the boot key
that SYSTEM's Lsa class names spell, so offline SAM readers (impacket's secretsdump) decrypt the
user hashes; SAM and SECURITY carry the same machine SID; SECURITY PolAcDmN, SYSTEM ComputerName
and Winlogon agree on the computer name.

Also alice's user hives (alice-NTUSER.DAT, alice-UsrClass.dat, whose root key is named after
her SID), for the SID change in user hives.

Usage: python scripts/build_fixture_hives.py [OUTDIR]    (default: fixtures/hives)
"""

from __future__ import annotations

import hashlib
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from Cryptodome.Cipher import ARC4, DES
from Cryptodome.Hash import MD4

from reseal.registry import Hive
from reseal.windows.sam import encode_policy_name
from reseal.windows.secdesc import build_descriptor
from reseal.windows.sid import Sid

REG_NONE, REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_MULTI_SZ = 0, 1, 2, 3, 4, 7
QWERTY = b"!@#$%^&*()qwertyUIOPAzxcvbnmQQQQQQQQQQQQ)(*@&%\0"
DIGITS = b"0123456789012345678901234567890123456789\0"
BOOT_KEY_PERMUTATION = (8, 5, 4, 2, 11, 9, 13, 3, 0, 6, 1, 12, 14, 10, 15, 7)
NET_CLASS = "{4d36e972-e325-11ce-bfc1-08002be10318}"
ADMINISTRATORS = Sid.parse("S-1-5-32-544")
USERS = Sid.parse("S-1-5-32-545")
SYSTEM_SID = Sid.parse("S-1-5-18")
EVERYONE = Sid.parse("S-1-1-0")


@dataclass(frozen=True)
class Machine:
    """The identity the fixture hives describe."""

    sid: Sid = Sid.parse("S-1-5-21-1004336348-1177238915-682003330")
    name: str = "RESEAL-FIXTURE"
    lsa_classes: tuple[str, str, str, str] = ("4a8c7e21", "b3f0d912", "77e1c0aa", "0d5e9b36")
    hashed_boot_key: bytes = bytes.fromhex("5f1d2c3b4a69788796a5b4c3d2e1f001")
    key_salt: bytes = bytes.fromhex("00112233445566778899aabbccddeeff")
    machine_guid: str = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    sqm_id: str = "{0A1B2C3D-4E5F-4061-8273-94A5B6C7D8E9}"
    sus_id: str = "3c2b1a09-8f7e-4d6c-9b5a-493827160504"
    hw_profile_guid: str = "{a1b2c3d4-e5f6-4788-99aa-bbccddeeff00}"
    nic_guid: str = "{4b0ae068-b350-4bd4-85ab-77e00e581863}"
    users: tuple[tuple[int, str, str], ...] = ((500, "Administrator", "Passw0rd!"),
                                              (1001, "alice", "alice-secret"))

    def boot_key(self) -> bytes:
        scrambled = bytes.fromhex("".join(self.lsa_classes))
        return bytes(scrambled[i] for i in BOOT_KEY_PERMUTATION)

    def user_sid(self, rid: int) -> Sid:
        return Sid(5, (*self.sid.sub_authorities, rid))


def nt_hash(password: str) -> bytes:
    return MD4.new(password.encode("utf-16-le")).digest()


def _des_key(seven: bytes) -> bytes:
    bits = int.from_bytes(seven, "big")
    return bytes((((bits >> (49 - 7 * i)) & 0x7F) << 1) for i in range(8))


def _rid_keys(rid: int) -> tuple[bytes, bytes]:
    k = struct.pack("<I", rid)
    return _des_key(bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2]])), _des_key(
        bytes([k[3], k[0], k[1], k[2], k[3], k[0], k[1]]))


def encrypt_nt_hash(machine: Machine, rid: int, password: str) -> bytes:
    """SAM_HASH revision 1 (RC4 + DES by RID), as pre-AES Windows stored NT hashes."""
    plain = nt_hash(password)
    key1, key2 = _rid_keys(rid)
    des = DES.new(key1, DES.MODE_ECB).encrypt(plain[:8]) + DES.new(key2, DES.MODE_ECB).encrypt(plain[8:])
    rc4_key = hashlib.md5(machine.hashed_boot_key + struct.pack("<I", rid) + b"NTPASSWORD\0").digest()
    return struct.pack("<HH", 0, 1) + ARC4.new(rc4_key).encrypt(des)


def domain_f(machine: Machine) -> bytes:
    """Domain F with a revision-1 SAM key (RC4) whose checksum matches the boot key."""
    checksum = hashlib.md5(machine.hashed_boot_key + DIGITS + machine.hashed_boot_key + QWERTY).digest()
    rc4_key = hashlib.md5(machine.key_salt + QWERTY + machine.boot_key() + DIGITS).digest()
    encrypted = ARC4.new(rc4_key).encrypt(machine.hashed_boot_key + checksum)
    key0 = struct.pack("<II", 1, 0x38) + machine.key_salt + encrypted + b"\0" * 8
    header = struct.pack("<II", 3, 0) + b"\0" * 64 + struct.pack("<IIHHHHIHHQ", 1002, 0, 0, 0, 0, 0, 1, 3, 1, 0)
    assert len(header) == 0x68
    return header + key0 + b"\0" * 0x40


def offset_table_value(fields: list[bytes], entries: int) -> bytes:
    table = b""
    data = b""
    for index in range(entries):
        field = fields[index] if index < len(fields) else b""
        table += struct.pack("<III", len(data), len(field), 0)
        data += field
        data += b"\0" * (-len(data) % 4)
    return table + data


def domain_v(machine: Machine) -> bytes:
    sd = build_descriptor(ADMINISTRATORS, SYSTEM_SID, [(0, 0, 0x000F07FF, ADMINISTRATORS),
                                                       (0, 0, 0x00020385, EVERYONE)])
    return offset_table_value([sd, machine.sid.to_bytes()], 4)


def user_v(machine: Machine, rid: int, name: str, password: str) -> bytes:
    user = machine.user_sid(rid)
    sd = build_descriptor(ADMINISTRATORS, ADMINISTRATORS, [(0, 0, 0x0002035B, EVERYONE),
                                                           (0, 0, 0x000F07FF, ADMINISTRATORS),
                                                           (0, 0, 0x00020044, user)])
    fields = [sd, name.encode("utf-16-le")] + [b""] * 11
    fields[12] = b"\x00\x00\x02\x00"  # LM: none stored
    fields.append(struct.pack("<HH", 0, 1))  # 13: LM hash header only
    fields.append(encrypt_nt_hash(machine, rid, password))  # 14: NT hash
    return offset_table_value(fields, 17)


def user_f(rid: int) -> bytes:
    return b"\0" * 48 + struct.pack("<IIHHHHHHI", rid, 0, 0x0210, 0, 0, 0, 0, 0, 0) + b"\0" * 8


def alias_c(rid: int, name: str, members: list[Sid]) -> bytes:
    sd = build_descriptor(ADMINISTRATORS, SYSTEM_SID, [(0, 0, 0x000F001F, ADMINISTRATORS)])
    name_raw = name.encode("utf-16-le")
    comment = f"Members of {name}".encode("utf-16-le")
    member_raw = b"".join(m.to_bytes() for m in members)
    data = sd + name_raw + comment + member_raw
    header = struct.pack(
        "<IIII IIII IIII I", rid, 0, len(sd), 0x00010003,
        len(sd), len(name_raw), 0, len(sd) + len(name_raw),
        len(comment), 0, len(sd) + len(name_raw) + len(comment), len(member_raw),
        len(members),
    )
    return header + data


# ------------------------------------------------------------------------ hives
def new_hive(root_name: str) -> Hive:
    """`Hive.new`, with the root's security cell linked to itself (flink = blink = itself), as
    the format requires of a one-cell list; a no-op when the writer already did so."""
    data = bytearray(Hive.new(root_name).to_bytes())
    root = struct.unpack_from("<I", data, 0x24)[0]
    sk = struct.unpack_from("<I", data, 0x1000 + root + 4 + 0x2C)[0]
    cell = 0x1000 + sk + 4
    if data[cell : cell + 2] == b"sk":
        struct.pack_into("<II", data, cell + 4, sk, sk)
    return Hive.from_bytes(bytes(data), name=root_name)


def build_sam(machine: Machine) -> Hive:
    hive = new_hive("SAM")
    sam = hive.create_key("SAM")
    sam.set_value("C", REG_BINARY, b"\x07\x00\x01\x00" + b"\0" * 4)
    account = hive.create_key("SAM\\Domains\\Account")
    account.set_value("F", REG_BINARY, domain_f(machine))
    account.set_value("V", REG_BINARY, domain_v(machine))
    users = hive.create_key("SAM\\Domains\\Account\\Users")
    users.set_value("", len(machine.users), b"")
    for rid, name, password in machine.users:
        key = hive.create_key(f"SAM\\Domains\\Account\\Users\\{rid:08X}")
        key.set_value("F", REG_BINARY, user_f(rid))
        key.set_value("V", REG_BINARY, user_v(machine, rid, name, password))
        hive.create_key(f"SAM\\Domains\\Account\\Users\\Names\\{name}").set_value("", rid, b"")
    hive.create_key("SAM\\Domains\\Account\\Aliases\\Members")
    hive.create_key("SAM\\Domains\\Account\\Aliases\\Names")
    hive.create_key("SAM\\Domains\\Account\\Groups\\Names")
    builtin = hive.create_key("SAM\\Domains\\Builtin")
    builtin.set_value("F", REG_BINARY, b"\0" * 0x68)
    builtin.set_value("V", REG_BINARY, offset_table_value([build_descriptor(ADMINISTRATORS, SYSTEM_SID, [])], 4))
    admin, alice = machine.user_sid(500), machine.user_sid(1001)
    aliases = {
        0x220: ("Administrators", [admin, alice]),
        0x221: ("Users", [Sid.parse("S-1-5-4"), Sid.parse("S-1-5-11"), alice]),
    }
    for rid, (name, alias_members) in aliases.items():
        hive.create_key(f"SAM\\Domains\\Builtin\\Aliases\\{rid:08X}").set_value("C", REG_BINARY, alias_c(rid, name, alias_members))
        hive.create_key(f"SAM\\Domains\\Builtin\\Aliases\\Names\\{name}").set_value("", rid, b"")
    members = "SAM\\Domains\\Builtin\\Aliases\\Members"
    hive.create_key(f"{members}\\{machine.sid}").set_value("", 0, b"")
    # membership values: the type field holds the number of aliases, the data their RIDs
    hive.create_key(f"{members}\\{machine.sid}\\000001F4").set_value("", 1, struct.pack("<I", 0x220))
    hive.create_key(f"{members}\\{machine.sid}\\000003E9").set_value("", 2, struct.pack("<II", 0x220, 0x221))
    hive.create_key(f"{members}\\S-1-5\\00000004").set_value("", 1, struct.pack("<I", 0x221))
    return hive


def build_security(machine: Machine) -> Hive:
    hive = new_hive("SECURITY")
    policy = "Policy"
    hive.create_key(f"{policy}\\PolAcDmS").set_value("", REG_NONE, machine.sid.to_bytes())
    hive.create_key(f"{policy}\\PolAcDmN").set_value("", REG_NONE, encode_policy_name(machine.name))
    hive.create_key(f"{policy}\\PolPrDmN").set_value("", REG_NONE, encode_policy_name("WORKGROUP"))
    hive.create_key(f"{policy}\\PolPrDmS").set_value("", REG_NONE, b"")
    for sid in (machine.user_sid(500), ADMINISTRATORS, EVERYONE):
        hive.create_key(f"{policy}\\Accounts\\{sid}\\Sid").set_value("", REG_NONE, sid.to_bytes())
        hive.create_key(f"{policy}\\Accounts\\{sid}\\SecDesc").set_value(
            "", REG_NONE, build_descriptor(ADMINISTRATORS, SYSTEM_SID, [(0, 0, 0xF0FFF, sid)]))
    return hive


def build_system(machine: Machine) -> Hive:
    hive = new_hive("ROOT")
    select = hive.create_key("Select")
    for name, number in (("Current", 1), ("Default", 1), ("Failed", 0), ("LastKnownGood", 1)):
        select.set_value(name, REG_DWORD, number)
    cs = "ControlSet001"
    hive.create_key(f"{cs}\\Control\\ComputerName\\ComputerName").set_value("ComputerName", REG_SZ, machine.name)
    for name, cls in zip(("JD", "Skew1", "GBG", "Data"), machine.lsa_classes, strict=True):
        hive.create_key(f"{cs}\\Control\\Lsa\\{name}", class_name=cls)
    tcpip = hive.create_key(f"{cs}\\Services\\Tcpip\\Parameters")
    tcpip.set_value("Hostname", REG_SZ, machine.name.lower())
    tcpip.set_value("NV Hostname", REG_SZ, machine.name.lower())
    tcpip.set_value("Domain", REG_SZ, "")
    hive.create_key(f"{cs}\\Services\\Tcpip\\Parameters\\DNSRegisteredAdapters\\{machine.nic_guid}").set_value(
        "PrimaryDomainName", REG_SZ, machine.name.lower())
    iface = hive.create_key(f"{cs}\\Services\\Tcpip\\Parameters\\Interfaces\\{machine.nic_guid}")
    iface.set_value("EnableDHCP", REG_DWORD, 1)
    iface.set_value("DhcpIPAddress", REG_SZ, "192.168.56.101")
    iface.set_value("DhcpServer", REG_SZ, "192.168.56.1")
    iface.set_value("Lease", REG_DWORD, 86400)
    iface.set_value("DhcpInterfaceOptions", REG_BINARY,
                    b"\x0c\0\0\0" + machine.name.lower().encode() + b"\0\0")
    tcpip6 = hive.create_key(f"{cs}\\Services\\Tcpip6\\Parameters")
    tcpip6.set_value("Dhcpv6DUID", REG_BINARY, bytes.fromhex("000100012a3b4c5d080027aabbcc"))
    hive.create_key(f"{cs}\\Services\\Tcpip6\\Parameters\\Interfaces\\{machine.nic_guid}").set_value(
        "Dhcpv6Iaid", REG_DWORD, 0x08002701)
    hive.create_key(f"{cs}\\Services\\EventLog\\State").set_value("LastComputerName", REG_SZ, machine.name)
    hive.create_key(f"{cs}\\Control\\IDConfigDB\\Hardware Profiles\\0001").set_value(
        "HwProfileGuid", REG_SZ, machine.hw_profile_guid)
    for name, start in (("storahci", 3), ("stornvme", 3), ("atapi", 0), ("intelide", 4)):
        hive.create_key(f"{cs}\\Services\\{name}").set_value("Start", REG_DWORD, start)
    hive.create_key(f"{cs}\\Services\\storahci\\StartOverride").set_value("0", REG_DWORD, 3)
    nic = hive.create_key(f"{cs}\\Control\\Class\\{NET_CLASS}\\0001")
    nic.set_value("NetCfgInstanceId", REG_SZ, machine.nic_guid)
    nic.set_value("Characteristics", REG_DWORD, 0x84)
    hive.create_key(f"{cs}\\Enum\\PCI\\VEN_8086&DEV_100E&SUBSYS_001E8086&REV_02\\3&267a616a&0&18").set_value(
        "Driver", REG_SZ, f"{NET_CLASS}\\0001")
    user = machine.user_sid(1001)
    hive.create_key(f"{cs}\\Services\\bam\\State\\UserSettings\\{user}").set_value(
        "\\Device\\HarddiskVolume2\\Windows\\explorer.exe", REG_BINARY, b"\x11" * 24)
    hive.create_key(f"{cs}\\Services\\SharedAccess\\Parameters\\FirewallPolicy\\FirewallRules").set_value(
        "{1B3C5D7F-0000-4000-8000-000000000001}", REG_SZ,
        f"v2.30|Action=Allow|Active=TRUE|Dir=In|App=C:\\app.exe|Name=app|LUOwn={user}|")
    mounted = hive.create_key("MountedDevices")
    mounted.set_value("\\DosDevices\\C:", REG_BINARY, struct.pack("<IQ", 0x1234ABCD, 1 << 20))
    mounted.set_value("\\DosDevices\\D:", REG_BINARY, "\\??\\IDE#CdRomVBOX".encode("utf-16-le"))
    mounted.set_value("\\??\\Volume{0b5d2f3a-0000-0000-0000-100000000000}", REG_BINARY,
                      struct.pack("<IQ", 0x1234ABCD, 1 << 20))
    key = hive.key(f"{cs}\\Services\\bam\\State\\UserSettings\\{user}")
    assert key is not None
    key.set_security(build_descriptor(SYSTEM_SID, SYSTEM_SID, [(0, 0, 0xF003F, SYSTEM_SID), (0, 0, 0x20019, user)]))
    return hive


def build_software(machine: Machine) -> Hive:
    hive = new_hive("ROOT")
    hive.create_key("Microsoft\\Cryptography").set_value("MachineGuid", REG_SZ, machine.machine_guid)
    hive.create_key("Microsoft\\SQMClient").set_value("MachineId", REG_SZ, machine.sqm_id)
    wu = hive.create_key("Microsoft\\Windows\\CurrentVersion\\WindowsUpdate")
    wu.set_value("SusClientId", REG_SZ, machine.sus_id)
    wu.set_value("SusClientIdValidation", REG_BINARY, b"\x06\x02\x00\x00" + machine.name.encode("utf-16-le"))
    winlogon = hive.create_key("Microsoft\\Windows NT\\CurrentVersion\\Winlogon")
    winlogon.set_value("DefaultDomainName", REG_SZ, machine.name)
    winlogon.set_value("DefaultUserName", REG_SZ, "alice")
    profiles = "Microsoft\\Windows NT\\CurrentVersion\\ProfileList"
    for sid, path in ((SYSTEM_SID, "%systemroot%\\system32\\config\\systemprofile"),
                      (machine.user_sid(500), "C:\\Users\\Administrator"),
                      (machine.user_sid(1001), "C:\\Users\\alice")):
        key = hive.create_key(f"{profiles}\\{sid}")
        key.set_value("ProfileImagePath", REG_EXPAND_SZ, path)
        key.set_value("Sid", REG_BINARY, sid.to_bytes())
        key.set_value("Flags", REG_DWORD, 0)
    hive.create_key(f"{profiles}\\{machine.user_sid(1001)}").set_security(
        build_descriptor(ADMINISTRATORS, SYSTEM_SID, [(0, 0, 0xF003F, ADMINISTRATORS),
                                                      (0, 0, 0x20019, machine.user_sid(1001))]))
    hive.create_key("Microsoft\\Windows\\CurrentVersion\\Group Policy\\DataStore\\" + str(machine.user_sid(1001)))
    return hive


def build_user_hives(machine: Machine) -> dict[str, bytes]:
    """alice's NTUSER.DAT and UsrClass.dat (root key `<SID>_Classes`), by profile-relative path."""
    user = machine.user_sid(1001)
    ntuser = new_hive("ROOT")
    ntuser.create_key("Software\\Microsoft\\Windows\\CurrentVersion\\Explorer").set_value(
        "LastUser", REG_SZ, f"{machine.name}\\alice")
    ntuser.create_key("Software\\Microsoft\\Protect").set_value("Owner", REG_BINARY, user.to_bytes())
    ntuser.create_key("Environment").set_value("TEMP", REG_EXPAND_SZ, "%USERPROFILE%\\AppData\\Local\\Temp")
    ntuser.root.set_security(build_descriptor(user, SYSTEM_SID, [(0, 0x02, 0xF003F, user),
                                                                 (0, 0x02, 0xF003F, SYSTEM_SID)]))
    classes = new_hive(f"{user}_Classes")
    classes.create_key("Local Settings\\Software\\Microsoft\\Windows\\Shell").set_value("Sid", REG_SZ, str(user))
    return {
        "Users/alice/NTUSER.DAT": ntuser.to_bytes(),
        "Users/alice/AppData/Local/Microsoft/Windows/UsrClass.dat": classes.to_bytes(),
    }


def build_all(machine: Machine | None = None) -> dict[str, bytes]:
    machine = machine or Machine()
    return {
        "SYSTEM": build_system(machine).to_bytes(),
        "SOFTWARE": build_software(machine).to_bytes(),
        "SAM": build_sam(machine).to_bytes(),
        "SECURITY": build_security(machine).to_bytes(),
    }


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "fixtures" / "hives"
    out.mkdir(parents=True, exist_ok=True)
    hives = build_all()
    hives.update({f"alice-{path.rsplit('/', 1)[-1]}": data
                  for path, data in build_user_hives(Machine()).items()})
    for name, data in hives.items():
        (out / name).write_bytes(data)
        print(f"{out / name}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
