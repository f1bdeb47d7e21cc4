"""reseal's private mount namespaces pin no file system of anyone else.

A tool that mounted a disk before reseal started and unmounts it while reseal runs must find
its device free: no reseal process (reseal itself, its keeper, qemu-storage-daemon, the FUSE
servers) keeps a copy of that mount.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scripts.campaigns.kill import descendants

from reseal.samples.builders import SampleImage

from .conftest import cli_env, copy_sample, start_reseal


def read_mountinfo(table: str = "/proc/thread-self/mountinfo") -> list[MountLine]:
    with open(table) as handle:
        return [MountLine(f[2], f[4].replace("\\040", " ")) for f in
                (line.split() for line in handle) if len(f) > 4]


@dataclass(frozen=True)
class MountLine:
    device: str  # major:minor
    mountpoint: str


def _run(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"
    return done.stdout.strip()


@contextlib.contextmanager
def foreign_file_system(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A partitioned disk on a loop device with an ext4 on its first partition, mounted the
    way an imaging tool would: yields (disk device, partition device, mount point)."""
    disk = tmp_path / "foreign.img"
    with open(disk, "wb") as handle:
        handle.truncate(32 << 20)
    subprocess.run(["sfdisk", "-q", str(disk)], input="start=2048, type=83\n", text=True,
                   check=True, capture_output=True)
    device = _run("losetup", "--find", "--show", str(disk))
    mountpoint = tmp_path / "foreign"
    mountpoint.mkdir()
    try:
        _run("partx", "-u", device)  # adds the partition (or updates a stale one)
        part = f"{device}p1"
        _run("mkfs.ext4", "-q", part)
        _run("mount", part, str(mountpoint))
        yield device, part, mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False)
        subprocess.run(["partx", "-d", device], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def _device_number(device: str) -> str:
    rdev = os.stat(device).st_rdev
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def _own_mounts_visible(pid: int) -> bool:
    """True once reseal's namespace exists and its first volume is mounted."""
    with contextlib.suppress(OSError):
        if os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            return False
        entries = read_mountinfo(f"/proc/{pid}/mountinfo")
        return any(e.mountpoint.endswith("/p3") for e in entries)  # the NTFS volume
    return False


def _holders(pids: list[int], number: str, mountpoint: Path) -> list[str]:
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for entry in read_mountinfo(f"/proc/{pid}/mountinfo"):
                if entry.device == number or entry.mountpoint == str(mountpoint):
                    found.append(f"pid {pid}: {entry.mountpoint}")
    return found


def _wait_until_free(part: str, number: str, seconds: float = 60) -> None:
    """The partition can be opened exclusively (nothing has it mounted). On this shared
    machine another program's namespace made in the meantime may hold a copy for a while:
    wait for it, then fail naming who holds it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.close(os.open(part, os.O_RDONLY | os.O_EXCL))
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
                holders = _holders(pids, number, Path("/nonexistent"))
                names = {h: Path(f"/proc/{h.split()[1].rstrip(':')}/cmdline").read_bytes()[:80]
                         for h in holders if Path(f"/proc/{h.split()[1].rstrip(':')}").exists()}
                raise AssertionError(f"{part} still busy: {names or exc}") from None
        time.sleep(0.2)


def test_generalize_pins_no_foreign_file_system(windows_qcow2: SampleImage,
                                                tmp_path: Path) -> None:
    image = copy_sample(windows_qcow2, tmp_path / "images")
    env = cli_env(tmp_path)
    with foreign_file_system(tmp_path) as (device, part, mountpoint):
        number = _device_number(part)
        run = start_reseal("generalize", str(image), "--hostname", "PIN-TEST", env=env)
        stopped = False
        try:
            deadline = time.monotonic() + 60
            while not _own_mounts_visible(run.pid):
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, "reseal never mounted the NTFS volume"
                time.sleep(0.01)
            os.kill(run.pid, signal.SIGSTOP)  # hold the run in the middle
            stopped = True
            processes = sorted(descendants(run.pid))
            assert any("qemu-storage-daemon" in Path(f"/proc/{p}/cmdline").read_text(
                errors="replace") for p in processes if Path(f"/proc/{p}").exists())
            # the imaging tool is done with its disk: unmount, detach, as it would
            _run("umount", str(mountpoint))
            assert _holders(processes, number, mountpoint) == []
            _wait_until_free(part, number)
            assert subprocess.run(["partx", "-d", device], capture_output=True).returncode == 0
            assert subprocess.run(["losetup", "-d", device], capture_output=True).returncode == 0
        finally:
            if stopped:
                os.kill(run.pid, signal.SIGCONT)
            out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err


def test_in_process_namespace_keeps_what_is_needed_and_is_left(tmp_path: Path) -> None:
    """Inside: the foreign mount is gone, the paths asked for are there. After: the thread is
    back in its own namespace (so it pins nothing either)."""
    from reseal.image.attach import private_mount_namespace

    mine = os.readlink("/proc/thread-self/ns/mnt")
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "file").write_text("here")
    with foreign_file_system(tmp_path) as (_device, part, mountpoint):
        number = _device_number(part)
        with private_mount_namespace([keep]):
            assert os.readlink("/proc/thread-self/ns/mnt") != mine
            assert all(e.device != number for e in read_mountinfo())
            assert (keep / "file").read_text() == "here"
            assert Path("/proc/self/status").exists() and Path("/dev/null").exists()
        assert os.readlink("/proc/thread-self/ns/mnt") == mine
        assert any(e.device == number for e in read_mountinfo())


def test_working_directory_is_kept(tmp_path: Path) -> None:
    from reseal.image.attach import private_mount_namespace

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        with private_mount_namespace():
            assert os.getcwd() == str(tmp_path)
        assert os.getcwd() == str(tmp_path)
    finally:
        os.chdir(here)


HOLDER = """
import sys, time
from reseal.image.target import OpenOptions, open_target
with open_target(sys.argv[1], OpenOptions(writable=True)) as target:
    fs = target.windows[0].fs
    fs.write_bytes("/Windows/reseal-holder.txt", b"written")  # NTFS is read-write now
    print("ready", flush=True)
    time.sleep(600)
"""


def test_a_killed_process_group_leaves_ntfs3g_to_stop_cleanly(windows_qcow2: SampleImage,
                                                              tmp_path: Path) -> None:
    """SIGKILL to reseal's whole process group (an OOM kill of a service's cgroup, a ^\\ in a
    shell) does not reach ntfs-3g, which has a session of its own: it gets SIGTERM when reseal
    is gone and unmounts cleanly; qemu-storage-daemon, which it writes through, is stopped
    after it."""
    import sys

    image = copy_sample(windows_qcow2, tmp_path / "images")
    work = tmp_path / "work"
    env = {**cli_env(tmp_path), "RESEAL_WORK_DIR": str(work)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(image)], env=env, text=True,
                              stdout=subprocess.PIPE, start_new_session=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "ready"
    servers = [p for p in descendants(holder.pid) if p != holder.pid]
    sessions = {p: Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[3]
                for p in servers}
    assert sessions and str(holder.pid) not in sessions.values()
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in servers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in servers)
    logs = list(work.glob("reseal-disk-*/ntfs-3g-*.log"))
    assert logs and all("Unmounting" in log.read_text() for log in logs)
    from reseal.image.target import open_target

    with open_target(image) as target:
        assert target.windows[0].fs.read_bytes("/Windows/reseal-holder.txt") == b"written"


def test_qemu_storage_daemon_of_a_run_killed_as_it_starts_is_stopped(
        linux_qcow2: SampleImage, tmp_path: Path) -> None:
    """qemu-storage-daemon is stopped by the keeper, after the servers that write through it;
    it tells the keeper its pid before it runs, so a kill right after it started leaves none."""
    image = copy_sample(linux_qcow2, tmp_path / "images")
    run = start_reseal("inspect", str(image), env=cli_env(tmp_path))
    deadline = time.monotonic() + 60
    daemon = None
    while daemon is None:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        for pid in descendants(run.pid):
            with contextlib.suppress(OSError):
                if b"qemu-storage-daemon" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    daemon = pid
        time.sleep(0.002)
    run.kill()
    run.communicate()
    deadline = time.monotonic() + 60
    while _alive(daemon) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(daemon)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


LAST_SERVER_THEN_DIE = """
import os, signal, subprocess
from reseal.image import attach
with attach.private_mount_namespace(()):
    server = subprocess.Popen(["sleep", "600"],
                              preexec_fn=attach._last_server_preexec(attach._keeper_pipe()))
    print(server.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # at once: the keeper has not read the pid yet
"""


def test_keeper_stops_a_server_whose_pid_it_had_not_read_when_its_parent_died() -> None:
    """The keeper learns its parent died by a signal that can come before the pid the parent
    just wrote is read from the pipe; it reads the pipe to its end first, and stops that server
    at once (not after waiting for it as one of the namespace's other processes)."""
    import sys

    for _ in range(5):  # the race is the parent's, so try it a few times
        child = subprocess.run([sys.executable, "-c", LAST_SERVER_THEN_DIE],
                               capture_output=True, text=True, timeout=60)
        assert child.returncode == -signal.SIGKILL, child.stderr
        server = int(child.stdout.split()[0])
        deadline = time.monotonic() + 20
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(server):
            os.kill(server, signal.SIGKILL)
        assert not _alive(server)
