"""The partition type table agrees with util-linux's, and the samples carry standard types."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from reseal.image import parttypes


def _sfdisk_gpt_types() -> dict[str, str]:
    if shutil.which("sfdisk") is None:
        pytest.skip("sfdisk is not installed (util-linux, scripts/apt-packages.txt)")
    out = subprocess.run(["sfdisk", "--label", "gpt", "-T"], capture_output=True, text=True,
                         check=True).stdout
    table = {}
    for line in out.splitlines():
        guid, _, name = line.strip().partition("  ")
        if len(guid) == 36:
            table[guid.lower()] = name.strip()
    return table


def test_every_gpt_guid_is_the_one_sfdisk_knows_by_that_name() -> None:
    known = _sfdisk_gpt_types()
    by_name = {name: guid for guid, name in known.items()}
    for entry in parttypes.GPT_TYPES:
        assert entry.ident == entry.ident.lower()
        assert known.get(entry.ident) == entry.sfdisk_name, (
            f"{entry.name}: {entry.ident} is not sfdisk's {entry.sfdisk_name!r} "
            f"({by_name.get(entry.sfdisk_name)})")


def test_names_and_lookup() -> None:
    assert parttypes.type_name("0FC63DAF-8483-4772-8E79-3D69D8477DE4") == "Linux filesystem"
    assert parttypes.type_name("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7") == "Microsoft basic data"
    assert parttypes.type_name("0x83") == "Linux"
    assert parttypes.type_name("0fc63daf-8483-4772-8e79-3d69e47de4e4") == ""  # the old typo
    assert parttypes.LINUX_FILESYSTEM.sfdisk_ident == "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    assert parttypes.MBR_LINUX.sfdisk_ident == "83"
    assert parttypes.LINUX_SWAP.ident in parttypes.NEVER_MOUNTED
