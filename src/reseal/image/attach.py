"""Kernel resources that must never outlive a run: mounts, loop devices, FUSE daemons.

- Mounts: the thread that opens a target moves into a private mount namespace of its own
  before its first mount (and back out when the target is closed), so whatever it mounted
  vanishes with it, even after SIGKILL. That namespace holds no copy of anyone else's mounts
  beyond what reseal needs (see `private_mount_namespace`), so it never keeps another tool's
  file system alive after that tool unmounted it.
- Loop devices: configured with LO_FLAGS_AUTOCLEAR through LOOP_CONFIGURE and held by an open
  descriptor; the kernel detaches them when the last user (us, a mount, a FUSE daemon) closes.
- FUSE daemons (ntfs-3g, reseal.image.fatfuse, qemu-storage-daemon) run in the foreground as our
  children, each in a session of its own (a kill of our process group does not reach them).
  The file-system servers get SIGTERM when we die (PR_SET_PDEATHSIG): they finish the request
  in hand, write what they hold and exit, so a kill never tears an NTFS directory index or a
  FAT in the middle of an update. qemu-storage-daemon, which they write through, is stopped
  after them, by the keeper.
- A small keeper process sits in the namespace and leaves it last: a FUSE daemon that is the
  last process of its namespace would unmount its own fuseblk mount while exiting and wait
  forever for its own answer (FUSE_DESTROY). The keeper waits until every other process of the
  namespace is gone, so the final teardown only meets connections that are already closed;
  then it stops the processes it was asked to stop last (qemu-storage-daemon) and leaves.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from reseal.errors import Refused, ResealError

CLONE_NEWNS = 0x00020000
PR_SET_PDEATHSIG = 1
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_CLR_FD = 0x4C01
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LOOP_INFO64_SIZE = 232
LOOP_CONFIG_SIZE = 4 + 4 + LOOP_INFO64_SIZE + 8 * 8
LOOP_SETTLE_SECONDS = 5  # how long a dying autoclear loop device of an earlier run is awaited

_libc = ctypes.CDLL(None, use_errno=True)
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
# Kept in every private namespace (with everything below them): the kernel's own file systems.
SYSTEM_TREES = ("/proc", "/sys", "/dev")
# Host directories reseal's tools and libraries come from.
TOOL_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass
class _Namespace:
    """The private mount namespace a thread is in, and how to leave it."""

    origin: int  # descriptor of the namespace the thread came from
    cwd: int  # descriptor of the working directory to return to (-1: it was already gone)
    keeper: subprocess.Popen[bytes]
    depth: int = 1


_threads = threading.local()


@contextlib.contextmanager
def private_mount_namespace(keep: Sequence[str | Path] = ()) -> Iterator[None]:
    """Run the body in a private mount namespace of this thread (and of the processes it
    starts), made for it and left at the end.

    The namespace starts as a copy of every mount there is, and a copy keeps a file system
    alive: another tool could then not detach, re-partition or check its own device after
    unmounting it. So every mount is detached (lazily) from the copy except the ones reseal
    needs: `/`, the kernel's trees (/proc, /sys, /dev) and the mounts that hold a path of
    `keep` (the target, the state and work directories, the tools, Python and reseal itself).
    Nested uses share the outer namespace. The mounts made inside vanish with the namespace,
    even when this process is killed (see the module docstring)."""
    current: _Namespace | None = getattr(_threads, "namespace", None)
    if current is not None:
        current.depth += 1
        try:
            yield
        finally:
            current.depth -= 1
        return
    namespace = _enter(keep)
    _threads.namespace = namespace
    try:
        yield
    finally:
        _threads.namespace = None
        _leave(namespace)


def enter_private_mount_namespace() -> None:
    """Move this thread into a private mount namespace for good (for tools that build
    images and never go back); prefer `private_mount_namespace`."""
    if getattr(_threads, "namespace", None) is None:
        _threads.namespace = _enter(())


def _enter(keep: Sequence[str | Path]) -> _Namespace:
    paths = _needed_paths(keep)
    origin = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        cwd = -1
    try:
        if _libc.unshare(CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise ResealError(
                f"cannot create a private mount namespace: {os.strerror(err)}; run reseal as root"
            )
        if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            err = ctypes.get_errno()
            raise ResealError(f"cannot make the mount namespace private: {os.strerror(err)}")
        detach_unneeded_mounts(paths)
        keeper = _start_keeper()
    except BaseException:
        with contextlib.suppress(OSError):
            _setns(origin)
            _return_to(cwd)
        _close(origin, cwd)
        raise
    return _Namespace(origin, cwd, keeper)


def _return_to(cwd: int) -> None:
    if cwd >= 0:
        os.fchdir(cwd)


def _close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def _leave(namespace: _Namespace) -> None:
    """Back to the namespace the thread came from; the keeper ends the private one once the
    processes still in it (FUSE servers that are exiting) are gone."""
    try:
        _setns(namespace.origin)
        _return_to(namespace.cwd)
    except OSError:
        # cannot go back (this thread shares its file-system context): stay, as before
        _threads.namespace = namespace
        return
    finally:
        if _threads.namespace is None:
            _close(namespace.origin, namespace.cwd)
    keeper = namespace.keeper
    with contextlib.suppress(OSError):
        if keeper.stdin is not None:
            keeper.stdin.close()
        keeper.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        keeper.wait(timeout=5)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _needed_paths(keep: Sequence[str | Path]) -> list[str]:
    """Host paths whose mounts a private namespace keeps."""
    import reseal

    candidates: list[str | Path] = [
        *keep, os.getcwd(), tempfile.gettempdir(), sys.prefix, sys.exec_prefix,
        sys.base_prefix, os.path.dirname(sys.executable), Path(reseal.__file__).parent,
        *sys.path, *TOOL_PATHS, *os.environ.get("PATH", "").split(os.pathsep),
    ]
    found: list[str] = []
    for candidate in candidates:
        if not candidate:
            continue
        for path in (os.path.abspath(candidate), os.path.realpath(candidate)):
            if path not in found:
                found.append(path)
    return found


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/<pid>/mountinfo."""

    mount_id: int
    parent_id: int
    device: str  # "major:minor"
    mountpoint: str


