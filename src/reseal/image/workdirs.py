"""Work directories (mount points, FUSE exports and logs, newly made SSH keys) that a killed
run cannot leave behind.

They live under one base directory, `$RESEAL_WORK_DIR` or `/run/reseal/work` (never the shared
/tmp, where new private keys have no business), each private (0700) and holding an `owner`
file that its process keeps locked (flock) for as long as it uses the directory. Every new
work directory first removes the ones whose lock it can take: their process is gone (a lock
dies with its process, even after SIGKILL). A directory is made under a hidden name, locked,
and only then renamed into view, so no run ever sees an unlocked directory of a live one.

Older versions made their work directories in the temporary directory (`/tmp/reseal-XXXXXXXX`,
`/tmp/reseal-ssh-XXXXXXXX` with new private keys, `/tmp/reseal-inspect-XXXXXXXX` with hive
copies) and a kill left them there: those are removed too, once they are an hour old and
nothing is mounted below them in any mount namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_BASE = Path("/run/reseal/work")
OWNER = "owner"
PREFIX = "reseal-"
HIDDEN_PREFIX = ".new-"
HIDDEN_GRACE_SECONDS = 60  # a hidden directory older than this was left by a kill
LEGACY_NAME = re.compile(r"^reseal-(?:ssh-|inspect-)?[a-z0-9_]{8}$")  # tempfile.mkdtemp names
LEGACY_GRACE_SECONDS = 3600


def work_base() -> Path:
    return Path(os.environ.get("RESEAL_WORK_DIR") or DEFAULT_BASE)


@contextlib.contextmanager
def work_dir(purpose: str) -> Iterator[Path]:
    """A private work directory for this run, removed at the end (or by the next run)."""
    base = work_base()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    clean_stale(base)
    clean_legacy()
    hidden = Path(tempfile.mkdtemp(prefix=HIDDEN_PREFIX, dir=base))
    fd = os.open(hidden / OWNER, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = base / f"{PREFIX}{purpose}-{hidden.name[len(HIDDEN_PREFIX):]}"
        os.rename(hidden, path)
        try:
            yield path
        finally:
            _remove(path)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            shutil.rmtree(hidden)


def clean_stale(base: Path | None = None) -> list[Path]:
    """Remove the work directories of runs that are gone; returns what was removed."""
    base = base or work_base()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        path = Path(entry.path)
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.startswith(HIDDEN_PREFIX):
            with contextlib.suppress(OSError):
                old = now - entry.stat(follow_symlinks=False).st_mtime > HIDDEN_GRACE_SECONDS
                if old and _take_and_remove(path):
                    removed.append(path)
            continue
        if entry.name.startswith(PREFIX) and _take_and_remove(path):
            removed.append(path)
    return removed


def clean_legacy(directory: Path | None = None) -> list[Path]:
    """Remove work directories older versions left in the temporary directory."""
    directory = directory or Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(directory) if LEGACY_NAME.match(e.name)]
    except OSError:
        return removed
    now = time.time()
    old = []
    for entry in entries:
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False) and st.st_uid == os.geteuid() and \
                    now - st.st_mtime > LEGACY_GRACE_SECONDS:
                old.append(Path(entry.path))
    if not old:
        return removed
    mounted = _mount_points_everywhere()
    for path in old:
        top = os.path.realpath(path)
        if any(point == top or point.startswith(top + "/") for point in mounted):
            continue  # a run of an older version is still using it
        _remove(path)
        if not path.exists():
            removed.append(path)
    return removed


def _mount_points_everywhere() -> set[str]:
    """Mount points of every mount namespace (an older version's runs mount in their own)."""
    points: set[str] = set()
    seen: set[str] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            namespace = os.readlink(f"/proc/{entry.name}/ns/mnt")
            if namespace in seen:
                continue
            with open(f"/proc/{entry.name}/mountinfo") as handle:
                points.update(line.split()[4] for line in handle if len(line.split()) > 4)
            seen.add(namespace)
    return points


def _take_and_remove(path: Path) -> bool:
    """Remove `path` if its owner lock is free (or missing) and nothing is mounted below it."""
    try:
        fd = os.open(path / OWNER, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        fd = -1
    except OSError:
        return False
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # its run is alive
        if _mounted_below(path):
            return False
        _remove(path)
        return not path.exists()
    finally:
        if fd >= 0:
            os.close(fd)


def _mounted_below(path: Path) -> bool:
    top = os.path.realpath(path)
    for table in ("/proc/thread-self/mountinfo", "/proc/1/mountinfo"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4 and (fields[4] == top or fields[4].startswith(top + "/")):
                    return True
    return False


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
