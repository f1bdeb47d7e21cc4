"""Container files that name other files: a vmdk extent or parent, a qcow2 backing file or
external data file. reseal reads the header itself and refuses each one (unless the user
allowed that backing file by name), so qemu never opens a host file an image chose."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from tests.hostile.builders import ext4_image, linux_root, qemu_img
from tests.hostile.conftest import (
    Canary,
    assert_not_leaked,
    assert_refused,
    run_reseal,
    tree_state,
    watch_file,
)


@pytest.fixture(autouse=True)
def _needs_qemu() -> None:
    if shutil.which("qemu-img") is None or shutil.which("qemu-storage-daemon") is None:
        pytest.skip("needs qemu-utils and qemu-system-common (scripts/apt-packages.txt)")


def host_disk(tmp_path: Path) -> Canary:
    """A host disk image outside the image's directory: what a hostile container points at.
    Its host name is unique, so a copy of its bytes anywhere is noticed."""
    name = f"canary-{secrets.token_hex(6)}"
    root = linux_root(tmp_path / "host-root", ssh=False, hostname=name)
    (tmp_path / "host").mkdir()
    disk = ext4_image(root, tmp_path / "host" / "disk.img")
    return watch_file(disk, name.encode())


def check_refused(tmp_path: Path, canary: Canary, image_dir: Path, args: list[str | Path],
                  *words: str, env: dict[str, str]) -> None:
    before = tree_state(image_dir)
    run = run_reseal(args, env=env)
    assert_refused(run, *words)
    canary.assert_untouched()
    assert tree_state(image_dir) == before
    assert_not_leaked(canary.token, [tmp_path / "state", image_dir])
    assert run.seconds < 20


def vmdk_descriptor(path: Path, extent: str, *, sectors: int = 49152, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
                    f'createType="monolithicFlat"\n{extra}\n# Extent description\n'
                    f'RW {sectors} FLAT "{extent}" 0\n\nddb.virtualHWVersion = "4"\n')
    return path


@pytest.mark.parametrize("form", ["absolute", "climbing", "symlink", "across-lines"])
def test_vmdk_extent_outside_the_image_directory_is_refused(
        tmp_path: Path, state_env: dict[str, str], form: str) -> None:
    canary = host_disk(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    if form == "absolute":
        vmdk = vmdk_descriptor(images / "evil.vmdk", str(canary.path))
    elif form == "climbing":
        vmdk = vmdk_descriptor(images / "evil.vmdk", "../host/disk.img")
    elif form == "symlink":
        (images / "disk-flat.img").symlink_to(canary.path)
        vmdk = vmdk_descriptor(images / "evil.vmdk", "disk-flat.img")
    else:  # qemu's sscanf reads an extent line across line breaks
        vmdk = images / "evil.vmdk"
        vmdk.write_text('# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\n'
                        f'RW\n49152\nFLAT\n"{canary.path}" 0\n')
    for command in ("generalize", "inspect"):
        extra = ["--hostname", "pwned"] if command == "generalize" else []
        check_refused(tmp_path, canary, images, [command, vmdk, *extra], "vmdk extent",
                      env=state_env)


def test_vmdk_parent_is_refused_unless_allowed(tmp_path: Path, state_env: dict[str, str]
                                               ) -> None:
    canary = host_disk(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    base = canary.path.parent / "base.vmdk"
    qemu_img("convert", "-O", "vmdk", canary.path, base)
    child = images / "child.vmdk"
    qemu_img("create", "-f", "vmdk", "-b", base, "-F", "vmdk", child)
    canary = watch_file(canary.path, canary.token)  # building read it; from here on, nothing
    check_refused(tmp_path, canary, images, ["inspect", child], "backing file",
                  "--allow-backing", env=state_env)
    run = run_reseal(["inspect", child, "--allow-backing", base], env=state_env)
    assert run.returncode == 0, run.stderr
    assert canary.token.decode() in run.stdout  # the allowed parent's host name


def test_qcow2_external_data_file_is_refused(tmp_path: Path, state_env: dict[str, str]) -> None:
    canary = host_disk(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    evil = images / "evil.qcow2"
    own = images / "own-data.raw"
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={own},data_file_raw=on", evil,
             str(os.path.getsize(canary.path)))
    qemu_img("amend", "-f", "qcow2", "-o", f"data_file={canary.path}", evil)
    own.unlink()
    canary = watch_file(canary.path, canary.token)
    for args in (["generalize", evil, "--hostname", "pwned"], ["inspect", evil],
                 ["inspect", evil, "--allow-backing", canary.path]):
        check_refused(tmp_path, canary, images, args, "external data file", env=state_env)


def _backing_image(images: Path, name: str, backing: str, size: int) -> Path:
    evil = images / name
    qemu_img("create", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", evil, str(size))
    return evil


@pytest.mark.parametrize("form", ["absolute", "relative", "json"])
def test_qcow2_backing_file_is_refused(tmp_path: Path, state_env: dict[str, str],
                                       form: str) -> None:
    canary = host_disk(tmp_path)
    images = tmp_path / "images" / "deep"
    images.mkdir(parents=True)
    names = {"absolute": str(canary.path), "relative": "../../host/disk.img",
             "json": f'json:{{"driver":"file","filename":"{canary.path}"}}'}
    evil = _backing_image(images, "evil.qcow2", names[form], os.path.getsize(canary.path))
    words = ("json:",) if form == "json" else ("backing file", "--allow-backing")
    for command in ("generalize", "inspect"):
        extra = ["--hostname", "pwned"] if command == "generalize" else []
        check_refused(tmp_path, canary, images, [command, evil, *extra], *words, env=state_env)
    if form == "json":  # never opened, even when the file it names is allowed
        check_refused(tmp_path, canary, images,
                      ["inspect", evil, "--allow-backing", canary.path], "json:", env=state_env)


def test_qcow2_backing_host_block_device_is_refused(tmp_path: Path, state_env: dict[str, str]
                                                    ) -> None:
    canary = host_disk(tmp_path)
    loop = subprocess.run(["losetup", "--find", "--show", "--read-only", str(canary.path)],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        images = tmp_path / "images"
        images.mkdir()
        evil = _backing_image(images, "evil.qcow2", loop, os.path.getsize(canary.path))
        check_refused(tmp_path, canary, images, ["inspect", evil], loop, "--allow-backing",
                      env=state_env)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


@pytest.mark.parametrize("shape", ["self", "pair"])
def test_backing_loop_is_refused_at_once(tmp_path: Path, state_env: dict[str, str],
                                         shape: str) -> None:
    images = tmp_path / "images"
    images.mkdir()
    a, b = images / "a.qcow2", images / "b.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", a, "16M")
    if shape == "self":
        qemu_img("rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", a)
        allowed = [a]
    else:
        qemu_img("create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b)
        qemu_img("rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a)
        allowed = [a, b]
    before = tree_state(images)
    run = run_reseal(["inspect", a], env=state_env, timeout=30)
    assert_refused(run, "backing file")
    flags = [arg for path in allowed for arg in ("--allow-backing", path)]
    run = run_reseal(["generalize", a, "--hostname", "x", *flags], env=state_env, timeout=30)
    assert_refused(run, "loops")
    assert run.seconds < 10
    assert tree_state(images) == before


def test_allowed_backing_file_is_only_read(tmp_path: Path, state_env: dict[str, str]) -> None:
    """The one way to use an overlay: name its backing file. The run writes the overlay
    only; the backing file keeps every byte; undo needs the same permission."""
    canary = host_disk(tmp_path)  # here a master the user trusts
    overlay = tmp_path / "clone.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", canary.path, "-F", "raw", overlay)
    run = run_reseal(["generalize", overlay, "--hostname", "clone-1", "--operations",
                      "linux-hostname", "--allow-backing", canary.path, "--json"],
                     env=state_env)
    assert run.returncode == 0, run.stderr
    assert hashlib.sha256(canary.path.read_bytes()).hexdigest() == canary.content_digest
    inspect = run_reseal(["inspect", overlay, "--allow-backing", canary.path], env=state_env)
    assert "clone-1" in inspect.stdout
    journal = next((tmp_path / "state" / "runs").iterdir()) / "journal"
    run = run_reseal(["undo", overlay, journal], env=state_env)
    assert_refused(run, "--allow-backing")
    run = run_reseal(["undo", overlay, journal, "--allow-backing", canary.path], env=state_env)
    assert run.returncode == 0, run.stderr
    inspect = run_reseal(["inspect", overlay, "--allow-backing", canary.path], env=state_env)
    assert canary.token.decode() in inspect.stdout


def test_allowing_another_file_does_not_allow_the_named_one(
        tmp_path: Path, state_env: dict[str, str]) -> None:
    canary = host_disk(tmp_path)
    other = tmp_path / "other.img"
    other.write_bytes(b"\0" * 4096)
    images = tmp_path / "images"
    images.mkdir()
    evil = _backing_image(images, "evil.qcow2", str(canary.path), os.path.getsize(canary.path))
    check_refused(tmp_path, canary, images, ["inspect", evil, "--allow-backing", other],
                  "backing file", env=state_env)
    run = run_reseal(["inspect", evil, "--allow-backing", tmp_path / "missing.img"],
                     env=state_env)
    assert_refused(run, "--allow-backing", "missing.img")


def test_vmdk_with_its_extent_beside_it_opens(tmp_path: Path, state_env: dict[str, str]) -> None:
    root = linux_root(tmp_path / "root", ssh=False, hostname="flat-vmdk")
    raw = ext4_image(root, tmp_path / "disk.img")
    images = tmp_path / "images"
    images.mkdir()
    vmdk = images / "disk.vmdk"
    qemu_img("convert", "-O", "vmdk", "-o", "subformat=monolithicFlat", raw, vmdk)
    run = run_reseal(["inspect", vmdk], env=state_env)
    assert run.returncode == 0, run.stderr
    assert "flat-vmdk" in run.stdout


def test_qemu_failure_reports_qemus_reason(tmp_path: Path, state_env: dict[str, str]) -> None:
    """A damaged qcow2 that qemu refuses: its own reason, not 'in use by another program'."""
    image = tmp_path / "damaged.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", image, "16M")
    with open(image, "r+b") as handle:  # L1 table offset -> not cluster aligned
        handle.seek(40)
        handle.write(struct.pack(">Q", 0xFFFFFFFF))
    run = run_reseal(["inspect", image], env=state_env)
    assert_refused(run, "L1 table")
    assert "in use" not in run.stderr and "--blockdev" not in run.stderr


def _vhd_footer_checksum(footer: bytearray) -> int:
    return ~sum(footer[:64] + b"\0\0\0\0" + footer[68:]) & 0xFFFFFFFF


def test_differencing_vhd_is_refused(tmp_path: Path, state_env: dict[str, str]) -> None:
    image = tmp_path / "diff.vhd"
    qemu_img("create", "-q", "-f", "vpc", image, "16M")
    data = bytearray(image.read_bytes())
    for at in (0, len(data) - 512):  # the footer and its copy at the start
        footer = data[at:at + 512]
        struct.pack_into(">I", footer, 60, 4)  # disk type: differencing
        struct.pack_into(">I", footer, 64, _vhd_footer_checksum(footer))
        data[at:at + 512] = footer
    image.write_bytes(bytes(data))
    run = run_reseal(["inspect", image], env=state_env)
    assert_refused(run, "differencing VHD")


def test_differencing_vhdx_is_refused(tmp_path: Path, state_env: dict[str, str]) -> None:
    image = tmp_path / "diff.vhdx"
    qemu_img("create", "-q", "-f", "vhdx", image, "16M")
    data = bytearray(image.read_bytes())
    wanted = bytes.fromhex("3767a1ca36fa434db3b633f0aa44e76b")  # file parameters, bytes_le
    meta = data.index(b"metadata", 192 * 1024)
    count = struct.unpack_from("<H", data, meta + 10)[0]
    for index in range(count):
        entry = meta + 32 + 32 * index
        if data[entry:entry + 16] == wanted:
            offset = struct.unpack_from("<I", data, entry + 16)[0]
            flags_at = meta + offset + 4
            struct.pack_into("<I", data, flags_at, struct.unpack_from("<I", data, flags_at)[0]
                             | 2)
    image.write_bytes(bytes(data))
    run = run_reseal(["inspect", image], env=state_env)
    assert_refused(run, "differencing VHDX")
