"""Log recovery against what Windows itself made (yarp's RecoveredHive_* files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reseal.errors import Refused
from reseal.registry import Hive
from reseal.registry.logs import marvin32, recover

# Bytes Windows 7 changed while loading, not while replaying: the first bin's timestamp
# (hbin header +0x14..+0x1b) and one key's largest-value-name field its self-check rewrote.
WIN7_LOAD_CHANGES = set(range(4096 + 0x14, 4096 + 0x1C)) | {441800}


def _logs(folder: Path, stem: str) -> list[bytes]:
    return [(folder / f"{stem}{s}").read_bytes() for s in (".LOG1", ".LOG2") if (folder / f"{stem}{s}").exists()]


def test_new_format_replay_matches_windows10(hives_dir: Path) -> None:
    folder = hives_dir / "yarp" / "NewDirtyHive1"
    result = recover((folder / "NewDirtyHive").read_bytes(), _logs(folder, "NewDirtyHive"), "NewDirtyHive")
    want = (folder / "RecoveredHive_Windows10").read_bytes()
    assert result.recovered
    assert result.data[4096:] == want[4096:]


def test_old_format_replay_matches_windows7(hives_dir: Path) -> None:
    folder = hives_dir / "yarp" / "OldDirtyHive"
    result = recover((folder / "OldDirtyHive").read_bytes(), _logs(folder, "OldDirtyHive"), "OldDirtyHive")
    want = (folder / "RecoveredHive_Windows7").read_bytes()
    assert len(result.data) == len(want)
    differing = {i for i in range(4096, len(want)) if result.data[i] != want[i]}
    assert differing <= WIN7_LOAD_CHANGES
    assert Hive.from_bytes(result.data).key("") is not None


def test_only_second_log_applies(hives_dir: Path) -> None:
    folder = hives_dir / "yarp" / "NewDirtyHive2"
    hive = Hive.from_bytes((folder / "NewDirtyHive").read_bytes(), _logs(folder, "NewDirtyHive"), "NewDirtyHive")
    assert hive.recovered and "1 new-format log" in hive.warnings[-1]


@pytest.mark.parametrize("case", ["BadLogHive1", "BadLogHive2", "BadLogHive3"])
def test_bad_logs_refused(case: str, hives_dir: Path) -> None:
    folder = hives_dir / "yarp" / case
    with pytest.raises(Refused) as info:
        Hive.from_bytes((folder / "BadLogHive").read_bytes(), _logs(folder, "BadLogHive"), "BadLogHive")
    assert "offset" in str(info.value) and "\n" not in str(info.value)


def test_bad_base_block_recovered_from_log(hives_dir: Path) -> None:
    folder = hives_dir / "yarp" / "BadBaseBlockHive"
    hive = Hive.from_bytes((folder / "BadBaseBlockHive").read_bytes(), _logs(folder, "BadBaseBlockHive"), "B")
    assert hive.recovered and sum(1 for _ in hive.walk()) > 1000


def test_dirty_without_logs_warns(hives_dir: Path) -> None:
    data = (hives_dir / "dfir-artifact-museum" / "Win7-EZ" / "SECURITY").read_bytes()
    hive = Hive.from_bytes(data, [], "SECURITY")
    assert not hive.recovered and "no logs" in hive.warnings[0]
    clean = Hive.from_bytes(hive.to_bytes())
    assert clean.warnings == []


def test_marvin32_is_order_sensitive() -> None:
    assert marvin32(b"abcd") != marvin32(b"dcba")
    assert marvin32(b"") == marvin32(b"")
    assert marvin32(b"abc") != marvin32(b"abd")
