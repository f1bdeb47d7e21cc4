"""HiveSet sharing/commit rules and the MountedDevices value for known disk layouts."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from reseal.image.model import DiskLayout, Partition
from reseal.image.target import OpenOptions, open_target
from reseal.journal import Journal, read_entries
from reseal.operations.base import IdentityRequest, OperationContext, RunLog
from reseal.operations.windows_hardware_bindings import system_drive_value
from reseal.windows.hives import commit_hives, hive_set

from .helpers import CONFIG, build_fixture_tree


def _ctx(target, shared: dict[str, object], name: str = "op") -> OperationContext:  # type: ignore[no-untyped-def]
    return OperationContext(target=target, system=target.windows[0], request=IdentityRequest(),
                            options=None, log=RunLog(), operation=name, shared=shared)


def test_hiveset_shared_committed_once_with_logs_emptied(tmp_path: Path) -> None:
    root = build_fixture_tree(tmp_path / "root")
    config = root / CONFIG
    (config / "SYSTEM.LOG1").write_bytes(b"stale log bytes")
    (config / "SYSTEM.LOG2").write_bytes(b"")
    journal_dir = tmp_path / "journal"
    with open_target(root, OpenOptions(writable=True, journal=Journal(journal_dir))) as target:
        shared: dict[str, object] = {}
        first = hive_set(_ctx(target, shared, "a"))
        assert hive_set(_ctx(target, shared, "b")) is first
        system = first.require("SYSTEM")
        assert first.config("DRIVERS") is None
        key = system.key("ControlSet001\\Control\\ComputerName\\ComputerName")
        assert key is not None
        before = (config / "SYSTEM").read_bytes()
        key.set_value("ComputerName", 1, "CHANGED")
        assert (config / "SYSTEM").read_bytes() == before  # edits stay in memory until commit
        first.mark_changed(system)
        assert commit_hives(shared) == ["/Windows/System32/config/SYSTEM"]
        assert commit_hives(shared) == []  # nothing left to write
    assert (config / "SYSTEM").read_bytes() != before
    assert (config / "SYSTEM.LOG1").read_bytes() == b""
    paths = [e.path for e in read_entries(journal_dir)]
    assert paths == ["/Windows/System32/config/SYSTEM", "/Windows/System32/config/SYSTEM.LOG1"]


def test_hiveset_dry_run_edits_in_memory_only(tmp_path: Path) -> None:
    root = build_fixture_tree(tmp_path / "root")
    before = (root / CONFIG / "SAM").read_bytes()
    with open_target(root, OpenOptions(writable=False, dry_run=True)) as target:
        shared: dict[str, object] = {}
        hives = hive_set(_ctx(target, shared))
        sam = hives.require("SAM")
        sam.hive.create_key("SAM\\Extra")
        hives.mark_changed(sam)
        assert commit_hives(shared) == ["/Windows/System32/config/SAM"]
        assert sam.key("SAM\\Extra") is not None
    assert (root / CONFIG / "SAM").read_bytes() == before


class _FakeTarget:
    def __init__(self, layout: DiskLayout | None) -> None:
        self.layout = layout


class _FakeSystem:
    def __init__(self, partition: Partition | None) -> None:
        self.volume = type("V", (), {"partition": partition})()


def test_system_drive_value_for_mbr_and_gpt() -> None:
    mbr_part = Partition(2, 17 << 20, 78 << 20, "0x07", "mbr")
    layout = DiskLayout("mbr", 512, 96 << 20, (mbr_part,), mbr_signature=0xA1B2C3D4)
    ctx = type("C", (), {"target": _FakeTarget(layout), "system": _FakeSystem(mbr_part)})()
    assert system_drive_value(ctx) == struct.pack("<IQ", 0xA1B2C3D4, 17 << 20)  # type: ignore[arg-type]
    guid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    gpt_part = Partition(3, 39 << 20, 88 << 20, "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7", "gpt", guid=guid)
    layout = DiskLayout("gpt", 512, 128 << 20, (gpt_part,))
    ctx = type("C", (), {"target": _FakeTarget(layout), "system": _FakeSystem(gpt_part)})()
    assert system_drive_value(ctx) == b"DMIO:ID:" + uuid.UUID(guid).bytes_le  # type: ignore[arg-type]
    ctx = type("C", (), {"target": _FakeTarget(None), "system": _FakeSystem(None)})()
    assert system_drive_value(ctx) is None  # type: ignore[arg-type]
