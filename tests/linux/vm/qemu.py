"""Helpers for the boot test: the cached master image, attaching a clone, booting it under QEMU."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("build_master.sh")
CACHE_DIR = Path.home() / ".cache" / "reseal-tests"
PROBE = re.compile(r"RESEAL-PROBE (\S+?)=(\S*)")
NEEDED_TOOLS = ("debootstrap", "grub-mkimage", "qemu-system-x86_64", "sfdisk", "partx", "losetup",
                "mkfs.ext4", "e2fsck")
RELEASE_WAIT = 60.0  # seconds a busy device is waited for before a test fails


def missing_tools() -> list[str]:
    return [tool for tool in NEEDED_TOOLS if shutil.which(tool) is None]


def master_image() -> Path:
    """The Debian master image, built once per version of the build script and cached."""
    key = hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()[:16]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    image = CACHE_DIR / f"debian12-master-{key}.raw"
    with open(CACHE_DIR / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image.exists():
            for stale in CACHE_DIR.glob("debian12-master-*.raw"):
                stale.unlink()  # built by an older build script: 2 GiB nobody reads again
            subprocess.run(["bash", str(BUILD_SCRIPT), str(image)], check=True, timeout=900)
    return image


def guest_file(image: Path, path: str, partition_start: int = 2048 * 512) -> bytes:
    """A file of the image's root file system, read by debugfs (no mount, no loop device)."""
    done = subprocess.run(["debugfs", "-R", f"cat {path}", f"{image}?offset={partition_start}"],
                          capture_output=True, check=True)
    return done.stdout


def clone(master: Path, destination: Path) -> Path:
    subprocess.run(["cp", "--reflink=auto", "--sparse=always", str(master), str(destination)],
                   check=True)
    return destination


@contextlib.contextmanager
def mounted_root(image: Path, mountpoint: Path, read_only: bool = False) -> Iterator[Path]:
    """Attach partition 1 of `image` and mount it; everything released on exit (a busy device
    is waited for, bounded, then the test fails with the reason)."""
    loop = subprocess.run(["losetup", "--show", "-f", *(["-r"] if read_only else []), str(image)],
                          capture_output=True, text=True, check=True).stdout.strip()
    mounted = False
    try:
        # -u, not -a: a loop device detached without `partx -d` keeps its old partitions,
        # which the next user of that device gets; -u makes them this image's
        subprocess.run(["partx", "-u", loop], check=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        options = ["-o", "ro,noload"] if read_only else []
        subprocess.run(["mount", *options, f"{loop}p1", str(mountpoint)], check=True)
        mounted = True
        yield mountpoint
    finally:
        if mounted:
            release(["umount", str(mountpoint)], f"{loop}p1")
        if Path(f"{loop}p1").exists():
            release(["partx", "-d", loop], f"{loop}p1")
        release(["losetup", "-d", loop], loop)


def release(argv: list[str], device: str, seconds: float = RELEASE_WAIT) -> None:
    """Run a release step (umount, partx -d, losetup -d) until it succeeds or `seconds` pass.

    Another process's private mount namespace, made while `device` was mounted, holds a copy of
    that mount and keeps the device busy until the namespace ends (another test's reseal run):
    that is waited for. Past the bound, the failure names the step's error and the holders."""
    deadline = time.monotonic() + seconds
    while True:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if time.monotonic() >= deadline:
            holders = mount_holders(device)
            held = f"; mounted in the namespaces of pids {', '.join(holders)}" if holders else ""
            raise RuntimeError(f"{' '.join(argv)} still fails after {seconds:.0f} s: "
                               f"{(done.stderr or done.stdout).strip()}{held}")
        time.sleep(0.5)


def mount_holders(device: str, limit: int = 8) -> list[str]:
    """Pids whose mount namespace has a mount of `device` (by major:minor), at most `limit`."""
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return []
    wanted = f" {os.major(rdev)}:{os.minor(rdev)} "
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "mountinfo").read_text():
                found.append(entry.name)
        except OSError:
            continue
        if len(found) >= limit:
            break
    return found


@dataclass
class BootResult:
    probe: dict[str, str] = field(default_factory=dict)
    console: str = ""
    seconds: float = 0.0


def boot(image: Path, timeout: float = 300, mac: str | None = None) -> BootResult:
    """Boot `image` under QEMU (TCG) and collect the probe lines from the serial console.

    With `mac`, the machine has one virtio NIC with that MAC on QEMU's user-mode network
    with restrict=on: its built-in DHCP server answers, and no packet leaves the VM."""
    nic = (["-nic", f"user,restrict=on,model=virtio-net-pci,mac={mac}"] if mac
           else ["-nic", "none"])
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "768", "-smp", "1", "-no-reboot",
            "-display", "none", "-monitor", "none", "-serial", "stdio", *nic,
            "-drive", f"file={image},format=raw,if=virtio"]
    started = time.monotonic()
    result = BootResult()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    chunks: list[bytes] = []
    try:
        while time.monotonic() - started < timeout:
            if not selector.select(timeout=1.0):
                if process.poll() is not None:
                    break
                continue
            data = process.stdout.read()
            if not data:
                if process.poll() is not None:
                    break
                continue
            chunks.append(data)
            if b"RESEAL-PROBE done" in b"".join(chunks[-4:]):
                break
    finally:
        process.kill()
        process.wait()
        selector.close()
        process.stdout.close()
    result.seconds = time.monotonic() - started
    result.console = b"".join(chunks).decode("utf-8", errors="replace")
    result.probe = {m.group(1): m.group(2) for m in PROBE.finditer(result.console)}
    if "RESEAL-PROBE done" in result.console:  # the probe's last line, which has no value
        result.probe["done"] = "yes"
    return result
