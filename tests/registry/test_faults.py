"""Kill or fail the writer at many points: the file is always the old tree or the new one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import oracles
import pytest

from reseal.registry import Hive, RegType


class Injected(Exception):
    pass


def _base(tmp_path: Path) -> Path:
    hive = Hive.new("ROOT")
    for i in range(200):
        hive.create_key(f"K{i:03d}").set_value("v", RegType.REG_BINARY, bytes([i]) * 300)
    path = tmp_path / "H"
    path.write_bytes(hive.to_bytes())
    (tmp_path / "H.LOG1").write_bytes(b"")
    return path


def _edit(hive: Hive) -> None:
    hive.key("K001").set_value("new", RegType.REG_SZ, "changed")  # type: ignore[union-attr]
    hive.delete_key("K002")
    hive.create_key("Fresh\\Key", class_name="C")


def test_injected_failure_at_every_step_of_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _base(tmp_path)
    old_tree = oracles.ours(Hive.open(path))
    expected = Hive.open(path)
    _edit(expected)
    new_tree = oracles.ours(Hive.from_bytes(expected.to_bytes()))
    real = {name: getattr(os, name) for name in ("write", "fsync", "replace", "open")}
    step = 0
    while True:
        step += 1
        for leftover in tmp_path.glob("H*.reseal-orig"):
            leftover.unlink()
        calls = {"n": 0}

        def make(name: str, calls: dict[str, int] = calls, step: int = step):  # type: ignore[no-untyped-def]
            def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
                calls["n"] += 1
                if calls["n"] == step:
                    raise Injected(f"{name} #{step}")
                return real[name](*args, **kwargs)

            return wrapper

        hive = Hive.open(path)
        _edit(hive)
        for name in real:
            monkeypatch.setattr(os, name, make(name))
        try:
            hive.save(path)
            done = True
        except Injected:
            done = False
        finally:
            monkeypatch.undo()
        tree = oracles.ours(Hive.open(path))
        assert tree in (old_tree, new_tree), f"step {step}"
        if done:
            assert tree == new_tree
            break
        if tree == new_tree:  # failed after the rename: start again from the old file
            path = _base(tmp_path)
    assert step > 5


def test_sigkill_during_cli_set(tmp_path: Path) -> None:
    path = _base(tmp_path)
    original = path.read_bytes()
    old_tree = oracles.ours(Hive.open(path))
    outcomes = set()
    for delay in (0.05, 0.15, 0.25, 0.3, 0.35, 0.4, 0.5, 0.7):
        path.write_bytes(original)
        proc = subprocess.Popen(
            [sys.executable, "-m", "reseal", "hive", "set", str(path), "K001", "big", "--type", "REG_BINARY", "--data", "ab" * 30000],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        tree = oracles.ours(Hive.open(path))
        value = tree["K001"].get("big")
        assert value in (None, (3, b"\xab" * 30000))
        without = {k: {n: v for n, v in vals.items() if n != "big"} for k, vals in tree.items()}
        assert without == old_tree
        outcomes.add(value is not None)
    assert outcomes
