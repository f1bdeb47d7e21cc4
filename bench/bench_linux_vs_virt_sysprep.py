"""reseal vs virt-sysprep on copies of the same Debian image, the same operations, one run.

Operations: hostname, machine-id, ssh host keys, network bindings. Both tools are timed as a
user runs them, whole command lines on the disk image file (reseal's Python start-up, image
attach and release included; virt-sysprep's appliance start-up included). Each round works on
fresh sparse copies of the master that were written back (`sync`) before the clock starts, so
neither tool pays for the copy's page-cache writeback.

reseal runs twice per round:
- `remove` mode: the SSH host keys are deleted for regeneration on first boot. This is exactly
  the work virt-sysprep's `ssh-hostkeys` does, so its ratio is the like-for-like one.
- `generate` mode (reseal's default): new host keys are made offline and their fingerprints put
  in the report; RSA-3072 prime search alone takes 0.5-1.5 s here.

Afterwards each image is read back: host name, machine-id, D-Bus id, and whether host keys
are present (so a tool that skipped an operation shows it). One more virt-sysprep run with its
default operations shows what its own defaults leave.
Needs root, the cached master image of tests/linux/vm (built on first use) and, for the
virt-sysprep side, Debian's libguestfs-tools with a kernel in /boot (linux-image-amd64).
Usage: .venv/bin/python bench/bench_linux_vs_virt_sysprep.py [ROUNDS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.linux.vm.qemu import clone, master_image, mounted_root  # noqa: E402

from reseal.image.guestfs import GuestFS  # noqa: E402

OPS = "linux-hostname,linux-machine-id,linux-ssh-hostkeys,linux-net-bindings"
# virt-sysprep applies --hostname only in its `customize` operation: without it in the list,
# the host name stays the master's and the comparison would be of three operations, not four.
SYSPREP_OPS = ("machine-id,ssh-hostkeys,net-hwaddr,udev-persistent-net,dhcp-client-state,"
               "customize")
RESEAL = REPO / ".venv" / "bin" / "reseal"
ANSWER_FILE = """os: linux
machines:
  - hostname: bench-r
operations:
  options:
    linux-ssh-hostkeys: {{mode: {mode}}}
"""


def state_of(image: Path, work: Path) -> str:
    """machine-id / D-Bus id / host keys as left in the image."""
    with mounted_root(image, work, read_only=True) as root:
        fs = GuestFS(root, read_only=True)
        hostname = fs.read_text("/etc/hostname").strip() if fs.exists("/etc/hostname") else "-"
        machine = fs.read_text("/etc/machine-id").strip() if fs.exists("/etc/machine-id") else "-"
        dbus_path = "/var/lib/dbus/machine-id"
        dbus = fs.read_text(dbus_path).strip() if fs.is_file(dbus_path) else "(absent)"
        if fs.is_symlink(dbus_path):
            dbus = f"link -> {fs.readlink(dbus_path)}"
        keys = [n for n in fs.listdir("/etc/ssh") if n.startswith("ssh_host_") and
                n.endswith("_key")]
        return (f"hostname={hostname} machine-id={machine or '(empty)'} "
                f"dbus={dbus or '(empty)'} host keys={len(keys)}")


def fresh_copy(master: Path, destination: Path) -> Path:
    destination.unlink(missing_ok=True)
    clone(master, destination)
    subprocess.run(["sync"], check=True)
    return destination


def run_reseal(image: Path, work: Path, mode: str) -> float:
    answer = work / f"answer-{mode}.yaml"
    answer.write_text(ANSWER_FILE.format(mode=mode))
    shutil.rmtree(work / f"run-{mode}", ignore_errors=True)
    argv = [str(RESEAL), "generalize", str(image), "--answer-file", str(answer), "--machine",
            "bench-r", "--operations", OPS, "--run-dir", str(work / f"run-{mode}")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"reseal failed: {done.stderr.strip()}")
    return elapsed


def run_virt_sysprep(image: Path, operations: str | None = SYSPREP_OPS) -> tuple[float | None, str]:
    """operations=None: virt-sysprep's default run (all its default operations)."""
    if shutil.which("virt-sysprep") is None:
        return None, "virt-sysprep is not installed (apt-get install libguestfs-tools)"
    env = dict(os.environ, LIBGUESTFS_BACKEND="direct", LIBGUESTFS_BACKEND_SETTINGS="force_tcg")
    argv = ["virt-sysprep", "--format", "raw", "-a", str(image), "--hostname", "bench-v"]
    if operations:
        argv += ["--operations", operations]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        return None, (done.stderr or done.stdout).strip().splitlines()[-1][:300]
    return elapsed, ""


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    master = master_image()
    times: dict[str, list[float]] = {"remove": [], "generate": [], "virt-sysprep": []}
    with tempfile.TemporaryDirectory(prefix="reseal-bench-") as tmp:
        work = Path(tmp)
        run_reseal(fresh_copy(master, work / "warm.raw"), work, "remove")  # byte-compile once
        images = {name: work / f"{name}.raw" for name in times}
        for _ in range(rounds):
            for mode in ("remove", "generate"):
                times[mode].append(run_reseal(fresh_copy(master, images[mode]), work, mode))
            seconds, why = run_virt_sysprep(fresh_copy(master, images["virt-sysprep"]))
            if seconds is None:
                print(f"virt-sysprep could not run: {why}")
                return 1
            times["virt-sysprep"].append(seconds)
        print(f"master                  {state_of(master, work / 'm')}")
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, values in times.items():
            runs = ", ".join(f"{v:.2f}" for v in values)
            label = name if name == "virt-sysprep" else f"reseal ({name} keys)"
            print(f"{label:<23} median {medians[name]:6.2f} s  [{runs}]  after: "
                  f"{state_of(images[name], work / ('s-' + name))}")
        # virt-sysprep's default run, on two copies: does each run write its own machine-id?
        for copy in ("sysprep-default-1", "sysprep-default-2"):
            default_image = fresh_copy(master, work / f"{copy}.raw")
            seconds, why = run_virt_sysprep(default_image, None)
            if seconds is None:
                print(f"virt-sysprep, default operations, could not run: {why}")
                break
            print(f"virt-sysprep, default operations ({copy}): {seconds:.2f} s  after: "
                  f"{state_of(default_image, work / ('s-' + copy))}")
        sysprep = medians["virt-sysprep"]
        print(f"ratio, same work (keys removed):      {sysprep / medians['remove']:.1f}x")
        print(f"ratio, reseal also makes new keys:    {sysprep / medians['generate']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
