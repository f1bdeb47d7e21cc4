"""Exit 2 means nothing was touched; a volume nothing writes to keeps every byte.

Every file system is mounted read-only until the first write to it is due, so a run refused
for bad input (or a corrupt image), and every volume a run leaves alone (the EFI system
partition of most runs), keep every byte: no ext4 mount count, no NTFS journal, no FAT FSInfo.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path

import pytest
from tests.conftest import file_sha256

from reseal.samples.builders import SampleImage

from .conftest import SAMPLES, cli_env, copy_sample, journal_of, reseal


@pytest.mark.parametrize("sample", SAMPLES)
def test_bad_hostname_leaves_the_image_as_it_was(sample: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    image = copy_sample(request.getfixturevalue(sample), tmp_path)
    before = file_sha256(image)
    done = reseal("generalize", str(image), "--hostname", "bad_name!", env=cli_env(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "bad_name!" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert file_sha256(image) == before
    assert not (tmp_path / "state").exists()  # no journal, no report


def _ntfs_start(image: Path) -> int:
    """Byte offset of the NTFS partition of the Windows GPT sample (its third entry)."""
    with open(image, "rb") as disk:
        disk.seek(512)
        header = disk.read(92)
        entries_lba, _count, entry_size = struct.unpack_from("<QII", header, 72)
        disk.seek(entries_lba * 512 + 2 * entry_size + 32)
        return struct.unpack("<Q", disk.read(8))[0] * 512


@pytest.mark.parametrize("damage", ["garbage boot sector", "MFT out of range"])
def test_corrupt_ntfs_refused_with_the_image_as_it_was(damage: str, windows_gpt: SampleImage,
                                                       tmp_path: Path) -> None:
    image = copy_sample(windows_gpt, tmp_path)
    start = _ntfs_start(image)
    with open(image, "r+b") as disk:
        disk.seek(start)
        boot = bytearray(disk.read(512))
        assert boot[3:11] == b"NTFS    "
        if damage == "garbage boot sector":
            boot[11:510] = hashlib.sha512(b"reseal").digest() * 7 + bytes(51)
        else:
            struct.pack_into("<Q", boot, 48, 1 << 40)  # $MFT cluster far past the end
        disk.seek(start)
        disk.write(boot)
    before = file_sha256(image)
    done = reseal("generalize", str(image), "--hostname", "GOOD-NAME", env=cli_env(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "NTFS" in done.stderr
    assert file_sha256(image) == before


def _partition_digests(image: Path) -> dict[int, str]:
    """sha256 of each partition's bytes (GPT samples)."""
    digests = {}
    with open(image, "rb") as disk:
        disk.seek(512)
        header = disk.read(92)
        entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
        for index in range(count):
            disk.seek(entries_lba * 512 + index * entry_size)
            entry = disk.read(entry_size)
            first, last = struct.unpack_from("<QQ", entry, 32)
            if entry[:16] == bytes(16):
                continue
            disk.seek(first * 512)
            digests[index + 1] = hashlib.sha256(disk.read((last - first + 1) * 512)).hexdigest()
    return digests


@pytest.mark.parametrize("sample", ["windows_gpt", "linux_gpt"])
def test_esp_untouched_by_a_run_and_its_undo(sample: str, tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:
    """No default operation writes to these samples' ESP: it must keep every byte (its FSInfo
    sector above all) through the run and through the undo."""
    image = copy_sample(request.getfixturevalue(sample), tmp_path)
    before = _partition_digests(image)
    env = cli_env(tmp_path)
    done = reseal("generalize", str(image), "--hostname", "ESP-TEST", "--json", env=env)
    assert done.returncode == 0, done.stderr
    after = _partition_digests(image)
    assert after[1] == before[1]  # the ESP
    assert after != before  # the system volume did change
    undone = reseal("undo", str(image), str(journal_of(done.stdout)), env=env)
    assert undone.returncode == 0, undone.stderr
    assert _partition_digests(image)[1] == before[1]


def test_running_root_refused_without_the_flag(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    for args in (["/", "--dry-run"], ["/", "--hostname", "X1"], [f"{tmp_path}/../../../../../..",
                                                                 "--dry-run"]):
        done = reseal("generalize", *args, env=env)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "running system" in done.stderr and "--running-system" in done.stderr
    assert not (tmp_path / "state").exists()


def test_running_root_needs_the_flag_and_a_bind_of_it_is_the_same(tmp_path: Path) -> None:
    alias = tmp_path / "root-alias"
    alias.mkdir()
    subprocess.run(["mount", "--bind", "/", str(alias)], check=True)
    try:
        done = reseal("generalize", str(alias), "--dry-run", env=cli_env(tmp_path))
        assert done.returncode == 2 and "--running-system" in done.stderr
    finally:
        subprocess.run(["umount", str(alias)], check=True)
    done = reseal("generalize", "/", "--dry-run", "--running-system", "--operations",
                  "linux-hostname", "--hostname", "first-boot", env=cli_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "first-boot" in done.stdout
