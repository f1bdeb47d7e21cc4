"""Disk containers: a raw file or block device is used as it is; qcow2, vmdk, vhdx and vhd are
exposed as a raw file by qemu-storage-daemon's FUSE export, so writes land in the image itself
(no converted copy). The format is decided by magic bytes, never by the file name."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from reseal.errors import BadInput, Refused
from reseal.image.attach import FuseStartError, run, start_fuse, unmount

QEMU_FORMATS = ("qcow2", "vmdk", "vhdx", "vpc")


def detect_format(path: Path) -> str:
    """"block", "raw", "qcow2", "vmdk", "vhdx" or "vpc" (VHD), from the content."""
    if path.is_block_device():
        return "block"
    if not path.is_file():
        raise BadInput(f"{path}: neither a regular file, a block device nor a directory")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(512)
        tail = b""
        if size >= 512:
            handle.seek(size - 512)
            tail = handle.read(512)
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
def qemu_raw_export(image: Path, fmt: str, writable: bool, workdir: Path) -> Iterator[Path]:
    """Yield a path that reads (and, when writable, writes) the image's virtual disk as raw."""
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
    read_only = "off" if writable else "on"
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "unchanged",
        daemon_binary,
        "--blockdev",
        f"driver=file,node-name=file0,filename={_qemu_escape(str(image))},read-only={read_only}",
        "--blockdev",
        f"driver={fmt},node-name=disk0,file=file0,read-only={read_only}",
        "--export",
        f"type=fuse,id=export0,node-name=disk0,mountpoint={_qemu_escape(str(export))},"
        f"writable={'on' if writable else 'off'}",
    ]
    try:
        try:
            daemon = start_fuse(argv, export, workdir / "qemu-storage-daemon.log",
                                exits_on_unmount=False)
        except FuseStartError as exc:
            if "lock" in exc.output.lower():
                raise Refused(
                    f"{image}: in use by another program (qemu holds a lock on it); close it first"
                ) from None
            raise
        try:
            yield export
        finally:
            daemon.stop()
    finally:
        unmount(export_dir)
        with contextlib.suppress(OSError):
            os.unlink(export)


def _qemu_escape(value: str) -> str:
    return value.replace(",", ",,")
