"""Disk containers: a raw file or block device is used as it is; qcow2, vmdk, vhdx and vhd are
exposed as a raw file by qemu-storage-daemon's FUSE export, so writes land in the image itself
(no converted copy). The format is decided by magic bytes, never by the file name.

qemu is never handed a file name to interpret: `reseal.image.vdisk_header` reads the header
first and refuses every reference to another file the user did not allow, and qemu gets each
file as an explicit node (`driver: file`), the allowed backing files read-only, and
`backing: null` below the last one, so it opens nothing of its own accord.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reseal.errors import BadInput, Refused
from reseal.image.attach import FuseStartError, run, start_fuse, unmount
from reseal.image.vdisk_header import DiskFile, check_container

QEMU_FORMATS = ("qcow2", "vmdk", "vhdx", "vpc")
BACKING_DRIVERS = ("qcow2", "vmdk")  # the formats that take a `backing` option
LOCK_HINT = "Is another process using the image"


def detect_format(path: Path) -> str:
    """"block", "raw", "qcow2", "vmdk", "vhdx" or "vpc" (VHD), from the content."""
    if path.is_block_device():
        return "block"
    if not path.is_file():
        raise BadInput(f"{path}: neither a regular file, a block device nor a directory")
    return content_format(path)


def content_format(path: Path) -> str:
    """The container format by magic bytes alone (a block device may hold a qcow2 too)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        head = os.pread(fd, 512, 0)
        tail = os.pread(fd, 512, size - 512) if size >= 512 else b""
    finally:
        os.close(fd)
    if head[:4] == b"QFI\xfb":
        return "qcow2"
    if head[:4] == b"KDMV" or head[:4] == b"COWD" or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head[:8] == b"vhdxfile":
        return "vhdx"
    if head[:8] == b"conectix" or tail[:8] == b"conectix" or tail[1:9] == b"conectix":
        return "vpc"
    return "raw"


@contextlib.contextmanager
def qemu_raw_export(image: Path, fmt: str, writable: bool, workdir: Path,
                    allowed_backing: Sequence[Path] = ()) -> Iterator[Path]:
    """Yield a path that reads (and, when writable, writes) the image's virtual disk as raw.
    Backing files are opened only when named in `allowed_backing`, and only read."""
    disk = check_container(image, fmt, allowed_backing)
    daemon_binary = shutil.which("qemu-storage-daemon")
    if daemon_binary is None:
        raise BadInput(f"{image}: {fmt} images need qemu-storage-daemon (apt install qemu-utils)")
    # qemu-storage-daemon runs in a mount namespace of its own whose export directory is a
    # shared peer of ours: its FUSE mount shows up here, but our file system mounts (which sit
    # on loop devices backed by that export) never enter its namespace. So after SIGKILL it is
    # never the process that must flush those mounts through itself (a self-deadlock).
    export_dir = workdir / "export"
    export_dir.mkdir()
    run(["mount", "--bind", str(export_dir), str(export_dir)])
    run(["mount", "--make-shared", str(export_dir)])
    export = export_dir / "disk.raw"
    export.touch()
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "unchanged",
        daemon_binary,
        *blockdev_arguments(disk, writable),
        "--export",
        f"type=fuse,id=export0,node-name=disk0,mountpoint={_qemu_escape(str(export))},"
        f"writable={'on' if writable else 'off'}",
    ]
    try:
        try:
            daemon = start_fuse(argv, export, workdir / "qemu-storage-daemon.log",
                                exits_on_unmount=False)
        except FuseStartError as exc:
            raise qemu_open_error(image, exc.output, argv) from None
        try:
            yield export
        finally:
            daemon.stop()
    finally:
        unmount(export_dir)
        with contextlib.suppress(OSError):
            os.unlink(export)


def blockdev_arguments(disk: DiskFile, writable: bool) -> list[str]:
    """`--blockdev` options for the whole chain, bottom first: every file an explicit node,
    backing files read-only, `backing: null` below the last one."""
    chain = disk.chain()
    argv: list[str] = []
    below: str | None = None
    for depth in range(len(chain) - 1, -1, -1):
        node = chain[depth]
        name = "disk0" if depth == 0 else f"backing{depth}"
        read_only = depth > 0 or not writable
        protocol: dict[str, Any] = {
            "driver": "host_device" if node.block_device else "file",
            "node-name": f"{name}-file", "filename": str(node.path), "read-only": read_only,
        }
        fmt: dict[str, Any] = {"driver": node.driver, "node-name": name,
                               "file": f"{name}-file", "read-only": read_only}
        if node.driver in BACKING_DRIVERS:
            fmt["backing"] = below
        argv += ["--blockdev", _json(protocol), "--blockdev", _json(fmt)]
        below = name
    return argv


def qemu_open_error(image: Path, output: str, argv: Sequence[str]) -> BadInput:
    """qemu's own reason for a failed open, without its echo of the option text; "in use"
    only when qemu says another process holds the image."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if any(LOCK_HINT in line for line in lines):
        return Refused(f"{image}: in use by another program (qemu cannot lock it); close it "
                       "first")
    options = [f"{flag} {value}: " for flag, value in zip(argv, argv[1:], strict=False)
               if flag.startswith("--")]
    reasons = []
    for line in lines:
        line = line.removeprefix("qemu-storage-daemon: ")
        for option in options:
            line = line.removeprefix(option)
        reasons.append(line)
    reason = reasons[0] if reasons else "it exited without a message"
    return BadInput(f"{image}: qemu-storage-daemon cannot open it: {reason}")


def _json(options: dict[str, Any]) -> str:
    return json.dumps(options, separators=(",", ":"))


def _qemu_escape(value: str) -> str:
    return value.replace(",", ",,")
