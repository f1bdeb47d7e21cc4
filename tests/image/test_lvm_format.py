"""reseal's LVM2 reader and writer against what Debian's lvm2 writes and reads.

A small PV is made with pvcreate/vgcreate/lvcreate (no device-mapper), read with reseal's
parser and compared with `pvs`/`vgs`/`lvs`; hostile variants of its bytes are refused with
one clear reason; metadata reseal writes (many times over, until the circular buffer wraps)
is read back by lvm2 itself.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.image.lvm_images import loops, lvm, missing_tools, report

from reseal.errors import CorruptData
from reseal.image import lvm as fmt

MIB = 1 << 20
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for loop devices"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"lvm2 tools missing: {missing_tools()}"),
]


@pytest.fixture(scope="module")
def small_pv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """16 MiB PV with a 60 KiB metadata area, VG `fmtvg` (1 MiB extents), LVs a (linear) and
    b (two segments); returns the file and lvm2's own view of it."""
    path = tmp_path_factory.mktemp("lvmfmt") / "pv.img"
    with open(path, "wb") as handle:
        handle.truncate(16 * MIB)
    with loops(path, [(0, 16 * MIB)]) as devices:
        (device,) = devices
        lvm("pvcreate", devices, "--metadatasize", "4k", "--dataalignment", "64k", device)
        lvm("vgcreate", devices, "-s", "1m", "fmtvg", device)
        lvm("lvcreate", devices, "-an", "-Zn", "-L", "3m", "-n", "a", "fmtvg")
        lvm("lvcreate", devices, "-an", "-Zn", "-L", "2m", "-n", "b", "fmtvg")
        lvm("lvcreate", devices, "-an", "-Zn", "-L", "1m", "-n", "c", "fmtvg")
        lvm("lvextend", devices, "-L", "4m", "fmtvg/b")
        facts = {row["lv_name"]: row["lv_uuid"] for row in report("lvs", devices,
                                                                    "lv_name,lv_uuid")}
        facts["vg"] = report("vgs", devices, "vg_uuid")[0]["vg_uuid"]
        facts["pv"] = report("pvs", devices, "pv_uuid")[0]["pv_uuid"]
        facts["pe_start"] = report("pvs", devices, "pe_start")[0]["pe_start"]
        facts["a_range"] = report("lvs", devices, "lv_name,seg_pe_ranges")[0]["seg_pe_ranges"]
    yield path, facts


def _scan(data: bytes) -> fmt.LvmLayout:
    def read(offset: int, length: int) -> bytes:
        return data[offset:offset + length]

    return fmt.scan_lvm(read, [("p1", 0, len(data))], "pv.img")


def test_reads_what_lvm2_wrote(small_pv: tuple[Path, dict[str, str]]) -> None:
    path, facts = small_pv
    layout = _scan(path.read_bytes())
    assert layout.problems == []
    (group,) = layout.groups
    assert (group.name, group.group.uuid, group.problem) == ("fmtvg", facts["vg"], "")
    assert layout.physical_volumes[0].label.uuid == facts["pv"]
    lvs = {place.lv.name: place for place in group.placements}
    assert {name: place.lv.uuid for name, place in lvs.items()} == {
        name: facts[name] for name in ("a", "b", "c")}
    first_extent = int(facts["a_range"].split(":")[1].split("-")[0])
    assert lvs["a"].reason == ""
    assert lvs["a"].start == int(facts["pe_start"]) + first_extent * MIB
    assert lvs["a"].size == 3 * MIB
    assert "not one contiguous range" in lvs["b"].reason


def _patched_label(data: bytes, offset: int, value: bytes) -> bytes:
    """Change bytes of the label sector (sector 1) and make its CRC right again, so the
    check that must refuse it is the bound check, not the CRC."""
    raw = bytearray(data)
    raw[512 + offset:512 + offset + len(value)] = value
    struct.pack_into("<I", raw, 512 + 16, fmt.lvm_crc(bytes(raw[512 + 20:1024])))
    return bytes(raw)


