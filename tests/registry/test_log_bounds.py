"""Sizes read from a transaction log are bounded by the real sizes of the hive and its logs.

A crafted log that claims a hive bins size of 1 GiB or 0xFFFFF000 in a few KiB (with correct
Marvin32 hashes, so it is not simply skipped as damaged) must end in one CorruptData line, with
little memory, from the library, `reseal hive check` and `reseal generalize --dry-run`.
"""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from reseal.errors import CorruptData
from reseal.registry import Hive, RegType
from reseal.registry.format import base_block_checksum
from reseal.registry.logs import marvin32

REPO = Path(__file__).resolve().parents[2]
HUGE = (0x40000000, 0xFFFFF000)


def _dirty_hive() -> tuple[bytes, int]:
    """A small clean hive made dirty (secondary sequence one behind); returns it and that seq."""
    hive = Hive.new("ROOT")
    for i in range(20):
        hive.create_key(f"K{i}").set_value("v", RegType.REG_SZ, f"value {i}")
    data = bytearray(hive.to_bytes())
    seq = struct.unpack_from("<I", data, 4)[0]
    struct.pack_into("<I", data, 8, seq - 1)
    struct.pack_into("<I", data, 0x1FC, base_block_checksum(data))
    return bytes(data), seq - 1


def _log_base(seq: int, file_type: int, hbins_size: int) -> bytearray:
    base = bytearray(512)
    struct.pack_into("<4sII", base, 0, b"regf", seq, seq)
    struct.pack_into("<IIII", base, 0x14, 1, 5, file_type, 1)
    struct.pack_into("<II", base, 0x24, 0x20, hbins_size)
    struct.pack_into("<I", base, 0x1FC, base_block_checksum(base))
    return base


def new_format_log(seq: int, hbins_size: int, page: bytes) -> bytes:
    """A type-6 log with one entry whose hashes are right and whose size claim is `hbins_size`."""
    body = struct.pack("<II", 0, len(page)) + page
    size = (40 + len(body) + 511) // 512 * 512
    entry = bytearray(size)
    struct.pack_into("<4sIIIII", entry, 0, b"HvLE", size, 0, seq, hbins_size, 1)
    entry[40 : 40 + len(body)] = body
    struct.pack_into("<Q", entry, 24, marvin32(bytes(entry[40:])))  # hash of the pages
    struct.pack_into("<Q", entry, 32, marvin32(bytes(entry[:32])))  # hash of the header, hash 1 included
    return bytes(_log_base(seq, 6, 4096)) + bytes(entry)


def old_format_log(seq: int, hbins_size: int) -> bytes:
    log = _log_base(seq, 1, hbins_size)
    return bytes(log) + b"DIRT" + b"\xff" * 60


@pytest.mark.parametrize("claim", HUGE)
def test_new_format_huge_claim_is_corrupt_data(claim: int) -> None:
    data, seq = _dirty_hive()
    log = new_format_log(seq, claim, data[4096:8192])
    assert len(log) < 8192
    with pytest.raises(CorruptData) as info:
        Hive.from_bytes(data, [log], "SYSTEM")
    message = str(info.value)
    assert "\n" not in message and f"{claim:#x}" in message and "SYSTEM" in message


@pytest.mark.parametrize("claim", HUGE)
def test_old_format_huge_claim_is_corrupt_data(claim: int) -> None:
    data, seq = _dirty_hive()
    with pytest.raises(CorruptData) as info:
        Hive.from_bytes(data, [old_format_log(seq, claim)], "SAM")
    assert f"{claim:#x}" in str(info.value) and "\n" not in str(info.value)


def test_old_format_dirty_vector_past_the_end_is_corrupt_data() -> None:
    """A claim the hive could hold, but whose dirty vector the tiny log does not have."""
    data, seq = _dirty_hive()
    log = bytes(_log_base(seq, 1, len(data) - 4096)) + b"DIRT"
    with pytest.raises(CorruptData) as info:
        Hive.from_bytes(data, [log], "SAM")
    assert "dirty vector" in str(info.value)


def test_sane_log_still_recovers() -> None:
    """The same crafted log with an honest size is applied (the bound refuses only lies)."""
    data, seq = _dirty_hive()
    page = bytearray(data[4096:8192])
    hive = Hive.from_bytes(data, [new_format_log(seq, len(data) - 4096, bytes(page))], "ROOT")
    assert hive.recovered and hive.key("K3") is not None


def _limited(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python code under a 1 GiB address-space limit (the bug took 2.1-8.4 GB)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          preexec_fn=limit, timeout=120, cwd=REPO)


def test_hive_check_cli_under_memory_cap(tmp_path: Path) -> None:
    data, seq = _dirty_hive()
    (tmp_path / "SYSTEM").write_bytes(data)
    (tmp_path / "SYSTEM.LOG1").write_bytes(new_format_log(seq, 0xFFFFF000, data[4096:8192]))
    proc = _limited("import sys; from reseal.cli import main; sys.exit(main())", "hive", "check",
                    str(tmp_path / "SYSTEM"))
    assert proc.returncode == 1, proc.stderr
    assert "claims a hive bins size of 0xfffff000" in proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout and "MemoryError" not in proc.stderr


def test_generalize_dry_run_one_line(tmp_path: Path) -> None:
    """Through `reseal generalize WINDIR --dry-run`: exit 2, one error line, nothing changed."""
    sys.path.insert(0, str(REPO))
    from tests.windows.helpers import build_fixture_tree, digests

    root = build_fixture_tree(tmp_path / "root")
    config = root / "Windows" / "System32" / "config"
    data = bytearray((config / "SYSTEM").read_bytes())
    seq = struct.unpack_from("<I", data, 4)[0]
    struct.pack_into("<I", data, 8, seq - 1)
    struct.pack_into("<I", data, 0x1FC, base_block_checksum(data))
    (config / "SYSTEM").write_bytes(data)
    (config / "SYSTEM.LOG1").write_bytes(new_format_log(seq - 1, 0x40000000, bytes(data[4096:8192])))
    before = digests(root)
    proc = _limited("import sys; from reseal.cli import main; sys.exit(main())", "generalize",
                    str(root), "--dry-run", "--run-dir", str(tmp_path / "run"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "claims a hive bins size of 0x40000000" in lines[0], proc.stderr
    assert digests(root) == before
