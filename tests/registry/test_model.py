"""Random edit sequences against a plain in-memory model (hypothesis), and large subkey lists."""

from __future__ import annotations

import shutil
from pathlib import Path

import oracles
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reseal.registry import Hive
from reseal.registry.check import check_hive
from reseal.registry.format import BIG_DATA_SEGMENT

NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ÄÖЖ", min_size=1, max_size=12)
SIZES = st.sampled_from([0, 1, 4, 5, 100, BIG_DATA_SEGMENT - 1, BIG_DATA_SEGMENT, BIG_DATA_SEGMENT + 1, 40000])
OPS = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 50), NAMES),
    st.tuples(st.just("setv"), st.integers(0, 50), st.sampled_from(["", "A", "B", "Ж"]), st.integers(0, 0x10012), SIZES),
    st.tuples(st.just("delv"), st.integers(0, 50), st.sampled_from(["", "A", "B", "Ж"])),
    st.tuples(st.just("delk"), st.integers(0, 50)),
    st.tuples(st.just("rename"), st.integers(0, 50), NAMES),
)


def _apply(hive: Hive, model: oracles.Tree, op: tuple) -> None:  # type: ignore[type-arg]
    paths = sorted(model)
    path = paths[op[1] % len(paths)]
    kind = op[0]
    if kind == "create":
        new = f"{path}\\{op[2]}" if path else op[2]
        if new.upper() not in {p.upper() for p in model}:
            model[new] = {}
        hive.create_key(new)
    elif kind == "setv":
        raw = bytes((i * 7 + op[4]) & 0xFF for i in range(op[4]))
        existing = next((n for n in model[path] if n.upper() == op[2].upper()), op[2])
        model[path].pop(existing, None)
        model[path][existing] = (op[3], raw)
        hive.key(path).set_value(op[2], op[3], raw)  # type: ignore[union-attr]
    elif kind == "delv":
        existing = next((n for n in model[path] if n.upper() == op[2].upper()), None)
        assert hive.key(path).delete_value(op[2]) == (existing is not None)  # type: ignore[union-attr]
        if existing is not None:
            del model[path][existing]
    elif kind == "delk" and path:
        assert hive.delete_key(path)
        for other in [p for p in model if p == path or p.startswith(path + "\\")]:
            del model[other]
    elif kind == "rename" and path:
        parent, _, old = path.rpartition("\\")
        new = f"{parent}\\{op[2]}" if parent else op[2]
        if new.upper() != path.upper() and new.upper() in {p.upper() for p in model}:
            return
        hive.rename_key(path, op[2])
        for other in [p for p in model if p == path or p.startswith(path + "\\")]:
            model[new + other[len(path):]] = model.pop(other)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=40))
def test_random_edits_match_model(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    hive = Hive.new("ROOT")
    model: oracles.Tree = {"": {}}
    for op in ops:
        _apply(hive, model, op)
    reread = Hive.from_bytes(hive.to_bytes())
    assert check_hive(reread) is None
    assert oracles.ours(reread) == model


def test_thousands_of_subkeys_ri_list(tmp_path: Path) -> None:
    hive = Hive.new("ROOT")
    parent = hive.create_key("Many")
    for i in range(1500):
        hive.create_key(f"Many\\k{(i * 7919) % 1500:05d}", class_name=f"c{i}" if i % 500 == 0 else None)
    parent = hive.key("Many")
    assert parent is not None and parent.subkey_count == 1500
    pos, _ = hive.store.cell(hive._nk_u32(parent.offset, 0x1C))
    assert hive.store.buf[pos : pos + 2] == b"ri"  # of li leaves, as Windows writes big lists
    for i in range(0, 1500, 2):
        assert hive.delete_key(f"MANY\\K{i:05d}")
    path = tmp_path / "many"
    path.write_bytes(hive.to_bytes())
    reread = Hive.open(path)
    assert check_hive(reread) is None
    names = [k.name for k in reread.key("Many").subkeys()]  # type: ignore[union-attr]
    assert names == [f"k{i:05d}" for i in range(1, 1500, 2)]
    tree = oracles.ours(reread)
    assert oracles.python_registry(path) == tree
    if shutil.which("hivexregedit"):
        assert oracles.hivex(path) == tree


def test_freed_cells_are_zeroed_and_reused() -> None:
    hive = Hive.new("ROOT")
    key = hive.create_key("K")
    secret = b"SECRET-IDENTITY-" * 64
    key.set_value("v", 3, secret)
    size_before = hive.store.hbins_size
    key.delete_value("v")
    assert secret[:16] not in bytes(hive.store.buf)
    key.set_value("w", 3, b"x" * len(secret))
    assert hive.store.hbins_size == size_before


_LARGE: dict[str, bytes] = {}


def _large_hive_bytes() -> bytes:
    """yarp's ManySubkeysHive: 5000 subkeys under one key, in an ri list Windows wrote."""
    if "data" not in _LARGE:
        path = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "hives" / "yarp" / "ManySubkeysHive"
        if not path.exists():
            pytest.skip(f"real fixtures not available: {path} is absent")
        _LARGE["data"] = path.read_bytes()
    return _LARGE["data"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=25), st.integers(0, 4999))
def test_random_edits_on_large_real_hive(ops: list[tuple], focus: int) -> None:  # type: ignore[type-arg]
    hive = Hive.from_bytes(_large_hive_bytes())
    model = oracles.ours(hive)
    paths = sorted(model)
    # aim half of the operations at the key with 5000 subkeys or one of its children
    many = next(p for p in paths if p.count("\\") == 0 and len([q for q in paths if q.startswith(p + "\\")]) > 1000)
    children = [p for p in paths if p.startswith(many + "\\")]
    for n, op in enumerate(ops):
        if n % 2:
            target = many if op[1] % 3 == 0 else children[(focus + op[1]) % len(children)]
            op = (op[0], sorted(model).index(target) if target in model else op[1], *op[2:])
        _apply(hive, model, op)
    reread = Hive.from_bytes(hive.to_bytes())
    assert check_hive(reread) is None
    assert oracles.ours(reread) == model
