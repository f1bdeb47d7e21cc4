"""SID, SAM value and security-descriptor helpers, checked on real SAM/SECURITY hives."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from Registry import Registry

from reseal.errors import BadInput, CorruptData
from reseal.windows.sam import (
    alias_members,
    decode_policy_name,
    domain_sid_from_v,
    encode_policy_name,
    rewrite_alias_c,
    rewrite_domain_v,
    rewrite_user_v,
    user_name_from_v,
)
from reseal.windows.secdesc import build_descriptor, descriptor_sids, rewrite_descriptor
from reseal.windows.sid import Sid, SidRewriter, parse_machine_sid, random_machine_sid

MACHINES = {
    "dfir-artifact-museum/Win10-RathbunVM": "S-1-5-21-2290304894-658537038-505560459",
    "dfir-artifact-museum/Win11-RathbunVM": "S-1-5-21-4063860464-1508573791-632671957",
    "dfir-artifact-museum/Win10-BelkasoftCTF": "S-1-5-21-672274782-2342008316-3472871522",
    "dfir-artifact-museum/Win7-EZ": "S-1-5-21-3064465268-1549819264-574340205",
    "dfwinreg": "S-1-5-21-4070822719-3404542230-2541167049",
}
NEW = Sid.parse("S-1-5-21-1111111111-222222222-333333333")


def test_sid_text_and_binary_round_trip() -> None:
    for text in ("S-1-5-21-1-2-3", "S-1-1-0", "S-1-5-32-544", "S-1-16-12288", "S-1-5-21-4294967295-0-7-500"):
        sid = Sid.parse(text)
        assert str(sid) == text
        parsed, size = Sid.from_bytes(b"xx" + sid.to_bytes(), 2)
        assert parsed == sid and size == sid.size


@pytest.mark.parametrize(
    "bad", ["S-1-5-21-1-2", "S-1-5-21-1-2-3-4", "S-1-5-21-4294967296-1-1", "S-1-5-32-1-2-3", "", "x"]
)
def test_machine_sid_refuses_bad_forms(bad: str) -> None:
    with pytest.raises(BadInput):
        parse_machine_sid(bad)


def test_random_sid_keeps_digit_counts() -> None:
    old = Sid.parse("S-1-5-21-2290304894-658537038-505560459")
    new = random_machine_sid(random.Random(1), like=old)
    assert len(str(new)) == len(str(old)) and new != old
    assert all(part < 1 << 32 for part in new.sub_authorities)


def test_binary_rewrite_only_whole_sids_under_machine() -> None:
    old = Sid.parse("S-1-5-21-1-2-3")
    rw = SidRewriter(old, Sid.parse("S-1-5-21-7-8-9"))
    user = Sid.parse("S-1-5-21-1-2-3-1001")
    domain_other = Sid.parse("S-1-5-21-1-2-4-500")
    data = b"\0" * 3 + user.to_bytes() + old.to_bytes() + domain_other.to_bytes()
    new, count = rw.rewrite_binary(data)
    assert count == 2 and len(new) == len(data)
    assert Sid.from_bytes(new, 3)[0] == Sid.parse("S-1-5-21-7-8-9-1001")
    assert new.endswith(domain_other.to_bytes())
    text, n = rw.rewrite_text("LUOwn=S-1-5-21-1-2-3-500|x S-1-5-21-1-2-34")
    assert n == 1 and text == "LUOwn=S-1-5-21-7-8-9-500|x S-1-5-21-1-2-34"


def test_descriptor_with_object_ace_and_sacl() -> None:
    owner = Sid.parse("S-1-5-21-1-2-3-500")
    group = Sid.parse("S-1-5-32-544")
    member = Sid.parse("S-1-5-21-1-2-3-1001")
    guid = bytes(range(16))
    object_ace_body = struct.pack("<II", 0x10, 0x3) + guid + guid + member.to_bytes()
    object_ace = struct.pack("<BBH", 0x05, 0, 4 + len(object_ace_body)) + object_ace_body
    audit_body = struct.pack("<I", 0x1) + owner.to_bytes()
    audit_ace = struct.pack("<BBH", 0x02, 0x40, 4 + len(audit_body)) + audit_body
    sacl = struct.pack("<BBHHH", 2, 0, 8 + len(audit_ace), 1, 0) + audit_ace
    dacl = struct.pack("<BBHHH", 4, 0, 8 + len(object_ace), 1, 0) + object_ace
    header_size = 20
    off_sacl = header_size
    off_dacl = off_sacl + len(sacl)
    off_owner = off_dacl + len(dacl)
    off_group = off_owner + owner.size
    header = struct.pack("<BBHIIII", 1, 0, 0x8014, off_owner, off_group, off_sacl, off_dacl)
    sd = header + sacl + dacl + owner.to_bytes() + group.to_bytes()
    assert descriptor_sids(sd) == [owner, group, owner, member]
    rw = SidRewriter(Sid.parse("S-1-5-21-1-2-3"), Sid.parse("S-1-5-21-4-5-6"))
    new = rewrite_descriptor(sd, rw.map_sid)
    assert new is not None and len(new) == len(sd)
    assert [str(s) for s in descriptor_sids(new)] == [
        "S-1-5-21-4-5-6-500", "S-1-5-32-544", "S-1-5-21-4-5-6-500", "S-1-5-21-4-5-6-1001"]
    assert rewrite_descriptor(new, rw.map_sid) is None


def test_descriptor_garbage_is_corrupt_data() -> None:
    sd = build_descriptor(Sid.parse("S-1-5-18"), Sid.parse("S-1-5-18"), [(0, 0, 1, Sid.parse("S-1-1-0"))])
    broken = sd[:4] + struct.pack("<I", 5000) + sd[8:]
    with pytest.raises(CorruptData, match="offset 5000"):
        descriptor_sids(broken)
    bad_ace = bytearray(sd)
    bad_ace[20 + 8 + 2 : 20 + 8 + 4] = struct.pack("<H", 900)
    with pytest.raises(CorruptData):
        descriptor_sids(bytes(bad_ace))


def _open(shared_dir: Path, machine: str, hive: str) -> Registry.Registry:
    return Registry.Registry(str(shared_dir / "hives" / machine / hive))


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_real_sam_domain_v_alias_c_and_user_v(shared_dir: Path, machine: str) -> None:
    sam = _open(shared_dir, machine, "SAM")
    old = Sid.parse(MACHINES[machine])
    v = sam.open("SAM\\Domains\\Account").value("V").raw_data()
    assert domain_sid_from_v(v) == old
    rw = SidRewriter(old, NEW)
    new_v = rewrite_domain_v(v, rw.map_sid)
    assert domain_sid_from_v(new_v) == NEW and len(new_v) == len(v)
    # the structured rewrite catches every binary occurrence the blind scan sees
    assert not rw.contains_binary(new_v)
    users = sam.open("SAM\\Domains\\Account\\Users")
    names = []
    for key in users.subkeys():
        if key.name() == "Names":
            continue
        raw = key.value("V").raw_data()
        names.append(user_name_from_v(raw, where=key.name()))
        new_user_v = rewrite_user_v(raw, rw.map_sid, where=key.name())
        assert len(new_user_v) == len(raw) and not rw.contains_binary(new_user_v)
    assert "Administrator" in names
    found_member = False
    for domain in ("Builtin", "Account"):
        for key in sam.open(f"SAM\\Domains\\{domain}\\Aliases").subkeys():
            if key.name() in ("Members", "Names"):
                continue
            raw = key.value("C").raw_data()
            members = alias_members(raw, where=key.name())
            new_c = rewrite_alias_c(raw, rw.map_sid, where=key.name())
            new_members = alias_members(new_c, where=key.name())
            assert len(new_members) == len(members)
            for before, after in zip(members, new_members, strict=True):
                if before.starts_with(old):
                    found_member = True
                    assert after.starts_with(NEW) and after.rid() == before.rid()
                else:
                    assert after == before
            assert not rw.contains_binary(new_c)
    assert found_member, "Administrators should list the local Administrator"


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_real_security_policy_values(shared_dir: Path, machine: str) -> None:
    sec = _open(shared_dir, machine, "SECURITY")
    sid_raw = sec.open("Policy\\PolAcDmS").value("(default)").raw_data()
    assert str(Sid.from_bytes(sid_raw)[0]) == MACHINES[machine]
    name_raw = sec.open("Policy\\PolAcDmN").value("(default)").raw_data()
    name = decode_policy_name(name_raw)
    assert encode_policy_name(name) == name_raw
    # every SecDesc value and sk-like descriptor parses
    for account in sec.open("Policy\\Accounts").subkeys():
        sd = account.subkey("SecDesc").value("(default)").raw_data()
        assert descriptor_sids(sd, where=account.name())