@pytest.mark.parametrize(("change", "reason"), [
    ("label-crc", "fails its CRC check"),
    ("area-past-end", "past the end of the"),
    ("header-crc", "metadata header at byte 4096 fails its CRC"),
    ("text-checksum", "fails its checksum"),
    ("text-offset", "outside its"),
    ("bad-id", "no valid PV UUID"),
])
def test_hostile_bytes_are_refused_with_the_reason(small_pv: tuple[Path, dict[str, str]],
                                                   change: str, reason: str) -> None:
    data = bytearray(small_pv[0].read_bytes())
    if change == "label-crc":
        data[512 + 40] ^= 0xFF
    elif change == "area-past-end":  # the metadata area list: offset 4096, size 16 GiB
        data[:] = _patched_label(bytes(data), 32 + 40 + 32 + 8, struct.pack("<Q", 16 << 30))
    elif change == "header-crc":
        data[4096 + 30] ^= 0x01
    elif change == "text-checksum":
        offset = struct.unpack_from("<Q", data, 4096 + 40)[0]
        data[4096 + offset + 10] ^= 0x01
    elif change == "text-offset":  # raw_locn points past the area; header CRC made right
        struct.pack_into("<Q", data, 4096 + 40, 1 << 40)
        struct.pack_into("<I", data, 4096, fmt.lvm_crc(bytes(data[4096 + 4:4096 + 512])))
    elif change == "bad-id":
        data[:] = _patched_label(bytes(data), 32, b"\x00" * 32)
    layout = _scan(bytes(data))
    assert any(reason in problem for problem in layout.problems), layout.problems
    assert all(group.problem or not group.copies for group in layout.groups)


@pytest.mark.parametrize("text", [
    b"vg {" * 40 + b"}" * 40,  # deeper than reseal parses
    b'vg { id = "unterminated }',
    b"vg { id = [1, 2 }",
    b"vg { seqno = 1 } }",
    b"vg { \x01 }",
    b"vg { seqno = }",
])
def test_parser_refuses_malformed_text(text: bytes) -> None:
    with pytest.raises(CorruptData):
        fmt.parse_text(text, "test")


def test_rewrite_changes_ids_and_seqno_only(small_pv: tuple[Path, dict[str, str]]) -> None:
    path, facts = small_pv
    group = _scan(path.read_bytes()).groups[0].group
    new_vg = "AAAAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGGGG"
    text = fmt.rewrite_text(group.text, {facts["vg"]: new_vg}, group.seqno + 1, "t")
    before, after = group.text.decode(), text.decode()
    assert after.replace(new_vg, facts["vg"]).replace(
        f"seqno = {group.seqno + 1}\n", f"seqno = {group.seqno}\n") == before
    reparsed = fmt.parse_volume_group(text, "t")
    assert (reparsed.uuid, reparsed.seqno) == (new_vg, group.seqno + 1)
    assert text.endswith(b"\x00")


def test_lvm2_reads_metadata_reseal_wrote_until_the_ring_wraps(
        small_pv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """Forty rewrites in a 60 KiB area: the text goes round the circular buffer, split across
    its end at least once; after each one lvm2's `vgs` reads the new seqno and VG UUID."""
    path = tmp_path / "pv.img"
    path.write_bytes(small_pv[0].read_bytes())
    wrapped = 0
    for round_ in range(40):
        data = bytearray(path.read_bytes())
        found = _scan(bytes(data)).groups[0]
        group, area = found.group, found.copies[0].area
        new_vg = fmt.dashed(f"{round_:02d}" + "x" * 30)
        text = fmt.rewrite_text(group.text, {group.uuid: new_vg}, group.seqno + 1, "t")
        writes = fmt.metadata_writes(area, text, "t")
        wrapped += len(writes) == 3  # two pieces of text and the header
        for offset, chunk in writes:
            data[offset:offset + len(chunk)] = chunk
        path.write_bytes(bytes(data))
        if round_ % 13 == 0 or len(writes) == 3:
            with loops(path, [(0, 16 * MIB)], read_only=True) as devices:
                row = report("vgs", devices, "vg_uuid,vg_seqno")[0]
            assert (row["vg_uuid"], int(row["vg_seqno"])) == (new_vg, group.seqno + 1)
    assert wrapped >= 1
    assert _scan(path.read_bytes()).groups[0].group.seqno == group.seqno + 1


def test_label_rewrite_reads_back_in_lvm2(small_pv: tuple[Path, dict[str, str]],
                                          tmp_path: Path) -> None:
    path = tmp_path / "pv.img"
    data = bytearray(small_pv[0].read_bytes())
    found = _scan(bytes(data))
    pv, group = found.physical_volumes[0], found.groups[0]
    new_pv = fmt.dashed("P" * 32)
    text = fmt.rewrite_text(group.group.text, {pv.label.uuid: new_pv}, group.group.seqno + 1, "t")
    for offset, chunk in fmt.metadata_writes(group.copies[0].area, text, "t"):
        data[offset:offset + len(chunk)] = chunk
    data[512:1024] = fmt.new_label_sector(pv.label, new_pv)
    path.write_bytes(bytes(data))
    with loops(path, [(0, 16 * MIB)], read_only=True) as devices:
        assert report("pvs", devices, "pv_uuid,vg_name") == [{"pv_uuid": new_pv,
                                                              "vg_name": "fmtvg"}]
        lvm("vgck", devices, "fmtvg")
