"""Small Linux roots and images for hostile cases, built in a fraction of a second."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HOSTNAME = "master"
MACHINE_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def write(root: Path, guest: str, data: str | bytes, mode: int = 0o644) -> Path:
    host = root / guest.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    host.write_bytes(data)
    os.chmod(host, mode)
    return host


def linux_root(root: Path, *, ssh: bool = True, hostname: str = HOSTNAME) -> Path:
    """A Debian-like root with the identity files reseal's default operations change."""
    write(root, "/etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
          'VERSION_ID="12"\n')
    write(root, "/etc/hostname", hostname + "\n")
    write(root, "/etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n")
    write(root, "/etc/machine-id", MACHINE_ID + "\n", 0o444)
    write(root, "/var/lib/dbus/machine-id", MACHINE_ID + "\n")
    write(root, "/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n")
    if ssh:
        (root / "etc/ssh").mkdir(parents=True, exist_ok=True)
        key = root / "etc/ssh/ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@master",
                        "-f", str(key)], check=True)
    return root


def ext4_image(root: Path, image: Path, size_mib: int = 24) -> Path:
    """A whole-disk ext4 file system (no partition table) holding `root`."""
    with open(image, "wb") as handle:
        handle.truncate(size_mib << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", str(root),
                    str(image)], check=True, capture_output=True)
    return image


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def ext4_files(image: Path, out: Path) -> Path:
    """Every file of a whole-disk ext4 image, dumped (modes kept) without mounting it: the
    kernel's mount bookkeeping (superblock, journal) aside, what an image holds."""
    out.mkdir(parents=True)
    subprocess.run(["debugfs", "-R", f"rdump -p / {out}", str(image)], check=True,
                   capture_output=True)
    return out
