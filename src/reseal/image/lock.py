"""One reseal run per target at a time.

Two runs on one image interleave their writes (one run's report then claims keys the image
does not have), so a run that changes a target holds an exclusive lock on it for the whole
run, and a run that only reads it holds a shared one. The lock is taken on what the target
*is*, not on how it was named: a symlink, a second path or a partition of the same disk all
meet the same lock. Locks are flock(2) locks on files under `/run/reseal/locks`; the kernel
drops them when their process ends, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reseal.errors import BadInput, Refused

LOCK_DIR = Path("/run/reseal/locks")


@dataclass
class _Held:
    fd: int
    exclusive: bool
    count: int


_held: dict[str, _Held] = {}
_held_lock = threading.Lock()


def target_key(path: str | Path) -> str:
    """What a target is, independent of its name: `blk-MAJ:MIN` of the whole disk for a block
    device (or one of its partitions), `ino-DEV-INODE` for a file or a directory."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file, block device or directory") from None
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror}; give an image, device or directory reseal "
                       "can open") from None
    if stat.S_ISBLK(st.st_mode):
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return f"blk-{_whole_disk(major, minor)}"
    return f"ino-{st.st_dev}-{st.st_ino}"


def _whole_disk(major: int, minor: int) -> str:
    """The disk a partition belongs to (`MAJ:MIN`), so a partition and its disk share a lock."""
    sys_dev = Path(f"/sys/dev/block/{major}:{minor}")
    with contextlib.suppress(OSError):
        if (sys_dev / "partition").exists():
            return (sys_dev.resolve().parent / "dev").read_text().strip()
    return f"{major}:{minor}"


@contextlib.contextmanager
def target_lock(path: str | Path, *, exclusive: bool = True) -> Iterator[None]:
    """Hold the target's lock (exclusive to change it, shared to read it) or refuse at once.

    Re-entrant within one process: the runner holds it for the whole run and `open_target`
    asks for it again (a shared lock of ours asked for exclusively is converted, and stays
    exclusive until the last holder lets go)."""
    key = target_key(path)
    with _held_lock:
        held = _held.get(key)
        if held is None:
            held = _Held(_open_lock_file(key), False, 0)
            try:
                _flock(held.fd, key, path, exclusive)
            except BaseException:
                os.close(held.fd)
                raise
            held.exclusive = exclusive
            _held[key] = held
        elif exclusive and not held.exclusive:
            _flock(held.fd, key, path, True)
            held.exclusive = True
        held.count += 1
    try:
        yield
    finally:
        with _held_lock:
            held.count -= 1
            if held.count == 0:
                del _held[key]
                os.close(held.fd)


def _open_lock_file(key: str) -> int:
    LOCK_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(LOCK_DIR / key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def _flock(fd: int, key: str, path: str | Path, exclusive: bool) -> None:
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        doing = "changing" if exclusive else "reading"
        raise Refused(f"{path}: another reseal run is using it (lock {LOCK_DIR / key}); wait "
                      f"for it to finish before {doing} it") from None
