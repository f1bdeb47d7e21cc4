"""reseal's own container header parser on damaged headers: a clean answer or one clear
error (ResealError, one line), never a crash, whatever the sizes and offsets say."""

from __future__ import annotations

import random
import shutil
import struct
from pathlib import Path

import pytest
from tests.hostile.builders import qemu_img

from reseal.errors import ResealError
from reseal.image.vdisk_header import check_container


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if shutil.which("qemu-img") is None:
        pytest.skip("needs qemu-img (qemu-utils)")
    out = tmp_path_factory.mktemp("vdisk")
    made = {}
    for fmt, options in (("qcow2", []), ("vmdk", []), ("vhdx", []), ("vpc", [])):
        path = out / f"sample.{fmt}"
        qemu_img("create", "-q", "-f", fmt, *options, path, "16M")
        made[fmt] = path.read_bytes()[: 1 << 20]
    base = out / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", base, "16M")
    overlay = out / "overlay.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
    made["qcow2-backed"] = overlay.read_bytes()
    return made


@pytest.mark.parametrize("kind", ["qcow2", "qcow2-backed", "vmdk", "vhdx", "vpc"])
def test_damaged_headers_never_crash(tmp_path: Path, samples: dict[str, bytes], kind: str
                                     ) -> None:
    fmt = kind.split("-")[0]
    rng = random.Random(kind)
    clean = samples[kind]
    path = tmp_path / f"fuzz.{fmt}"
    outcomes = set()
    for _round in range(300):
        data = bytearray(clean)
        for _ in range(rng.choice([1, 2, 4, 16])):
            at = rng.randrange(0, min(len(data) - 8, 4096 if fmt != "vhdx" else 1 << 20))
            if rng.random() < 0.5:
                struct.pack_into("<Q", data, at, rng.choice(
                    [0, 2**64 - 1, 2**63, 1 << 40, rng.getrandbits(64), len(data) + 1]))
            else:
                data[at] = rng.getrandbits(8)
        path.write_bytes(bytes(data[: rng.choice([len(data), len(data), 100, 600])]))
        try:
            check_container(path, fmt)
            outcomes.add("ok")
        except ResealError as exc:
            assert "\n" not in str(exc)
            outcomes.add(type(exc).__name__)
    # a crash would have ended the loop; damage that reaches the checked fields is refused
    assert outcomes & {"Refused", "CorruptData"}, outcomes
