"""Make one clone of a master image: a reflink or sparse copy, or a qcow2 overlay.

A clone is built under a temporary name beside its final path and renamed into place only
when complete, so an interrupted batch never leaves a half-copied file that looks finished.
The master is only ever read.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from reseal.errors import BadInput, ResealError
from reseal.pipeline.plan import CloneSpec

PARTIAL_SUFFIX = ".reseal-partial"


def master_format(master: Path, given: str | None = None) -> str:
    """The master's container format ("directory", "raw", "qcow2", ...), from its content."""
    if master.is_dir():
        return "directory"
    from reseal.image.container import detect_format

    found = detect_format(master)
    if given is not None and given != found and not (given == "raw" and found == "block"):
        raise BadInput(f"{master}: batch.master_format says {given} but the file is {found}; "
                       "fix master_format or leave it out")
    return found


def remove_clone(path: Path) -> None:
    """Remove a clone (or a partial one) left by an earlier, interrupted attempt."""
    for candidate in (path, path.with_name(path.name + PARTIAL_SUFFIX)):
        if candidate.is_symlink() or candidate.is_file():
            candidate.unlink()
        elif candidate.is_dir():
            shutil.rmtree(candidate)


def make_clone(spec: CloneSpec, fmt: str) -> None:
    """Create `spec.path` from `spec.master`; replaces what an interrupted attempt left."""
    master = spec.master.resolve()
    if spec.path.resolve() == master:
        raise BadInput(f"{spec.path}: the clone would overwrite the master")
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    remove_clone(spec.path)
    partial = spec.path.with_name(spec.path.name + PARTIAL_SUFFIX)
    try:
        if spec.mode == "overlay":
            if fmt == "directory":
                raise BadInput(f"{master}: overlay clones need a disk image master")
            backing_format = "raw" if fmt == "block" else fmt
            _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(master), "-F", backing_format,
                  str(partial)], "qemu-img create")
        elif fmt == "directory":
            _run(["cp", "-a", "--reflink=auto", "--", str(master), str(partial)], "cp")
        else:
            _run(["cp", "--reflink=auto", "--sparse=always", "--", str(master), str(partial)],
                 "cp")
        os.replace(partial, spec.path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_clone(partial)
        raise


def allocated_bytes(path: Path) -> int:
    """Bytes the clone really uses on the host disk (sparse holes not counted)."""
    if path.is_symlink() or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        total += os.lstat(dirpath).st_blocks * 512
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def overlay_backing(path: Path) -> str | None:
    """The backing file an overlay names (for checks and tests)."""
    proc = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout)
    backing = info.get("backing-filename")
    return str(backing) if backing else None


def _run(argv: list[str], what: str) -> None:
    if shutil.which(argv[0]) is None:
        raise BadInput(f"{argv[0]} is not installed (apt install "
                       f"{'qemu-utils' if argv[0] == 'qemu-img' else 'coreutils'})")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ResealError(f"{what} failed for {argv[-1]}: {detail[-1] if detail else proc.returncode}")
