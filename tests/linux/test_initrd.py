"""reseal's initrd reader/writer against the host's cpio and compressors (independent tools).

Archives are made by GNU cpio (-H newc) and compressed by gzip, xz, bzip2 and zstd, an
uncompressed early archive in front, as initramfs-tools lays them out; reseal rewrites one
member, and cpio (after the host's decompressor) reads the result back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reseal.linux.initrd import InitrdError, compress, parse_initrd, zstd_frame_length

COMPRESSORS = {"gzip": ["gzip", "-9", "-n"], "xz": ["xz", "--check=crc32", "-6"],
               "bzip2": ["bzip2", "-9"], "zstd": ["zstd", "-q", "-19", "-T0"]}
DECOMPRESSORS = {"gzip": ["gzip", "-dc"], "xz": ["xz", "-dc"], "bzip2": ["bzip2", "-dc"],
                 "zstd": ["zstd", "-dcq"]}
RESUME = "RESUME=UUID=9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d\n"


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (scripts/apt-packages.txt)")


def cpio_archive(tree: Path) -> bytes:
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    return subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input="\n".join(names).encode(),
                          cwd=tree, capture_output=True, check=True).stdout


def make_tree(root: Path) -> Path:
    (root / "conf/conf.d").mkdir(parents=True)
    (root / "conf/conf.d/resume").write_text(RESUME)
    (root / "scripts").mkdir()
    (root / "scripts/init").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "scripts/init", 0o755)
    (root / "bin").mkdir()
    (root / "bin/blob").write_bytes(os.urandom(200_000))
    os.symlink("../scripts/init", root / "bin/init-link")
    return root


def host_extract(data: bytes, kind: str, skip: int, member: str) -> bytes:
    """The member's bytes as the host tools read them from the compressed part."""
    plain = subprocess.run(DECOMPRESSORS[kind], input=data[skip:], capture_output=True,
                           check=True).stdout
    return subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", member], input=plain,
                          capture_output=True, check=True).stdout


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_rewrite_one_member_read_back_by_cpio(tmp_path: Path, kind: str) -> None:
    need("cpio", COMPRESSORS[kind][0])
    early_tree = tmp_path / "early"
    (early_tree / "kernel/x86/microcode").mkdir(parents=True)
    (early_tree / "kernel/x86/microcode/GenuineIntel.bin").write_bytes(b"\x01" * 1000)
    early = cpio_archive(early_tree)
    main = subprocess.run(COMPRESSORS[kind], input=cpio_archive(make_tree(tmp_path / "main")),
                          capture_output=True, check=True).stdout
    original = early + main

    initrd = parse_initrd(original)
    assert [s.compression for s in initrd.segments][0] == "none"
    assert initrd.segments[-1].compression == kind
    assert initrd.to_bytes() == original  # nothing changed: every byte kept
    found = {m.name: (n, m) for n, m in initrd.members()}
    assert found["conf/conf.d/resume"][1].data.decode() == RESUME
    assert found["bin/init-link"][1].data == b"../scripts/init"

    new_text = RESUME.replace("9c8b7a6d", "11111111").encode()
    initrd.replace_data(found["conf/conf.d/resume"][0], "conf/conf.d/resume", new_text)
    rewritten = initrd.to_bytes()
    assert rewritten.startswith(early)  # the early archive is kept as it was
    assert host_extract(rewritten, kind, len(early), "conf/conf.d/resume") == new_text
    assert host_extract(rewritten, kind, len(early), "bin/blob") == \
        (tmp_path / "main/bin/blob").read_bytes()
    listing = subprocess.run(["cpio", "-itv", "--quiet"], capture_output=True, check=True,
                             input=subprocess.run(DECOMPRESSORS[kind], input=rewritten[len(early):],
                                                  capture_output=True, check=True).stdout).stdout
    assert b"scripts/init" in listing and b"-> ../scripts/init" in listing
    assert b"-rwxr-xr-x" in listing


def test_zstd_frame_length_stops_at_the_frame_end() -> None:
    need("zstd")
    frame = compress("zstd", b"hello" * 1000)
    assert zstd_frame_length(frame + b"\0" * 16, 0) == len(frame)
    with pytest.raises(InitrdError):
        zstd_frame_length(frame[:-3], 0)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "huge-name", "past-end", "lz4"])
def test_hostile_initrds_raise_one_clear_error(tmp_path: Path, damage: str) -> None:
    need("cpio")
    archive = cpio_archive(make_tree(tmp_path / "t"))
    bad = {
        "truncated": compress("gzip", archive)[:-40],
        "garbage": b"not an initrd at all",
        "huge-name": archive[:94] + b"FFFFFFFF" + archive[102:],
        "past-end": archive[:54] + b"7FFFFFFF" + archive[62:],
        "lz4": b"\x02\x21\x4c\x18" + b"\0" * 32,
    }[damage]
    with pytest.raises(InitrdError):
        parse_initrd(bad)


def test_unpacked_size_is_bounded() -> None:
    bomb = compress("gzip", b"\0" * (8 << 20))
    with pytest.raises(InitrdError, match="MiB"):
        parse_initrd(bomb, max_unpacked=1 << 20)
