"""What a machine needs before it may run reseal for a batch: checked on each cluster worker
before it is given a machine, so an unfit worker is refused once with its reason instead of
failing machine after machine."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

# Host tools the runner may call for any target a batch can hold (Linux and Windows images,
# raw and qcow2): without them a machine fails half-way.
REQUIRED_TOOLS = ("mount", "umount", "unshare", "qemu-img", "qemu-storage-daemon", "ntfs-3g",
                  "e2fsck", "tune2fs", "ssh-keygen")


def worker_problems(readable: Sequence[str], writable: Sequence[str],
                    token: tuple[str, str] | None = None) -> list[str]:
    """Why this machine cannot run reseal for the batch (an empty list: it can).

    `readable`/`writable` are paths the batch uses (master, state directory, output); `token`
    is (path, content) of a file the submitting side wrote into the state directory, which
    proves the worker sees the same storage, not merely a folder of the same name.
    """
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("not running as root (loop devices and mounts need root)")
    if not os.access("/dev/loop-control", os.R_OK | os.W_OK):
        problems.append("no /dev/loop-control (loop devices unavailable)")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        problems.append("no /dev/fuse (qcow2 images and NTFS need FUSE)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        problems.append(f"missing tools: {', '.join(missing)} (run scripts/setup.sh)")
    for path in readable:
        if not os.access(path, os.R_OK):
            problems.append(f"cannot read {path} (is the image store mounted here?)")
    for path in writable:
        if not os.access(path, os.W_OK):
            problems.append(f"cannot write {path} (is the image store mounted read-write?)")
    if token is not None:
        token_path, content = token
        try:
            seen = Path(token_path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            seen = None
        if seen != content:
            problems.append(f"{token_path} is not the batch's state directory seen by the "
                            "submitting host (mount the same storage at the same path)")
    return problems
