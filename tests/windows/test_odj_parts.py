"""Parts of the offline join that need no DC: the LDAP-ping answer a Samba DC sent (captured
bytes) and hostile variants of it, and the local-group edit on the real SAM hives of ../shared
read back with python-registry and hivex."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from Registry import Registry

from reseal.domain.netlogon import PingError, parse_ping, ping_filter
from reseal.registry import Hive
from reseal.windows.localgroups import ADMINISTRATORS, USERS, add_alias_member
from reseal.windows.sam import alias_members
from reseal.windows.sid import Sid

from .helpers import copy_hive

# what Samba 4.17 answered to (&(DnsDomain=reseal.test)(NtVer=\06\00\00\00)) over LDAPS
SAMBA_PING = (b"\x17\x00\x00\x00\xfd\x13\x00\x00<\xa4\x15c\xce\xdb\xdcK\x81\xd7\xedI=\xf8?,"
              b"\x06reseal\x04test\x00\xc0\x18\x03dc1\xc0\x18\x06RESEAL\x00\x03DC1\x00\x00"
              b"\x17Default-First-Site-Name\x00\xc0;\x05\x00\x00\x00\xff\xff\xff\xff")
SAMS = ["dfir-artifact-museum/Win10-RathbunVM/SAM", "dfir-artifact-museum/Win7-EZ/SAM",
        "dfwinreg/SAM"]


def test_samba_ping_answer() -> None:
    ping = parse_ping(SAMBA_PING)
    assert ping.flags == 0x13FD
    assert ping.locator_flags == 0xE00013FD
    assert ping.domain_guid == "6315a43c-dbce-4bdc-81d7-ed493df83f2c"
    assert (ping.forest, ping.dns_domain, ping.dc_host) == ("reseal.test", "reseal.test",
                                                           "dc1.reseal.test")
    assert (ping.netbios_domain, ping.dc_netbios) == ("RESEAL", "DC1")
    assert ping.dc_site == ping.client_site == "Default-First-Site-Name"
    assert ping_filter("reseal.test)(x=*") == "(&(DnsDomain=reseal.testx)(NtVer=\\06\\00\\00\\00))"


@pytest.mark.parametrize(("message", "error"), [
    (SAMBA_PING[:20], "fixed header"),
    (b"\x13\x00" + SAMBA_PING[2:], "opcode 19"),
    (SAMBA_PING[:24] + b"\xc0\x18", "loops"),  # a pointer to itself
    (SAMBA_PING[:24] + b"\xc0\xff", "points outside"),
    (SAMBA_PING[:24] + b"\x3fabc", "past the end"),
    (SAMBA_PING[:24] + (b"\x3f" + b"a" * 63) * 5, "longer than 255"),
    (SAMBA_PING[:24] + b"\x80abc", "reserved length bits"),
    (SAMBA_PING + b"\0" * 5000, "more than a DC sends"),
])
def test_hostile_ping_answers(message: bytes, error: str) -> None:
    with pytest.raises(PingError, match=error):
        parse_ping(message)


@pytest.mark.parametrize("sam", SAMS)
def test_domain_groups_join_the_local_groups(shared_dir: Path, tmp_path: Path,
                                             sam: str) -> None:
    copy_hive(shared_dir / "hives" / sam, tmp_path / "SAM")
    hive = Hive.open(tmp_path / "SAM")
    domain = Sid.parse("S-1-5-21-1111111111-2222222222-3333333333")
    admins = Sid(domain.authority, (*domain.sub_authorities, 512))
    users = Sid(domain.authority, (*domain.sub_authorities, 513))
    before = {rid: alias_members(hive.key(f"SAM\\Domains\\Builtin\\Aliases\\{rid:08X}")
                                 .value("C").raw, where="C")  # type: ignore[union-attr]
              for rid in (ADMINISTRATORS, USERS)}
    assert add_alias_member(hive, ADMINISTRATORS, admins)
    assert add_alias_member(hive, USERS, users)
    assert not add_alias_member(hive, USERS, users)  # already a member: nothing changes
    hive.save(tmp_path / "SAM")

    reader = Registry.Registry(str(tmp_path / "SAM"))
    for rid, member in ((ADMINISTRATORS, admins), (USERS, users)):
        raw = reader.open(f"SAM\\Domains\\Builtin\\Aliases\\{rid:08X}").value("C").raw_data()
        assert alias_members(raw, where="C") == [*before[rid], member]
        count = struct.unpack_from("<I", raw, 0x30)[0]
        assert count == len(before[rid]) + 1
    members = f"SAM\\Domains\\Builtin\\Aliases\\Members\\{domain}"
    assert sorted(k.name() for k in reader.open(members).subkeys()) == ["00000200", "00000201"]
    reverse = reader.open(f"{members}\\00000200").value("(default)")
    assert reverse.value_type() == 1 and reverse.raw_data() == struct.pack("<I", ADMINISTRATORS)
    assert reader.open(members).value("(default)").value_type() == 2  # two member keys
    check = subprocess.run(["hivexsh", str(tmp_path / "SAM")], input=f"cd {members}\nls\n",
                           capture_output=True, text=True, check=True)
    assert check.stdout.split() == ["00000200", "00000201"]
