"""reseal's TDB reader against Samba's own tools: files written by tdbtool and by `net`
(setlocalsid), read back key for key as tdbdump lists them; damaged files fail cleanly."""

from __future__ import annotations

import contextlib
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reseal.domain.tdb import TdbError, parse_tdb, sid_from_samba

pytestmark = pytest.mark.skipif(shutil.which("tdbtool") is None or shutil.which("tdbdump") is None,
                                reason="tdb-tools not installed (scripts/apt-packages.txt)")


def tdbdump_records(path: Path) -> dict[bytes, bytes]:
    text = subprocess.run(["tdbdump", str(path)], capture_output=True, text=True,
                          check=True).stdout

    def unescape(value: str) -> bytes:
        return re.sub(r"\\([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value).encode(
            "latin-1")

    pairs = re.findall(r'key\(\d+\) = "(.*)"\ndata\(\d+\) = "(.*)"', text)
    return {unescape(k): unescape(v) for k, v in pairs}


def make_tdb(path: Path, commands: list[str]) -> Path:
    script = "\n".join([f"create {path}", *commands, "quit", ""])
    subprocess.run(["tdbtool"], input=script, text=True, capture_output=True, check=True)
    return path


def test_tdbtool_file_reads_like_tdbdump(tmp_path: Path) -> None:
    path = make_tdb(tmp_path / "a.tdb", [f"insert key{i} value-{i * 7}" for i in range(300)]
                    + [f"delete key{i}" for i in range(0, 300, 3)])
    records = {r.key: r.data for r in parse_tdb(path.read_bytes())}
    assert records == tdbdump_records(path)
    assert len(records) == 200


def test_samba_secrets_tdb(tmp_path: Path) -> None:
    if shutil.which("net") is None:
        pytest.skip("Samba's net is not installed")
    conf = tmp_path / "smb.conf"
    conf.write_text(f"[global]\n\tworkgroup = LAB\n\tnetbios name = MASTER01\n"
                    f"\tprivate dir = {tmp_path}/p\n\tstate directory = {tmp_path}/s\n"
                    f"\tcache directory = {tmp_path}/c\n\tlock directory = {tmp_path}/l\n"
                    f"\tlog file = {tmp_path}/log\n")
    for name in "pscl":
        (tmp_path / name).mkdir()
    subprocess.run(["net", "-s", str(conf), "setlocalsid", "S-1-5-21-1000-2000-3000"],
                   capture_output=True, check=True, timeout=60)
    secrets = tmp_path / "p/secrets.tdb"
    records = parse_tdb(secrets.read_bytes())
    assert {r.key: r.data for r in records} == tdbdump_records(secrets)
    (sid_record,) = [r for r in records if r.key_text == "SECRETS/SID/MASTER01"]
    assert sid_from_samba(sid_record.data) == "S-1-5-21-1000-2000-3000"


def test_damaged_tdbs_fail_cleanly(tmp_path: Path) -> None:
    good = make_tdb(tmp_path / "g.tdb", ["insert a b", "insert c d"]).read_bytes()
    heads = 168
    (hash_size,) = struct.unpack_from("<I", good, 36)
    first_chain = next(i for i in range(1, hash_size + 1)
                       if struct.unpack_from("<I", good, heads + 4 * i)[0])
    chain_at = heads + 4 * first_chain
    (record_at,) = struct.unpack_from("<I", good, chain_at)
    looped = bytearray(good)
    struct.pack_into("<I", looped, record_at, record_at)  # the record points at itself
    huge = bytearray(good)
    struct.pack_into("<I", huge, record_at + 4, 1 << 30)  # rec_len past the end
    outside = bytearray(good)
    struct.pack_into("<I", outside, chain_at, len(good) + 100)
    cases = [b"", b"TDB file\n" + b"\0" * 10, good[:200], bytes(looped), bytes(huge),
             bytes(outside), good[:32] + struct.pack("<I", 7) + good[36:]]
    for data in cases:
        with pytest.raises(TdbError):
            parse_tdb(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=400), st.integers(min_value=0, max_value=2000))
def test_tdb_reader_never_crashes(noise: bytes, where: int) -> None:
    base = bytearray(b"TDB file\n".ljust(32, b"\0") + struct.pack("<II", 0x26011967 + 6, 3))
    base += b"\0" * (168 - len(base)) + b"\0" * 16
    data = bytes(base[:where % len(base)]) + noise + bytes(base[where % len(base):])
    with contextlib.suppress(TdbError):
        parse_tdb(data)