def read_mountinfo(table: str = "/proc/thread-self/mountinfo") -> list[MountEntry]:
    entries = []
    with open(table) as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 4:
                entries.append(MountEntry(int(fields[0]), int(fields[1]), fields[2],
                                          _unescape(fields[4])))
    return entries


def _is_under(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def detach_unneeded_mounts(paths: Sequence[str]) -> int:
    """Lazily detach, in this thread's (private) namespace, every mount that holds none of
    `paths` and is not a kernel tree; returns how many."""
    entries = read_mountinfo()
    detached: set[int] = set()
    count = 0
    for entry in sorted(entries, key=lambda e: e.mountpoint.count("/")):
        point = entry.mountpoint
        if entry.parent_id in detached:
            detached.add(entry.mount_id)  # went with its parent
            continue
        if point == "/" or any(_is_under(point, top) for top in SYSTEM_TREES):
            continue
        if any(_is_under(path, point) for path in paths):
            continue  # holds a needed path (or is one of its ancestors)
        if _libc.umount2(os.fsencode(point), MNT_DETACH) == 0:
            count += 1
        detached.add(entry.mount_id)
    return count


KEEPER = """
import os, select, signal, sys, time

last = {}  # pid -> start time: processes to stop once the others of the namespace are gone
partial = [b""]
told_to_leave = []

def started(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]

def gone(pid):
    return last[pid] is None or started(pid) != last[pid]

def take(data):
    lines = (partial[0] + data).split(b"\\n")
    partial[0] = lines.pop()
    for line in lines:
        if line.strip().isdigit():
            last[int(line)] = started(int(line))

def read_pids():
    # Unbuffered reads of the pipe until its end: a pid written just before our parent died
    # is still in the pipe when the death signal comes, and must be read before we decide
    # whom to stop. Once told to leave (or orphaned), what is left is read, bounded.
    drain_until = None
    while drain_until is None or time.monotonic() < drain_until:
        if drain_until is None and (told_to_leave or os.getppid() != parent):
            drain_until = time.monotonic() + 5
        ready, _, _ = select.select([0], [], [], 0.2)
        if ready:
            data = os.read(0, 4096)
            if not data:
                return
            take(data)

def leave():
    me, ns = os.getpid(), os.readlink("/proc/self/ns/mnt")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        others = False
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != me and int(pid) not in last:
                try:
                    others = os.readlink(f"/proc/{pid}/ns/mnt") == ns
                except OSError:
                    continue
                if others:
                    break
        if not others:
            break
        time.sleep(0.05)
    for signum, seconds in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
        for pid in last:
            if not gone(pid):  # the same process, not another that got its pid later
                try:
                    os.kill(pid, signum)
                except OSError:
                    pass
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not all(gone(pid) for pid in last):
            time.sleep(0.05)
    os._exit(0)

parent = int(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: told_to_leave.append(True))
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked from the start
read_pids()  # ends when the process that started us is gone or lets us go
leave()
"""


def _keeper_preexec() -> None:
    # SIGTERM stays blocked until the keeper's handler is in place: a parent that dies while
    # the keeper starts must not kill it before it has stopped what it was told of.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _start_keeper() -> subprocess.Popen[bytes]:
    """The namespace's last process (see the module docstring); its own session, so a kill of
    our process group does not take it down at the same moment as the daemons. Its standard
    input is a pipe from us: pids to stop last, one a line; its end means we are gone."""
    return subprocess.Popen(
        [sys.executable, "-S", "-c", KEEPER, str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_keeper_preexec, start_new_session=True,
    )


def _keeper_pipe() -> int | None:
    """The pipe to this thread's keeper (for pids it is to stop last), if there is one."""
    namespace: _Namespace | None = getattr(_threads, "namespace", None)
    if namespace is None or namespace.keeper.stdin is None:
        return None
    return namespace.keeper.stdin.fileno()


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _server_preexec() -> None:
    """A file-system server: its own session, SIGTERM (a clean stop) when we die."""
    os.setsid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _last_server_preexec(keeper: int) -> Callable[[], None]:
    """A server the others write through: its own session; it tells the keeper its pid
    before it runs (so no kill of ours can come between), and the keeper stops it last."""
    def preexec() -> None:
        os.setsid()
        os.write(keeper, f"{os.getpid()}\n".encode())

    return preexec


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a host tool (never one from the image) and capture its output; it gets no input,
    so a tool that asks a question (tune2fs, mkfs) takes its default instead of waiting."""
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, preexec_fn=_die_with_parent,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ResealError(f"{argv[0]} failed: {detail[-1] if detail else proc.returncode}")
    return proc


# ------------------------------------------------------------------------- loop devices
@dataclass
class LoopDevice:
    path: str
    fd: int

    def close(self) -> None:
        """Drop our reference; autoclear detaches the device once nobody uses it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextlib.contextmanager
def loop_device(backing: Path, offset: int, size: int, read_only: bool) -> Iterator[LoopDevice]:
    device = attach_loop(backing, offset, size, read_only)
    try:
        yield device
    finally:
        device.close()


def attach_loop(backing: Path, offset: int, size: int, read_only: bool) -> LoopDevice:
    try:
        backing_fd = os.open(backing, os.O_RDONLY if read_only else os.O_RDWR)
    except OSError as exc:
        how = "reading" if read_only else "writing"
        raise ResealError(f"{backing}: cannot open it for {how}: {exc.strerror}") from None
    try:
        control = os.open("/dev/loop-control", os.O_RDWR)
        try:
            for _ in range(32):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                path = f"/dev/loop{number}"
                try:
                    loop_fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
                except FileNotFoundError:
                    time.sleep(0.05)
                    continue
                config = _loop_config(backing_fd, backing, offset, size, read_only)
                try:
                    fcntl.ioctl(loop_fd, LOOP_CONFIGURE, config)
                except OSError as exc:
                    os.close(loop_fd)
                    if exc.errno == errno.EBUSY:
                        continue  # another process took it between GET_FREE and CONFIGURE
                    raise ResealError(f"cannot set up a loop device for {backing}: {exc}") from exc
                return LoopDevice(path=path, fd=loop_fd)
        finally:
            os.close(control)
    finally:
        os.close(backing_fd)
    raise ResealError(f"no free loop device for {backing}")


def _loop_config(fd: int, backing: Path, offset: int, size: int, read_only: bool) -> bytes:
    flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if read_only else 0)
    name = str(backing).encode()[:63].ljust(64, b"\x00")
    info = struct.pack("<QQQQQIIII", 0, 0, 0, offset, size, 0, 0, 0, flags) + name
    info = info.ljust(LOOP_INFO64_SIZE, b"\x00")
    return struct.pack("<II", fd, 0) + info + b"\x00" * 64


def loops_backed_by(path: Path) -> list[str]:
    """Loop devices (anyone's) whose backing file is `path`."""
    proc = run(["losetup", "--noheadings", "--output", "NAME", "-j", str(path)], check=False)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def _autoclear(device: str) -> bool:
    with contextlib.suppress(OSError):
        name = os.path.basename(device)
        return Path(f"/sys/block/{name}/loop/autoclear").read_text().strip() == "1"
    return False


def mount_points_of(device: str) -> list[str]:
    """Where a block device is mounted, in the host's namespace or ours."""
    try:
        st = os.stat(device)
    except OSError:
        return []
    wanted = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    found: list[str] = []
    for table in ("/proc/1/mountinfo", "/proc/self/mountinfo"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4 and fields[2] == wanted and fields[4] not in found:
                    found.append(fields[4])
    return found


def refuse_if_in_use(path: Path, settle_seconds: float = LOOP_SETTLE_SECONDS) -> None:
    """Refuse an image that another loop device or mount already uses.

    A loop device with autoclear that nothing mounts is going away: the kernel detaches it
    after its last user closed it, asynchronously, so a run that starts right after another
    one ended (or was killed) may still see it for a moment; that is waited for, bounded."""
    deadline = time.monotonic() + settle_seconds
    while True:
        going = False
        for device in loops_backed_by(path):
            where = mount_points_of(device)
            if where:
                raise Refused(
                    f"{path}: already mounted at {where[0]} through {device}; unmount it and "
                    f"detach the loop device (losetup -d {device}) first"
                )
            if _autoclear(device) and time.monotonic() < deadline:
                going = True
                continue
            raise Refused(
                f"{path}: already attached as {device}; detach it first (losetup -d {device})"
            )
        if not going:
            break
        time.sleep(0.05)
    if path.is_block_device():
        name = os.path.basename(os.path.realpath(path))
        devices = [str(path)] + [f"/dev/{p.name}" for p in Path(f"/sys/class/block/{name}").glob(
            f"{name}*") if (p / "partition").exists()]
        for device in devices:
            where = mount_points_of(device)
            if where:
                raise Refused(f"{device}: mounted at {where[0]}; unmount it first")


# ------------------------------------------------------------------------- mounts
def mount_options_of(mountpoint: Path) -> list[str] | None:
    """Per-mount options of `mountpoint` in our namespace (None when not mounted)."""
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as handle:
        found = None
        for line in handle:
            fields = line.split()
            if len(fields) > 5 and _unescape(fields[4]) == target:
                found = fields[5].split(",")
        return found


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace(
        "\\134", "\\"
    )


def unmount(mountpoint: Path) -> None:
    """Unmount, lazily if busy; never raises (used on every exit path)."""
    if mount_options_of(mountpoint) is None:
        return
    proc = run(["umount", str(mountpoint)], check=False)
    if proc.returncode != 0:
        run(["umount", "-l", str(mountpoint)], check=False)


def unmount_strict(mountpoint: Path) -> None:
    """Unmount now or raise: a lazy unmount would leave the file system live in the kernel,
    and the tools that need it offline (tune2fs, xfs_admin) must never meet a live one."""
    if mount_options_of(mountpoint) is None:
        return
    proc = run(["umount", str(mountpoint)], check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ResealError(f"cannot unmount {mountpoint}: {detail[-1] if detail else 'busy'}; "
                          "something still uses a file on it")


@dataclass
class FuseDaemon:
    """A FUSE server running in the foreground as our child, mounted at `mountpoint`."""

    process: subprocess.Popen[bytes]
    mountpoint: Path
    log: Path
    exits_on_unmount: bool = True  # ntfs-3g and the FAT server flush and exit by themselves

    def stop(self, timeout: float = 20) -> None:
        unmount(self.mountpoint)
        if self.exits_on_unmount:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        unmount(self.mountpoint)


def start_fuse(argv: Sequence[str], mountpoint: Path, log: Path, *, timeout: float = 30,
               exits_on_unmount: bool = True, stop_last_of_all: bool = False) -> FuseDaemon:
    """Start a foreground FUSE server and wait until its mount is visible (or it failed).

    If we die, a file-system server is stopped cleanly (SIGTERM) at once; with
    `stop_last_of_all` (a server the others write through) the namespace's keeper stops it
    once the others are gone (see the module docstring)."""
    keeper = _keeper_pipe() if stop_last_of_all else None
    preexec = _last_server_preexec(keeper) if keeper is not None else _server_preexec
    with open(log, "wb") as out:
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=preexec,
        )
    daemon = FuseDaemon(process, mountpoint, log, exits_on_unmount)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mount_options_of(mountpoint) is not None:
            return daemon
        if process.poll() is not None:
            break
        time.sleep(0.02)
    daemon.stop()
    text = log.read_text(errors="replace").strip().splitlines()
    keywords = ("fail", "error", "refuse", "denied", "unclean", "hibernat", "cannot", "lock")
    message = next((line.strip() for line in text if any(k in line.lower() for k in keywords)),
                   next((line.strip() for line in reversed(text) if line.strip()), "no output"))
    raise FuseStartError(argv[0], message, "\n".join(text))


class FuseStartError(ResealError):
    def __init__(self, program: str, message: str, output: str) -> None:
        super().__init__(f"{os.path.basename(program)} failed: {message}")
        self.output = output
