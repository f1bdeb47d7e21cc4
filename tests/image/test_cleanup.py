"""Everything attached is released on every exit path: exception, SIGTERM, Ctrl-C and SIGKILL
(private mount namespace, autoclear loop devices, FUSE daemons that die with their parent)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reseal.image.target import OpenOptions, open_target
from reseal.samples.builders import SampleImage

HOLDER = """
import json, signal, sys, time
from reseal.cli import Terminated, _on_sigterm
from reseal.image.target import OpenOptions, open_target
signal.signal(signal.SIGTERM, _on_sigterm)
# Ctrl-C as at a terminal: a shell starts background jobs (a CI script's, a nohup'd make)
# with SIGINT ignored, and Python then leaves it ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    with open_target(sys.argv[1], OpenOptions(writable=True)) as target:
        print(json.dumps({"raw": str(target.raw_path),
                          "devices": [v.device for v in target.volumes if v.device]}), flush=True)
        time.sleep(600)
except (Terminated, KeyboardInterrupt):
    print("released", flush=True)
    sys.exit(3)
"""


def _state(image: Path, workdir: Path, holder: int = 0) -> list[str]:
    """What is still attached: loops, mounts (host namespace) and daemons of this image."""
    found = []
    loops = subprocess.run(["losetup", "-a", "--noheadings", "-O", "NAME,BACK-FILE"],
                           capture_output=True, text=True).stdout
    found += [f"loop {line}" for line in loops.splitlines()
              if str(workdir) in line or str(image) in line]
    with open("/proc/1/mountinfo") as handle:
        found += [f"mount {line.split()[4]}" for line in handle if str(workdir) in line]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name not in (str(holder), str(os.getpid())):
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(workdir) in cmd or str(image) in cmd:
                found.append(f"process {entry.name}: {cmd}")
            elif _holds_open(entry, image):
                found.append(f"process {entry.name} holds {image} open")
    return found


def _holds_open(process: Path, image: Path) -> bool:
    """A process (even one still exiting, whose command line is already gone) with the file open."""
    try:
        fds = list((process / "fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) == str(image):
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize(("sig", "sample"), [
    (signal.SIGKILL, "windows_qcow2"), (signal.SIGKILL, "linux_qcow2"),
    (signal.SIGKILL, "linux_gpt"), (signal.SIGTERM, "windows_qcow2"),
    (signal.SIGINT, "windows_qcow2"),
])
def test_signal_releases_everything(sig: signal.Signals, sample: str, tmp_path: Path,
                                    request: pytest.FixtureRequest) -> None:
    source: SampleImage = request.getfixturevalue(sample)
    image = tmp_path / source.path.name
    shutil.copyfile(source.path, image)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {**os.environ, "TMPDIR": str(workdir), "RESEAL_WORK_DIR": str(workdir)}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(image)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        held = json.loads(line)
        assert len(held["devices"]) == 2  # ESP + NTFS (MSR is not attached) or ESP + ext4
        attached = _state(image, workdir, child.pid)
        assert any(item.startswith("loop") for item in attached) or source.kind != "qcow2"
        if source.kind == "qcow2":
            assert any("qemu-storage-daemon" in item for item in attached)
        if "windows" in sample:
            assert any("ntfs-3g" in item for item in attached)
        assert any("reseal.image.fatfuse" in item for item in attached)
        child.send_signal(sig)
        child.wait(timeout=60)
        if sig != signal.SIGKILL:
            assert child.returncode == 3
        deadline = time.monotonic() + 20
        while _state(image, workdir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _state(image, workdir) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # and the image is free again: not locked, not attached
    with open_target(image) as target:
        assert target.systems


def test_exception_inside_releases_everything(windows_qcow2: SampleImage, tmp_path: Path) -> None:
    image = tmp_path / "win.qcow2"
    shutil.copyfile(windows_qcow2.path, image)
    with pytest.raises(RuntimeError), open_target(image, OpenOptions(writable=True)):
        raise RuntimeError("operation failed")
    assert _state(image, tmp_path) == []
