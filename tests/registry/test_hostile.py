"""Hostile hives: damaged bytes give one clear error (or a clean read), never a crash or a hang."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from reseal.errors import ResealError
from reseal.registry import Hive, RegType
from reseal.registry.check import check_hive


def _sample_hive() -> bytes:
    hive = Hive.new("ROOT")
    for i in range(60):
        key = hive.create_key(f"K{i % 7}\\Sub{i}", class_name="C" if i % 5 == 0 else None)
        key.set_value("s", RegType.REG_SZ, f"value {i}")
        key.set_value("d", RegType.REG_DWORD, i)
        if i % 20 == 0:
            key.set_value("big", RegType.REG_BINARY, bytes(20000))
    return hive.to_bytes()


def _exercise(data: bytes) -> None:
    try:
        hive = Hive.from_bytes(data, name="fuzz")
        check_hive(hive)
        touched = 0
        for key in hive.walk():
            # every lazily decoded field is read: none may crash on a corrupt hive
            touched += len(key.class_name or "") + len(key.security)
            touched += sum(len(repr(value.data)) for value in key.values())
        assert touched >= 0
        hive.create_key("New\\Key").set_value("x", RegType.REG_SZ, "y")
        hive.to_bytes()
    except ResealError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("seed", range(12))
def test_random_corruption_never_crashes(seed: int) -> None:
    rng = random.Random(seed)
    clean = _sample_hive()
    for _round in range(40):
        data = bytearray(clean)
        for _ in range(rng.choice([1, 2, 8, 32])):
            at = rng.randrange(4096, len(data) - 4)
            if rng.random() < 0.5:
                struct.pack_into("<I", data, at & ~3, rng.choice([0, 0xFFFFFFFF, 0x80000000, 0x20, 0x7FFFFFF8, rng.getrandbits(32)]))
            else:
                data[at] = rng.getrandbits(8)
        _exercise(bytes(data))


def test_subkey_list_loop_is_reported(tmp_path: Path) -> None:
    hive = Hive.new("ROOT")
    hive.create_key("A\\B")
    a = hive.key("A")
    b = hive.key("A\\B")
    assert a is not None and b is not None
    # point B's subkey list at A's list: A -> B -> B -> ...
    hive._nk_set(b.offset, 0x1C, hive._nk_u32(a.offset, 0x1C))
    hive._nk_set(b.offset, 0x14, 1)
    fault = check_hive(Hive.from_bytes(hive.to_bytes()))
    assert fault is not None and "twice" in fault.message
    with pytest.raises(ResealError):
        for _key in Hive.from_bytes(hive.to_bytes()).walk():
            pass


def test_size_past_end_is_reported() -> None:
    data = bytearray(_sample_hive())
    struct.pack_into("<I", data, 0x28, 0x7FFFF000)
    with pytest.raises(ResealError) as info:
        Hive.from_bytes(bytes(data))
    assert "0x28" in str(info.value)


@pytest.mark.parametrize(("field", "what"), [(0x34, "subkey name"), (0x38, "subkey class"),
                                             (0x3C, "value name"), (0x40, "value data")])
def test_largest_length_field_below_the_real_one_is_reported(field: int, what: str) -> None:
    """Programs size buffers from these fields (RegQueryInfoKey): too small is a fault."""
    hive = Hive.new("ROOT")
    key = hive.create_key("Parent")
    hive.create_key("Parent\\Child", class_name="SomeClass")
    key.set_value("LongValueName", RegType.REG_BINARY, bytes(300))
    assert check_hive(Hive.from_bytes(hive.to_bytes())) is None
    hive._nk_set(key.offset, field, 1)
    fault = check_hive(Hive.from_bytes(hive.to_bytes()))
    assert fault is not None and f"largest {what} length field says 1" in fault.message


def test_names_outside_the_basic_plane_count_as_utf16() -> None:
    """The writer counts a surrogate pair as 4 bytes, as Windows does, so check agrees."""
    hive = Hive.new("ROOT")
    key = hive.create_key("Parent\\Emoji\U0001F600")
    parent = hive.key("Parent")
    assert parent is not None
    parent.set_value("Wert\U0001F600", RegType.REG_SZ, "x")
    assert check_hive(Hive.from_bytes(hive.to_bytes())) is None
    assert hive._nk_u32(parent.offset, 0x34) & 0xFFFF == len("Emoji") * 2 + 4
    assert hive._nk_u32(parent.offset, 0x3C) == len("Wert") * 2 + 4
    assert key.name == "Emoji\U0001F600"
