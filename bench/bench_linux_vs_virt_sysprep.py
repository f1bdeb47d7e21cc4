"""reseal vs virt-sysprep on copies of the same Debian image, the same operations, one run.

Operations: hostname, machine-id, ssh host keys, network bindings. Prints both wall times, the
ratio, and the machine-id / D-Bus id each tool leaves (read back from the image afterwards).
Needs root, the cached master image of tests/linux/vm (built on first use) and, for the
virt-sysprep side, Debian's libguestfs-tools with a kernel in /boot (linux-image-amd64).
Usage: .venv/bin/python bench/bench_linux_vs_virt_sysprep.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.linux.vm.qemu import clone, master_image, mounted_root  # noqa: E402

from reseal.image.guestfs import GuestFS  # noqa: E402
from reseal.operations.base import IdentityRequest  # noqa: E402
from reseal.pipeline.runner import RunSettings, run_generalize  # noqa: E402

OPS = ["linux-hostname", "linux-machine-id", "linux-ssh-hostkeys", "linux-net-bindings"]
SYSPREP_OPS = "machine-id,ssh-hostkeys,net-hwaddr,udev-persistent-net,dhcp-client-state"


def ids_in(image: Path, work: Path) -> tuple[str, str]:
    with mounted_root(image, work / "look") as root:
        fs = GuestFS(root, read_only=True)
        machine = fs.read_text("/etc/machine-id").strip() if fs.exists("/etc/machine-id") else "-"
        dbus_path = "/var/lib/dbus/machine-id"
        dbus = fs.read_text(dbus_path).strip() if fs.is_file(dbus_path) else "(absent)"
        if fs.is_symlink(dbus_path):
            dbus = f"link -> {fs.readlink(dbus_path)} ({dbus or 'empty'})"
        return machine or "(empty)", dbus or "(empty)"


def run_reseal(image: Path, work: Path) -> float:
    started = time.monotonic()
    with mounted_root(image, work / "mnt") as root:
        settings = RunSettings(request=IdentityRequest(hostname="bench-r"), only=OPS)
        result = run_generalize(root, settings, run_dir=work / "run")
        assert result.ok
    return time.monotonic() - started


def run_virt_sysprep(image: Path) -> tuple[float | None, str]:
    if shutil.which("virt-sysprep") is None:
        return None, "virt-sysprep is not installed (apt-get install libguestfs-tools)"
    env = dict(os.environ, LIBGUESTFS_BACKEND="direct", LIBGUESTFS_BACKEND_SETTINGS="force_tcg")
    argv = ["virt-sysprep", "--format", "raw", "-a", str(image), "--operations", SYSPREP_OPS,
            "--hostname", "bench-v"]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        return None, (done.stderr or done.stdout).strip().splitlines()[-1][:300]
    return elapsed, ""


def main() -> int:
    master = master_image()
    with tempfile.TemporaryDirectory(prefix="reseal-bench-") as tmp:
        work = Path(tmp)
        reseal_image = clone(master, work / "reseal.raw")
        sysprep_image = clone(master, work / "sysprep.raw")
        master_ids = ids_in(master, work / "m")
        reseal_seconds = run_reseal(reseal_image, work / "r")
        sysprep_seconds, why = run_virt_sysprep(sysprep_image)
        print(f"master       machine-id={master_ids[0]} dbus={master_ids[1]}")
        print(f"reseal       {reseal_seconds:7.2f} s  machine-id/dbus after: "
              f"{' / '.join(ids_in(reseal_image, work / 'r2'))}")
        if sysprep_seconds is None:
            print(f"virt-sysprep could not run: {why}")
            return 1
        print(f"virt-sysprep {sysprep_seconds:7.2f} s  machine-id/dbus after: "
              f"{' / '.join(ids_in(sysprep_image, work / 'v2'))}")
        print(f"ratio        virt-sysprep / reseal = {sysprep_seconds / reseal_seconds:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
