"""Hostile inputs: each test builds one evil image, container, tree or answer file, runs the
real CLI in a subprocess under a memory cap and a time bound, and checks what must hold:

- exit 2 and one clear error line (no traceback);
- the host canaries (files in the test's temporary directory that the hostile input points at)
  are neither changed nor read: same bytes, same times (atime where the file system records
  it), and their content appears nowhere in the journal, the report or the image;
- the image itself is untouched (every file's bytes, type and mode).
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import file_sha256

MEMORY_CAP = 1536 << 20  # address space of reseal and everything it starts
TIME_BOUND = 60.0  # seconds; every hostile case must end well within this
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_kib: int  # the CLI process's own peak (VmHWM), not counting the test's fork

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


# Runs the CLI and, at its exit, writes the process's peak resident size (VmHWM, which starts
# afresh at exec) to a file. ru_maxrss from wait4 would count the pytest process the child was
# forked from, which grows over a session.
_LAUNCHER = """\
import atexit, os, runpy, sys
peak_file = os.environ.pop("RESEAL_TEST_PEAK_FILE")
def _report():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(peak_file, "w") as out:
        out.write(kib)
atexit.register(_report)
sys.argv[0] = "reseal"
runpy.run_module("reseal", run_name="__main__", alter_sys=True)
"""


def _child_setup(umask: int | None) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    os.setsid()  # our own process group: a timeout kills everything reseal started
    if umask is not None:
        os.umask(umask)


def run_reseal(args: Sequence[str | Path], *, env: dict[str, str] | None = None,
               timeout: float = TIME_BOUND, cwd: Path | None = None,
               umask: int | None = None) -> CliRun:
    """Run `reseal ARGS` with the memory cap; kill it (and its children) at the time bound."""
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"reseal-hostile-{secrets.token_hex(6)}"
    full_env = {**os.environ, **(env or {}), "RESEAL_TEST_PEAK_FILE": f"{out_path}.peak"}
    started = time.monotonic()
    with open(f"{out_path}.out", "w+b") as out, open(f"{out_path}.err", "w+b") as err:
        try:
            proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, *map(str, args)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=full_env, cwd=cwd,
                                    preexec_fn=lambda: _child_setup(umask))
            timer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
            timer.start()
            try:
                _pid, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.monotonic() - started
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
            peak = Path(f"{out_path}.peak")
            # No report (killed, or os._exit): fall back to wait4's figure, an upper bound.
            max_rss = int(peak.read_text()) if peak.exists() else usage.ru_maxrss
        finally:
            for suffix in (".out", ".err", ".peak"):
                Path(f"{out_path}{suffix}").unlink(missing_ok=True)
    assert seconds < timeout, f"reseal ran into the {timeout:.0f} s bound: {stderr[-400:]}"
    return CliRun(proc.returncode, stdout, stderr, seconds, max_rss)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def assert_refused(run: CliRun, *words: str) -> None:
    """Exit 2, one `reseal: error:` line naming `words`, no traceback."""
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.error_lines()
    assert run.returncode == 2, (run.returncode, run.stderr, run.stdout[-400:])
    assert len(lines) == 1 and lines[0].startswith("reseal: error: "), run.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


# ----------------------------------------------------------------------------- canaries
@dataclass(frozen=True)
class Canary:
    """A host file a hostile input points at. It must stay as it is and unread."""

    path: Path
    token: bytes
    content_digest: str
    mtime_ns: int
    atime_ns: int

    def assert_untouched(self, *, atime: bool = True) -> None:
        st = os.stat(self.path, follow_symlinks=False)  # before our own read below
        assert stat.S_ISREG(st.st_mode)
        assert st.st_mtime_ns == self.mtime_ns, f"{self.path} was written"
        if atime and atime_is_recorded(self.path.parent):
            assert st.st_atime_ns == self.atime_ns, f"{self.path} was read"
        assert file_sha256(self.path) == self.content_digest, f"{self.path} was changed"
        os.utime(self.path, ns=(self.atime_ns, self.mtime_ns))  # undo our own read


def make_canary(directory: Path, name: str = "canary", size: int = 64 << 10) -> Canary:
    """A host file with a unique token repeated through it; its access time set a day
    before its modification time, so that any read updates it (also under relatime)."""
    directory.mkdir(parents=True, exist_ok=True)
    token = f"CANARY-{secrets.token_hex(12)}".encode()
    body = (token + b"\n") * (size // (len(token) + 1) + 1)
    path = directory / name
    path.write_bytes(body[:size])
    return watch_file(path, token)


def watch_file(path: Path, token: bytes) -> Canary:
    """Make an existing host file (a disk image, say) a canary; `token` is unique content
    of it that must not appear anywhere reseal writes."""
    digest = file_sha256(path)  # read first: the access time is set after the last read
    st = os.stat(path)
    os.utime(path, ns=(st.st_mtime_ns - DAY_NS, st.st_mtime_ns))
    st = os.stat(path)
    return Canary(path, token, digest, st.st_mtime_ns, st.st_atime_ns)


_atime_cache: dict[int, bool] = {}


def atime_is_recorded(directory: Path) -> bool:
    """Does this file system update access times on read (relatime or strictatime)?"""
    dev = os.stat(directory).st_dev
    if dev not in _atime_cache:
        probe = directory / f".atime-probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"x")
        st = os.stat(probe)
        os.utime(probe, ns=(st.st_mtime_ns - DAY_NS, st.st_mtime_ns))
        before = os.stat(probe).st_atime_ns
        probe.read_bytes()
        _atime_cache[dev] = os.stat(probe).st_atime_ns != before
        probe.unlink()
    return _atime_cache[dev]


def assert_not_leaked(token: bytes, places: Iterable[Path]) -> None:
    """The canary's content appears in no file below `places` (journal, report, image)."""
    for place in places:
        if not os.path.lexists(place):
            continue
        files = [place] if not place.is_dir() else [
            Path(top) / name for top, _dirs, names in os.walk(place) for name in names]
        for path in files:
            if path.is_symlink() or not path.is_file():
                continue
            assert not _contains(path, token), f"canary content found in {path}"


def _contains(path: Path, token: bytes) -> bool:
    with open(path, "rb") as handle:
        tail = b""
        while chunk := handle.read(1 << 20):
            if token in tail + chunk:
                return True
            tail = chunk[-len(token):]
    return False


# ----------------------------------------------------------------------------- trees
def tree_state(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below `root` (and `root` itself when a file): type, mode, and content
    digest, link text or device number; enough to tell that nothing was changed."""
    state: dict[str, tuple[object, ...]] = {}
    paths = [root]
    if root.is_dir() and not root.is_symlink():
        paths = []
        for top, dirs, names in os.walk(root):
            paths += [Path(top) / n for n in dirs + names]
    for path in paths:
        st = os.lstat(path)
        key = str(path.relative_to(root)) if path != root else "."
        if stat.S_ISREG(st.st_mode):
            state[key] = ("file", st.st_mode, st.st_uid, file_sha256(path))
        elif stat.S_ISLNK(st.st_mode):
            state[key] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            state[key] = ("dir", st.st_mode, st.st_uid)
        else:
            state[key] = ("special", st.st_mode, st.st_rdev)
    return state


@pytest.fixture
def state_env(tmp_path: Path) -> dict[str, str]:
    """RESEAL_STATE_DIR below the test's temporary directory."""
    return {"RESEAL_STATE_DIR": str(tmp_path / "state")}


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("hostile-input tests run reseal as root, as it runs in production")
