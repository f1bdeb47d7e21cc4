"""reseal's MBR/GPT parser: checked against sfdisk on real images, and every refusal rule."""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from reseal.errors import CorruptData
from reseal.image.partitions import read_layout
from reseal.samples.builders import SampleImage


def _layout(path: Path):  # type: ignore[no-untyped-def]
    with open(path, "rb") as handle:
        return read_layout(handle, path.stat().st_size, str(path))


def _sfdisk(path: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(["sfdisk", "--json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["partitiontable"]


@pytest.mark.parametrize("name", ["windows_gpt", "windows_mbr", "linux_gpt", "linux_mbr"])
def test_layout_matches_sfdisk(name: str, request: pytest.FixtureRequest) -> None:
    image: SampleImage = request.getfixturevalue(name)
    layout = _layout(image.path)
    oracle = _sfdisk(image.path)
    assert layout.table == ("gpt" if oracle["label"] == "gpt" else "mbr")
    expected = {}
    for entry in oracle["partitions"]:
        index = int(entry["node"].rsplit("img", 1)[1])
        if entry["type"] in ("5", "f", "85"):
            continue  # the extended container itself is not a volume
        expected[index] = (entry["start"] * 512, entry["size"] * 512, entry["type"].lower())
    got = {p.index: (p.start, p.size, p.type_id) for p in layout.partitions}
    assert set(got) == set(expected)
    for index, (start, size, type_id) in expected.items():
        assert got[index][:2] == (start, size)
        if layout.table == "mbr":
            assert int(got[index][2], 16) == int(type_id, 16)
        else:
            assert got[index][2] == type_id
    if layout.table == "gpt":
        assert layout.disk_guid == oracle["id"].lower()


def test_mbr_logical_partition_numbered_from_5(linux_mbr: SampleImage) -> None:
    layout = _layout(linux_mbr.path)
    assert [p.index for p in layout.partitions] == [1, 5]
    assert layout.partitions[0].bootable


def _mbr(entries: list[tuple[int, int, int, int]], size: int = 8 << 20) -> io.BytesIO:
    disk = bytearray(size)
    for n, (flag, type_id, start, count) in enumerate(entries):
        struct.pack_into("<B3xB3xII", disk, 446 + 16 * n, flag, type_id, start, count)
    disk[510:512] = b"\x55\xaa"
    return io.BytesIO(bytes(disk))


def _read(stream: io.BytesIO):  # type: ignore[no-untyped-def]
    return read_layout(stream, len(stream.getvalue()), "test.img")


def test_garbage_table_refused() -> None:
    rng = random.Random(7)
    disk = bytearray(rng.randbytes(1 << 20))
    disk[446] = 0x33  # boot flag neither 0x00 nor 0x80
    disk[510:512] = b"\x55\xaa"
    with pytest.raises(CorruptData, match="garbage"):
        _read(io.BytesIO(bytes(disk)))


def test_overlapping_partitions_refused() -> None:
    with pytest.raises(CorruptData, match="overlap"):
        _read(_mbr([(0, 0x83, 2048, 4096), (0, 0x83, 4000, 2048)]))


def test_partition_past_end_refused() -> None:
    with pytest.raises(CorruptData, match="past the end"):
        _read(_mbr([(0, 0x83, 2048, 1 << 20)]))


def test_ebr_loop_refused() -> None:
    stream = _mbr([(0, 0x05, 2048, 8192)])
    disk = bytearray(stream.getvalue())
    ebr = 2048 * 512
    # logical partition, then a link back to the same EBR (relative start 0)
    struct.pack_into("<B3xB3xII", disk, ebr + 446, 0, 0x83, 63, 100)
    struct.pack_into("<B3xB3xII", disk, ebr + 462, 0, 0x05, 0, 200)
    disk[ebr + 510 : ebr + 512] = b"\x55\xaa"
    with pytest.raises(CorruptData, match="loops"):
        _read(io.BytesIO(bytes(disk)))


def test_truncated_gpt_image_refused(linux_gpt: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "truncated.img"
    shutil.copyfile(linux_gpt.path, copy)
    with open(copy, "r+b") as handle:
        handle.truncate(copy.stat().st_size // 2)
    with pytest.raises(CorruptData, match="truncated"):
        _layout(copy)


def test_truncated_mbr_image_refused(linux_mbr: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "truncated.img"
    shutil.copyfile(linux_mbr.path, copy)
    with open(copy, "r+b") as handle:
        handle.truncate(30 << 20)
    with pytest.raises(CorruptData, match="truncated|past the end"):
        _layout(copy)


def test_gpt_primary_header_damaged_uses_backup(linux_gpt: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "damaged.img"
    shutil.copyfile(linux_gpt.path, copy)
    with open(copy, "r+b") as handle:
        handle.seek(512 + 40)  # first usable LBA: covered by the header CRC
        handle.write(b"\x01")
    layout = _layout(copy)
    assert [p.index for p in layout.partitions] == [1, 2]


def test_gpt_both_headers_damaged_refused(linux_gpt: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "damaged.img"
    shutil.copyfile(linux_gpt.path, copy)
    size = copy.stat().st_size
    with open(copy, "r+b") as handle:
        for header in (512, size - 512):
            handle.seek(header + 40)
            handle.write(b"\x01")
    with pytest.raises(CorruptData, match="CRC"):
        _layout(copy)


def test_gpt_entries_crc_mismatch_refused(linux_gpt: SampleImage, tmp_path: Path) -> None:
    copy = tmp_path / "entries.img"
    shutil.copyfile(linux_gpt.path, copy)
    size = copy.stat().st_size
    with open(copy, "r+b") as handle:
        for entries in (1024, size - 33 * 512):  # primary and backup entry arrays
            handle.seek(entries + 56)  # partition 1 name
            handle.write(b"X\x00")
    with pytest.raises(CorruptData, match="CRC"):
        _layout(copy)


def test_no_table_is_whole_disk() -> None:
    layout = _read(io.BytesIO(bytes(1 << 20)))
    assert layout.table == "none" and layout.partitions == ()


def test_random_tables_never_crash() -> None:
    """Whatever the bytes, the parser answers with a layout or one CorruptData line."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.binary(min_size=512, max_size=4096), st.sampled_from([0x05, 0x0F, 0xEE, 0x83]),
           st.integers(0, 1 << 32 - 1), st.integers(0, 1 << 32 - 1))
    def check(head: bytes, type_id: int, start: int, count: int) -> None:
        disk = bytearray(head.ljust(64 << 10, b"\x00"))
        struct.pack_into("<B3xB3xII", disk, 446, 0, type_id, start % 200, count % 300)
        for entry in (462, 478, 494):
            disk[entry] = 0  # valid boot flags, so the random entries themselves get parsed
        disk[510:512] = b"\x55\xaa"
        if type_id == 0xEE:  # a plausible GPT signature so the GPT path is exercised too
            disk[512:520] = b"EFI PART"
        try:
            _read(io.BytesIO(bytes(disk)))
        except CorruptData as exc:
            assert "\n" not in str(exc)

    check()
