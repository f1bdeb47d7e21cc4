"""Security cells, renames of big subtrees, class names and limits, read back by python-registry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import oracles
import pytest

from reseal.errors import BadInput
from reseal.registry import Hive, RegType
from reseal.registry.check import check_hive
from reseal.registry.security import default_descriptor

OTHER_SD = default_descriptor()[:-4] + b"\x01\x00\x00\x00"


def _sk_count(hive: Hive) -> int:
    return len(hive.security_descriptors())


def test_security_cells_shared_counted_and_freed() -> None:
    hive = Hive.new("ROOT")
    a = hive.create_key("A")
    b = hive.create_key("B")
    assert _sk_count(hive) == 1 and a.security == default_descriptor()
    a.set_security(OTHER_SD)
    assert _sk_count(hive) == 2 and hive.key("A").security == OTHER_SD  # type: ignore[union-attr]
    b.set_security(OTHER_SD)
    assert _sk_count(hive) == 2  # identical descriptors share one cell
    assert check_hive(Hive.from_bytes(hive.to_bytes())) is None
    a.set_security(default_descriptor())
    b.set_security(default_descriptor())
    assert _sk_count(hive) == 1  # count reached 0: cell freed
    assert OTHER_SD not in bytes(hive.store.buf)  # and zeroed
    hive.create_key("A\\Child").set_security(OTHER_SD)
    assert hive.delete_key("A")
    assert _sk_count(hive) == 1
    assert check_hive(Hive.from_bytes(hive.to_bytes())) is None


def test_map_security_descriptors_rewrites_and_relinks() -> None:
    hive = Hive.new("ROOT")
    hive.create_key("A").set_security(OTHER_SD)
    hive.create_key("B")
    bigger = OTHER_SD + bytes(200)
    changed = hive.map_security_descriptors(lambda sd: bigger if sd == OTHER_SD else None)
    assert changed == 1
    reread = Hive.from_bytes(hive.to_bytes())
    assert reread.key("A").security == bigger  # type: ignore[union-attr]
    assert reread.key("B").security == default_descriptor()  # type: ignore[union-attr]
    assert check_hive(reread) is None


def test_rename_sid_key_with_big_subtree(tmp_path: Path) -> None:
    hive = Hive.new("ROOT")
    old = "ProfileList\\S-1-5-21-1-2-3-1001"
    for i in range(300):
        key = hive.create_key(f"{old}\\Sub{i % 10}\\Leaf{i}", class_name="K" if i % 3 == 0 else None)
        key.set_value("v", RegType.REG_SZ, f"{i}")
    hive.create_key(f"{old}_Classes\\x")
    new_name = "S-1-5-21-4070822719-3404542230-2541167049-1001"
    renamed = hive.rename_key(old, new_name)
    assert renamed.path == f"ProfileList\\{new_name}" and hive.key(old) is None
    assert hive.key(f"ProfileList\\{new_name}\\Sub3\\Leaf3").class_name == "K"  # type: ignore[union-attr]
    path = tmp_path / "NTUSER"
    path.write_bytes(hive.to_bytes())
    reread = Hive.open(path)
    assert check_hive(reread) is None
    assert oracles.python_registry(path) == oracles.ours(reread)
    with pytest.raises(BadInput):
        hive.rename_key(f"ProfileList\\{new_name}", "S-1-5-21-1-2-3-1001_CLASSES")


def test_value_types_round_trip() -> None:
    hive = Hive.new("ROOT")
    key = hive.create_key("V")
    cases = [
        ("sz", RegType.REG_SZ, "text", "text"),
        ("ex", RegType.REG_EXPAND_SZ, "%X%", "%X%"),
        ("ms", RegType.REG_MULTI_SZ, ["a", "", "b"][:1] + ["b"], ["a", "b"]),
        ("dw", RegType.REG_DWORD, 7, 7),
        ("be", RegType.REG_DWORD_BIG_ENDIAN, 7, 7),
        ("qw", RegType.REG_QWORD, 2**63, 2**63),
        ("bin", RegType.REG_BINARY, b"\x00\x01", b"\x00\x01"),
        ("none", RegType.REG_NONE, b"", b""),
        ("link", RegType.REG_LINK, "\\Registry\\Machine", "\\Registry\\Machine"),
        ("raw", 0xFFFF0012, b"\x05", b"\x05"),
        ("big", RegType.REG_BINARY, b"z" * 70000, b"z" * 70000),
    ]
    for name, vtype, data, _ in cases:
        key.set_value(name, vtype, data)
    reread = Hive.from_bytes(hive.to_bytes()).key("V")
    assert reread is not None
    for name, vtype, _, decoded in cases:
        value = reread.value(name.upper())
        assert value is not None and value.type == vtype and value.data == decoded
    assert reread.value("be").raw == b"\x00\x00\x00\x07"  # type: ignore[union-attr]
    assert reread.value("sz").raw == "text\0".encode("utf-16-le")  # type: ignore[union-attr]
    with pytest.raises(BadInput):
        key.set_value("x", RegType.REG_DWORD, 2**40)
    with pytest.raises(BadInput):
        hive.create_key("bad\\" + "n" * 256)


@pytest.mark.parametrize("new_root", [
    "S-1-5-21-9-8-7-1001_Classes",  # same length: the root stays in the hive's first cell
    "S-1-5-21-4000000000-4000000000-4000000000-1001_Classes",  # longer: the root cell moves
])
def test_rename_root_key_read_back_by_independent_readers(tmp_path: Path, new_root: str) -> None:
    """UsrClass.dat's root is `<SID>_Classes`: a SID change must rename the root itself."""
    from regipy.registry import RegistryHive
    from Registry import Registry  # python-registry

    old_root = "S-1-5-21-1-2-3-1001_Classes"
    hive = Hive.new(root_name=old_root)
    first_cell = hive.root_offset
    for i in range(30):
        hive.create_key(f"Local Settings\\Key{i:02}").set_value("v", RegType.REG_SZ, f"value {i}")
    hive.rename_key("", new_root)
    path = tmp_path / "UsrClass.dat"
    path.write_bytes(hive.to_bytes())
    assert Registry.Registry(str(path)).root().name() == new_root
    hivex = subprocess.run(["hivexget", str(path), "\\Local Settings\\Key07", "v"],
                           capture_output=True, text=True, check=True)
    assert hivex.stdout.strip() == "value 7"
    reread = Hive.from_bytes(path.read_bytes())
    assert reread.root.name == new_root
    assert reread.key("Local Settings\\Key29").value("v").data == "value 29"
    check_hive(reread)
    if len(new_root) == len(old_root):
        # regipy takes the first cell of the first bin as the root (not the header's offset):
        # a rename that fits keeps the root there, so regipy reads it too.
        assert reread.root_offset == first_cell
        regipy_hive = RegistryHive(str(path))
        assert regipy_hive.get_key("\\Local Settings\\Key29").get_value("v") == "value 29"
