"""`reseal verify --deep` pieces that need no disk: which bytes count as the old identity, how
an NTFS owner is labelled, that sparse holes are skipped, and what a directory target says."""

from __future__ import annotations

import os
from pathlib import Path

from reseal.image.target import open_target
from reseal.pipeline.report import RunReport
from reseal.pipeline.verify import scan_leftovers
from reseal.windows.deepscan import classify_ntfs, needles, scan_offsets
from reseal.windows.sid import Sid

OLD = {"machine-sid": "S-1-5-21-1-2-3", "computer-name": "MASTER-PC",
       "machine-guid": "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "computer-name-2": "PC"}


def _forms(data: bytes) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for needle in needles(OLD):
        if needle.pattern.search(data):
            found.add((needle.identity, needle.form))
    return found


def test_needles_find_every_form_and_respect_boundaries() -> None:
    sid = Sid.parse("S-1-5-21-1-2-3-1001").to_bytes()
    assert _forms(b"xx" + sid) == {("machine-sid", "binary SID")}
    assert _forms("S-1-5-21-1-2-3-500".encode("utf-16-le")) == {("machine-sid", "SID text (utf-16le)")}
    assert _forms(b"s-1-5-21-1-2-3") == {("machine-sid", "SID text (ascii)")}
    assert _forms(b"S-1-5-21-1-2-34") == set()  # a longer look-alike
    assert _forms("master-pc".encode("utf-16-le")) == {("computer-name", "name (utf-16le)")}
    guid = bytes.fromhex("3d2c1b6f5f4e6b4a8c7d9e0f1a2b3c4d")
    assert _forms(guid) == {("machine-guid", "binary GUID")}
    assert _forms(b"6F1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D") == {("machine-guid", "GUID text (ascii)")}
    assert _forms(b"PC") == set()  # names under 4 characters would match everywhere


def test_ntfs_owners_are_labelled() -> None:
    assert classify_ntfs(None)[0] == "free cluster"
    assert classify_ntfs("/$Secure/$DATA($SDS)")[0] == "$Secure"
    assert classify_ntfs("/$Secure/$INDEX_ALLOCATION($SDH)")[0] == "$Secure"
    assert classify_ntfs("/$MFT/$DATA")[0] == "$MFT"
    assert classify_ntfs("/$LogFile/$DATA")[0] == "$LogFile"
    region, what, _remedy, path = classify_ntfs("/Users/$INDEX_ALLOCATION($I30)")
    assert region == "directory index" and "/Users" in what and path is None
    region, _what, _remedy, path = classify_ntfs("/$Recycle.Bin/S-1-5-21-1-2-3-1001/$RA1.txt/$DATA")
    assert region == "file" and path == "/$Recycle.Bin/S-1-5-21-1-2-3-1001/$RA1.txt"


def test_sparse_holes_skipped_and_chunk_edges_found(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    sid = Sid.parse("S-1-5-21-1-2-3-1001").to_bytes()
    with open(disk, "wb") as handle:
        handle.truncate(256 << 20)
        for offset in (5 << 20, (16 << 20) - 10, 200 << 20):
            handle.seek(offset)
            handle.write(sid)
    found = sorted(offset for offset, needle in scan_offsets(disk, needles(OLD))
                   if needle.form == "binary SID")
    assert found == [5 << 20, (16 << 20) - 10, 200 << 20]
    assert os.stat(disk).st_blocks * 512 < 1 << 20  # still sparse: nothing was written back


def test_directory_target_says_deep_needs_a_disk(tmp_path: Path) -> None:
    report = RunReport.start(str(tmp_path), "m", False)
    with open_target(tmp_path) as target:
        hits = scan_leftovers(target, report, deep=True)
    assert len(hits) == 1 and hits[0].beyond_files and "needs a disk image" in hits[0].what
