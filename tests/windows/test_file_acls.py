"""windows-file-acls on a real ntfs-3g mount: descriptors naming local accounts follow the SID."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reseal.image.guestfs import GuestFS
from reseal.image.model import Volume, WindowsSystem
from reseal.image.target import OpenOptions, Target
from reseal.journal import Journal
from reseal.operations import windows_file_acls, windows_machine_sid
from reseal.operations.base import IdentityRequest, OperationContext, RunLog
from reseal.operations.windows_file_acls import read_ntfs_acl
from reseal.windows.hives import commit_hives
from reseal.windows.secdesc import build_descriptor, descriptor_sids
from reseal.windows.sid import Sid

from .helpers import CONFIG, load_builder

NEW_SID = "S-1-5-21-111-222-333"
ACL = "system.ntfs_acl"


@pytest.fixture
def ntfs_mount(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or not shutil.which("ntfs-3g") or not shutil.which("mkntfs"):
        pytest.skip("needs root, ntfs-3g and mkntfs (Debian package ntfs-3g)")
    image = tmp_path / "ntfs.img"
    with open(image, "wb") as handle:
        handle.truncate(24 << 20)
    subprocess.run(["mkntfs", "-F", "-q", "-f", "-L", "Windows", str(image)], check=True,
                   capture_output=True, timeout=60)
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["ntfs-3g", str(image), str(mount)], check=True, capture_output=True, timeout=60)
    try:
        probe = mount / "probe"
        try:
            probe.write_bytes(b"x")
        except OSError:
            pytest.skip("ntfs-3g mounted the volume read-only")
        probe.unlink()
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True, timeout=60)


def _context(mount: Path, shared: dict[str, object], name: str, dry_run: bool,
             journal: Journal | None = None, key: str = "p3") -> OperationContext:
    fs = GuestFS(mount, key=key, dry_run=dry_run, journal=journal)
    volume = Volume(key=key, fstype="ntfs", fs=fs, read_only=False)
    system = WindowsSystem(volume=volume, system_root="/Windows")
    target = Target(source=mount, kind="raw", options=OpenOptions(writable=True, dry_run=dry_run),
                    volumes=[volume], systems=[system])
    return OperationContext(target=target, system=system, request=IdentityRequest(machine_sid=NEW_SID),
                            options=None, log=RunLog(), operation=name, shared=shared)  # type: ignore[arg-type]


def _windows_with_alice(mount: Path) -> tuple[list[Path], Sid, Sid, Sid]:
    """Hives of the fixture machine plus a profile whose ACLs name local accounts."""
    builder = load_builder()
    machine = builder.Machine()
    config = mount / CONFIG
    config.mkdir(parents=True)
    for name, data in builder.build_all(machine).items():
        (config / name).write_bytes(data)
    alice = machine.user_sid(1001)
    admins = Sid.parse("S-1-5-32-544")
    profile = mount / "Users" / "alice"
    profile.mkdir(parents=True)
    private = profile / "notes.txt"
    private.write_bytes(b"hello")
    none_group = machine.user_sid(513)  # the local "None" group, as Windows sets on user files
    descriptor = build_descriptor(alice, none_group, [(0, 0x10, 0x1F01FF, alice),
                                                      (0, 0, 0x1F01FF, admins)])
    os.setxattr(profile, ACL, descriptor)
    os.setxattr(private, ACL, descriptor)
    return [profile, private], alice, none_group, admins


@pytest.mark.parametrize("dry_run", [False, True])
def test_file_acls_follow_sid(ntfs_mount: Path, dry_run: bool) -> None:
    (profile, private), alice, none_group, admins = _windows_with_alice(ntfs_mount)
    config = ntfs_mount / CONFIG
    untouched = read_ntfs_acl(config / "SAM")

    shared: dict[str, object] = {}
    sid_ctx = _context(ntfs_mount, shared, "windows-machine-sid", dry_run)
    windows_machine_sid.apply(sid_ctx)
    acl_ctx = _context(ntfs_mount, shared, "windows-file-acls", dry_run)
    acl_ctx.log = sid_ctx.log
    windows_file_acls.apply(acl_ctx)
    commit_hives(shared)

    new_alice = Sid.parse(f"{NEW_SID}-1001")
    changed = {c.where for c in sid_ctx.log.changes if c.operation == "windows-file-acls"}
    assert changed == {"/Users/alice", "/Users/alice/notes.txt"}
    for path in (profile, private):
        sids = descriptor_sids(read_ntfs_acl(path))
        if dry_run:
            assert sids == [alice, none_group, alice, admins]
        else:
            assert sids == [new_alice, Sid.parse(f"{NEW_SID}-513"), new_alice, admins]
    assert read_ntfs_acl(config / "SAM") == untouched
    assert private.read_bytes() == b"hello"


def test_directory_target_is_skipped_with_a_warning(tmp_path: Path) -> None:
    from reseal.operations.windows_machine_sid import SHARED_SID_KEY, SidChange

    shared: dict[str, object] = {SHARED_SID_KEY: SidChange(Sid.parse("S-1-5-21-1-2-3"),
                                                           Sid.parse(NEW_SID))}
    ctx = _context(tmp_path, shared, "windows-file-acls", False)
    ctx.system.volume.fstype = "dir"
    windows_file_acls.apply(ctx)
    assert any("not an ntfs-3g mount" in w for w in ctx.log.warnings)
    assert not ctx.log.changes


def test_acl_changes_are_journaled_and_undone(ntfs_mount: Path, tmp_path: Path) -> None:
    """Each old descriptor is in the journal; `reseal undo` on the mounted root puts back the
    exact bytes ntfs-3g reports, and the hives byte for byte."""
    from reseal.pipeline.undo import undo_run

    paths, alice, _group, _admins = _windows_with_alice(ntfs_mount)
    config = ntfs_mount / CONFIG
    acls_before = {p: read_ntfs_acl(p) for p in paths}
    hives_before = {p.name: p.read_bytes() for p in config.iterdir() if p.is_file()}
    journal = Journal(tmp_path / "journal")
    shared: dict[str, object] = {}
    sid_ctx = _context(ntfs_mount, shared, "windows-machine-sid", False, journal, key="root")
    windows_machine_sid.apply(sid_ctx)
    windows_file_acls.apply(_context(ntfs_mount, shared, "windows-file-acls", False, journal,
                                     key="root"))
    commit_hives(shared)
    for path in paths:
        assert alice not in descriptor_sids(read_ntfs_acl(path))

    result = undo_run(ntfs_mount, tmp_path / "journal")
    assert result.attributes_restored == 2
    assert {p: read_ntfs_acl(p) for p in paths} == acls_before
    assert {p.name: p.read_bytes() for p in config.iterdir() if p.is_file()} == hives_before
