"""`reseal hive set` keeps PATH.reseal-orig beside each hive file it rewrites: a copy of a SAM
holds the same password hashes, so it is never readable by more users than the original."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.hostile.conftest import run_reseal

from reseal.registry import Hive


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_kept_originals_have_the_hives_mode(tmp_path: Path, state_env: dict[str, str]) -> None:
    sam = tmp_path / "SAM"
    sam.write_bytes(Hive.new("SAM").to_bytes())
    log = tmp_path / "SAM.LOG1"
    log.write_bytes(b"\0" * 512)
    for path, mode in ((sam, 0o600), (log, 0o640)):
        os.chmod(path, mode)
    run = run_reseal(["hive", "set", sam, "Domains\\Account", "Note", "--type", "REG_SZ",
                      "--data", "x"], env=state_env, umask=0)
    assert run.returncode == 0, run.stderr
    assert _mode(tmp_path / "SAM.reseal-orig") == 0o600
    assert _mode(tmp_path / "SAM.LOG1.reseal-orig") == 0o640
    assert _mode(sam) == 0o600


def test_a_wider_kept_original_is_narrowed(tmp_path: Path, state_env: dict[str, str]) -> None:
    sam = tmp_path / "SAM"
    sam.write_bytes(Hive.new("SAM").to_bytes())
    os.chmod(sam, 0o600)
    kept = tmp_path / "SAM.reseal-orig"
    kept.write_bytes(sam.read_bytes())
    os.chmod(kept, 0o644)  # left by an earlier version
    run = run_reseal(["hive", "set", sam, "Domains", "Note", "--type", "REG_SZ", "--data", "x"],
                     env=state_env)
    assert run.returncode == 0, run.stderr
    assert _mode(kept) == 0o600
