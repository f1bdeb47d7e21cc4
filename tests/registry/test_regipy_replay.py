"""Our log replay against regipy's, run with the later log as primary (the order it gets right)."""

from __future__ import annotations

from pathlib import Path

import oracles
import pytest
from hivetools import copy_hive

from reseal.registry import Hive
from reseal.registry.check import check_hive

# regipy/transactions_NTUSER.DAT is left out: regipy's replay of it gives an unreadable hive in
# either log order ("Invalid VK Record ID" / "Subkey list with type 0x766b"); ours follows the
# sequence rules (LOG2 at 562 is older than the hive's 566 and is skipped) and passes `check`.
SETS = [
    "dfir-artifact-museum/Win10-RathbunVM/DEFAULT",
    "dfir-artifact-museum/Win10-RathbunVM/SECURITY",
    "dfir-artifact-museum/Win11-RathbunVM/NTUSER.DAT.xz",
    "regipy/SYSTEM_B.xz",
    "regipy/UsrClass.dat.xz",
    "yarp/NewDirtyHive1/NewDirtyHive",
]


@pytest.mark.parametrize("rel", SETS)
def test_replay_agrees_with_regipy(rel: str, hives_dir: Path, tmp_path: Path) -> None:
    from regipy.recovery import apply_transaction_logs

    path = copy_hive(hives_dir / rel, tmp_path)
    logs = [p for p in tmp_path.iterdir() if ".log" in p.name.lower() and p.stat().st_size]
    logs.sort(key=lambda p: -int.from_bytes(p.read_bytes()[4:8], "little"))
    hive = Hive.open(path)
    assert hive.recovered
    assert check_hive(hive) is None
    restored = tmp_path / "restored"
    apply_transaction_logs(str(path), str(logs[0]), str(logs[1]) if len(logs) > 1 else None, str(restored))
    assert oracles.ours(hive) == oracles.python_registry(restored)
