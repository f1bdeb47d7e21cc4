"""Windows directory targets built from the real domain-member hives of ../shared.

A member's SAM and SECURITY (and DEFAULT where there is one) come from one real machine; SYSTEM
is a real SYSTEM of another machine (none in ../shared matches), made consistent by the test:
SECURITY gets an LSA key under that SYSTEM's boot key (every secret then a known value, so
impacket can dump them before and after a run), and SYSTEM's primary DNS suffix and Netlogon
start type are those of a member of that domain. SOFTWARE is project-built for the member's SID.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reseal.registry import Hive
from reseal.windows.domain import read_domain_state
from reseal.windows.lsa import boot_key
from reseal.windows.sam import decode_policy_name

from .helpers import CONFIG, copy_hive, copy_with_logs, load_builder
from .lsa_helpers import impacket_dump, known_value, make_consistent

MUSEUM = "dfir-artifact-museum"


@dataclass(frozen=True)
class MemberSet:
    folder: str  # under ../shared/fixtures/hives
    system: str  # the real SYSTEM paired with it
    domain: str  # NetBIOS name in PolPrDmN
    dns: str


MEMBERS = {
    "belkasoft": MemberSet(f"{MUSEUM}/Win10-BelkasoftCTF", "dissect.regf/SYSTEM.xz",
                           "PRAIVACYMATRIX", "praivacymatrix.com"),
    "win7-ez": MemberSet(f"{MUSEUM}/Win7-EZ", "regipy/SYSTEM.xz", "PRWUA", "prwua.org"),
    "dfwinreg": MemberSet("dfwinreg", "regipy/SYSTEM.xz", "INTERNAL", "internal.greendale.edu"),
}


@dataclass(frozen=True)
class MemberTree:
    root: Path
    member: MemberSet
    machine_sid: str
    computer_name: str
    secrets: dict[str, bytes]  # the current value given to every secret


def build_member_tree(shared: Path, root: Path, which: str) -> MemberTree:
    member = MEMBERS[which]
    hives = shared / "hives"
    config = root / CONFIG
    config.mkdir(parents=True)
    system_src = hives / member.system
    copy_with_logs(system_src.parent, system_src.name.removesuffix(".xz"), config / "SYSTEM")
    for name in ("SAM", "SECURITY", "DEFAULT"):
        if (hives / member.folder / name).exists():
            copy_hive(hives / member.folder / name, config / name)
    system = Hive.open(config / "SYSTEM")
    for cs in (k.name for k in system.root.subkeys() if k.name.lower().startswith("controlset")):
        tcpip = system.key(f"{cs}\\Services\\Tcpip\\Parameters")
        if tcpip is not None:
            tcpip.set_value("Domain", 1, member.dns)
            tcpip.set_value("NV Domain", 1, member.dns)
        netlogon = system.key(f"{cs}\\Services\\Netlogon") or system.create_key(
            f"{cs}\\Services\\Netlogon")
        netlogon.set_value("Start", 4, 2)
        system.create_key(f"{cs}\\Services\\Netlogon\\Parameters").set_value(
            "DynamicSiteName", 1, "Default-First-Site-Name")
    system.save(config / "SYSTEM")
    security = Hive.open(config / "SECURITY")
    lsa = make_consistent(security, boot_key(system))
    values: dict[str, bytes] = {}
    for name in lsa.names():
        values[name] = known_value(name, "cur")
        lsa.write(name, values[name], known_value(name, "old"))
    security.save(config / "SECURITY")
    for leftover in config.glob("*.reseal-orig"):
        leftover.unlink()
    sid = read_domain_sid(security)
    policy = security.key("Policy\\PolAcDmN")
    assert policy is not None and (stored := policy.value("")) is not None
    name = decode_policy_name(stored.raw)
    builder = load_builder()
    machine = builder.Machine(sid=builder.Sid.parse(sid), name=name)
    software = builder.build_software(machine)
    software.key("Microsoft\\Windows NT\\CurrentVersion\\Winlogon").set_value(
        "DefaultDomainName", 1, member.domain)
    (config / "SOFTWARE").write_bytes(software.to_bytes())
    assert read_domain_state(security).member
    return MemberTree(root, member, sid, name, values)


def read_domain_sid(security: Hive) -> str:
    from reseal.windows.sid import Sid

    key = security.key("Policy\\PolAcDmS")
    assert key is not None and (value := key.value("")) is not None
    return str(Sid.from_bytes(value.raw)[0])


def impacket_cached_logons(config: Path) -> list[str]:
    """Cached domain logons impacket's offline reader finds in SECURITY (with SYSTEM's key)."""
    return impacket_dump(config, history=False, cached=True)
