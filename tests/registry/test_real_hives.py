"""Every real hive: open, edit, commit; three independent readers must agree with the expected tree."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import oracles
import pytest
from hivetools import BROKEN, FAULTY, all_hives, copy_hive, good_hives

from reseal.errors import ResealError
from reseal.registry import Hive, RegType
from reseal.registry.check import check_hive
from reseal.registry.scrub import scrub

pytestmark = pytest.mark.skipif(shutil.which("hivexregedit") is None, reason="hivexregedit (libhivex-bin, libwin-hivex-perl) not installed")

# hivexregedit fails on the original too ("value_value: Bad address"): regf 1.6 layered keys.
HIVEX_CANNOT_READ = {"yarp/System_Delta"}
BIG = bytes(range(256)) * 80  # 20480 bytes: past the 16344-byte single-cell limit


def _apply_edits(hive: Hive, tree: oracles.Tree) -> dict[str, str | None]:
    """A mixed set of edits; `tree` (from oracles.ours) is updated to what must result."""
    classes_before = {k.path: k.class_name for k in hive.walk()}
    new = hive.create_key("ResealTest\\Child", class_name="ResealClass")
    edits: dict[str, tuple[int, bytes]] = {}
    for name, vtype, data in (
        ("sz", RegType.REG_SZ, "héllo wörld"),
        ("dw", RegType.REG_DWORD, 0x12345678),
        ("multi", RegType.REG_MULTI_SZ, ["a", "b"]),
        ("big", RegType.REG_BINARY, BIG),
        ("", RegType.REG_EXPAND_SZ, "%SystemRoot%"),
        ("devprop", 0xFFFF0012, b"\x01\x02"),
    ):
        value = new.set_value(name, vtype, data)
        edits[name] = (value.type, value.raw)
    tree["ResealTest"] = {}
    tree["ResealTest\\Child"] = edits
    uni = hive.create_key("ResealTest\\Ключ")
    uni.set_value("Значение", RegType.REG_QWORD, 2**40 + 5)
    tree["ResealTest\\Ключ"] = {"Значение": (11, (2**40 + 5).to_bytes(8, "little"))}

    keys = [k for k in hive.walk() if k.path and not k.path.upper().startswith("RESEALTEST")]
    with_values = [k for k in keys if len(k.values()) >= 2]
    if with_values:
        target = with_values[len(with_values) // 2]
        values = target.values()
        target.set_value(values[0].name, RegType.REG_BINARY, b"\x01\x02\x03\x04\x05")
        target.delete_value(values[-1].name)
        entry = tree[target.path]
        entry[values[0].name] = (3, b"\x01\x02\x03\x04\x05")
        del entry[values[-1].name]
    leaves = [k for k in keys if not k.subkeys() and not (with_values and k.path == target.path)]
    if len(leaves) >= 2:
        victim = leaves[len(leaves) // 3]
        assert hive.delete_key(victim.path)
        del tree[victim.path]
        renamed = leaves[(2 * len(leaves)) // 3]
        if renamed.path != victim.path:
            new_key = hive.rename_key(renamed.path, renamed.name + "_R")
            tree[new_key.path] = tree.pop(renamed.path)
            classes_before[new_key.path] = classes_before.pop(renamed.path)
        classes_before.pop(victim.path, None)
    return classes_before


@pytest.mark.parametrize("rel", good_hives())
def test_edit_commit_three_readers_agree(rel: str, hives_dir: Path, tmp_path: Path) -> None:
    path = copy_hive(hives_dir / rel, tmp_path)
    hive = Hive.open(path)
    tree = oracles.ours(hive)
    hive.index().build()  # before the edits: the scrub must still know what they wrote
    classes = _apply_edits(hive, tree)
    scrub(hive)  # free cells and slack zero-filled, as a generalize commit does
    assert scrub(hive)[:2] == (0, 0)  # nothing left outside live data
    hive.save(path)
    assert (path.parent / (path.name + ".reseal-orig")).exists()
    for log in path.parent.glob(path.name + ".LOG*"):
        if not log.name.endswith(".reseal-orig"):
            assert log.stat().st_size == 0, f"{log.name} not reset"

    reopened = Hive.open(path)
    assert not reopened.warnings, reopened.warnings
    assert check_hive(reopened) is None
    assert oracles.ours(reopened) == tree
    for key in reopened.walk():
        if key.path in classes:
            assert key.class_name == classes[key.path], key.path
    assert reopened.key("ResealTest\\Child").class_name == "ResealClass"

    assert oracles.python_registry(path) == tree
    if rel not in HIVEX_CANNOT_READ:
        assert oracles.hivex(path) == tree
    if os.path.getsize(path) < 3_000_000:  # regipy's value walk is quadratic on big hives
        got = {oracles.ascii_text(k): oracles.ascii_names(v) for k, v in oracles.regipy_names(path).items()}
        assert got == {k: oracles.ascii_names(set(v)) for k, v in _ascii_paths(tree).items()}


def _ascii_paths(tree: oracles.Tree) -> dict[str, dict[str, tuple[int, bytes]]]:
    return {oracles.ascii_text(path): values for path, values in tree.items()}


@pytest.mark.parametrize("rel", sorted(BROKEN & set(all_hives())))
def test_broken_hive_one_clear_error_no_write(rel: str, hives_dir: Path, tmp_path: Path) -> None:
    path = copy_hive(hives_dir / rel, tmp_path)
    before = path.read_bytes()
    with pytest.raises(ResealError) as info:
        hive = Hive.open(path)
        for _key in hive.walk():
            pass
    message = str(info.value)
    assert "\n" not in message and path.name.split(".")[0] in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in tmp_path.iterdir() if "reseal" not in p.name)


@pytest.mark.parametrize("rel", sorted(FAULTY))
def test_check_names_fault(rel: str, hives_dir: Path, tmp_path: Path) -> None:
    path = copy_hive(hives_dir / rel, tmp_path)
    fault = check_hive(Hive.open(path))
    assert fault is not None and FAULTY[rel] in fault.message
