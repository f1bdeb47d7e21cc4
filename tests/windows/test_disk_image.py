"""Generalize a GPT disk image (ESP + MSR + NTFS through ntfs-3g) built by reseal.samples from
the project's fixture hives; then undo it."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from reseal.image.target import open_target
from reseal.operations.base import IdentityRequest
from reseal.operations.windows_leftovers import scan_windows_leftovers
from reseal.pipeline.runner import RunSettings, run_generalize
from reseal.pipeline.undo import undo_run
from reseal.registry import Hive
from reseal.windows.sid import Sid

from .helpers import REPO

NEW_SID = "S-1-5-21-2000000001-2000000002-2000000003"
OPS = ["windows-machine-sid", "windows-file-acls", "windows-computer-name", "windows-clone-ids",
       "windows-hardware-bindings", "windows-leftovers"]
HIVES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY")


def _hive_digests(image: Path) -> dict[str, str]:
    with open_target(image) as target:
        system = target.windows[0]
        out = {}
        for name in HIVES:
            path = system.hive_path(name)
            assert path is not None
            out[name] = hashlib.sha256(system.fs.read_bytes(path)).hexdigest()
        return out


@pytest.mark.slow
@pytest.mark.root
def test_gpt_image_generalize_and_undo(is_root: bool, tmp_path: Path) -> None:
    from reseal.samples import build_windows_gpt

    hives = {name: REPO / "fixtures" / "hives" / name for name in HIVES}
    image = build_windows_gpt(tmp_path / "windows.img", hives).path
    before = _hive_digests(image)
    os.environ["RESEAL_STATE_DIR"] = str(tmp_path / "state")
    result = run_generalize(image, RunSettings(request=IdentityRequest(
        hostname="IMG-01", machine_sid=NEW_SID), only=OPS), run_dir=tmp_path / "run")
    assert not [w for w in result.report.warnings if "leftovers" in w or "ntfs-3g" in w]
    with open_target(image) as target:
        system = target.windows[0]
        partition = system.volume.partition
        assert partition is not None and partition.table == "gpt"
        system_hive = Hive.from_bytes(system.fs.read_bytes(system.hive_path("SYSTEM") or ""))
        mounted = system_hive.key("MountedDevices")
        assert mounted is not None
        assert [v.name for v in mounted.values()] == ["\\DosDevices\\C:"]
        assert mounted.value("\\DosDevices\\C:").raw == (  # type: ignore[union-attr]
            b"DMIO:ID:" + uuid.UUID(partition.guid).bytes_le)
        sam = Hive.from_bytes(system.fs.read_bytes(system.hive_path("SAM") or ""))
        assert sam.key("SAM\\Domains\\Account").value("V").raw[-24:] == Sid.parse(NEW_SID).to_bytes()  # type: ignore[union-attr]
        old = {k: v.old for k, v in result.report.identity.items() if v.old and v.old != v.new}
        assert scan_windows_leftovers(system, old) == []
    assert _hive_digests(image) != before
    assert result.journal_dir is not None
    undo_run(image, result.journal_dir)
    assert _hive_digests(image) == before


@pytest.mark.slow
@pytest.mark.root
def test_mbr_image_system_drive_follows_the_disk(is_root: bool, tmp_path: Path) -> None:
    """On an MBR disk Windows finds C: by the disk signature and the partition's byte offset;
    python-registry (not reseal) reads the value back."""
    import struct

    from Registry import Registry  # python-registry

    from reseal.samples.builders import build_windows_mbr

    hives = {name: REPO / "fixtures" / "hives" / name for name in HIVES}
    image = build_windows_mbr(tmp_path / "windows7.img", hives).path
    signature = 0x5EA1C0DE
    with open(image, "r+b") as disk:  # a clone on a disk with another signature
        disk.seek(440)
        disk.write(struct.pack("<I", signature))
    result = run_generalize(image, RunSettings(request=IdentityRequest(
        hostname="MBR-01", machine_sid=NEW_SID), only=["windows-hardware-bindings"]),
        run_dir=tmp_path / "run")
    assert result.ok, result.report.warnings
    with open_target(image) as target:
        system = target.windows[0]
        partition = system.volume.partition
        assert partition is not None and partition.table == "mbr"
        data = system.fs.read_bytes(system.hive_path("SYSTEM") or "")
    (tmp_path / "SYSTEM").write_bytes(data)
    mounted = Registry.Registry(str(tmp_path / "SYSTEM")).open("MountedDevices")
    drive = mounted.value("\\DosDevices\\C:").value()
    assert drive == struct.pack("<IQ", signature, partition.start)
