"""Linux roots laid out the way each distribution family keeps its identity files."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

MASTER_HOST = "master"
MASTER_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MAC = "52:54:00:ab:cd:ef"
MAC_UPPER = MAC.upper()
NM_UUID = "7d2f6a52-8c0b-4f4e-9d6a-1b2c3d4e5f60"
ROOT_UUID = "1b7e3c6a-2f4d-4e8b-9a1c-0d2e3f4a5b6c"
SWAP_UUID = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@dataclass(frozen=True)
class Layout:
    family: str
    root: Path


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(text)
    os.chmod(host, mode)


def _ssh_keys(root: Path, types: tuple[str, ...] = ("ed25519", "ecdsa")) -> None:
    (root / "etc/ssh").mkdir(parents=True, exist_ok=True)
    for key_type in types:
        key = root / f"etc/ssh/ssh_host_{key_type}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", f"root@{MASTER_HOST}",
                        "-f", str(key)], check=True)


def _common(root: Path, os_release: str) -> None:
    _write(root, "/etc/os-release", os_release)
    _write(root, "/etc/machine-id", MASTER_ID + "\n", 0o444)
    (root / "var/lib/dbus").mkdir(parents=True)
    _write(root, "/var/lib/dbus/machine-id", MASTER_ID + "\n")
    _write(root, "/etc/fstab", f"UUID={ROOT_UUID} / ext4 defaults 0 1\n/dev/sda3 none swap sw 0 0\n")
    _ssh_keys(root)


def debian(root: Path) -> Layout:
    _common(root, 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    _write(root, "/etc/hostname", MASTER_HOST + "\n")
    _write(root, "/etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{MASTER_HOST}.lab.example "
           f"{MASTER_HOST}\n\n# IPv6\n::1 localhost ip6-localhost\n")
    _write(root, "/etc/mailname", f"{MASTER_HOST}.lab.example\n")
    _write(root, "/etc/udev/rules.d/70-persistent-net.rules",
           f'SUBSYSTEM=="net", ACTION=="add", ATTR{{address}}=="{MAC}", NAME="eth0"\n')
    _write(root, "/etc/systemd/network/10-lan.link",
           f"[Match]\nMACAddress={MAC}\n\n[Link]\nName=lan0\n")
    _write(root, "/etc/systemd/network/20-lan.network",
           f"[Match]\nMACAddress={MAC}\n\n[Network]\nDHCP=yes\n")
    _write(root, "/var/lib/dhcp/dhclient.eth0.leases", f"lease {{ hardware ethernet {MAC}; }}\n")
    _write(root, "/etc/default/grub", 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="root=/dev/sda2 '
           'resume=/dev/sda3 quiet"\n')
    _write(root, "/boot/grub/grub.cfg",
           f"search --no-floppy --fs-uuid --set=root {ROOT_UUID}\nmenuentry 'Debian' {{\n"
           "\tlinux /vmlinuz root=/dev/sda2 ro quiet\n\tinitrd /initrd.img\n}\n")
    return Layout("debian", root)


def ubuntu(root: Path) -> Layout:
    _common(root, 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n')
    _write(root, "/etc/hostname", MASTER_HOST + "\n")
    _write(root, "/etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {MASTER_HOST}\n")
    _write(root, "/etc/netplan/50-cloud-init.yaml",
           "network:\n  version: 2\n  ethernets:\n    lan:\n      match:\n"
           f"        macaddress: \"{MAC}\"\n      set-name: lan\n      dhcp4: true\n"
           f"    spoofed:\n      macaddress: {MAC_UPPER}  # fixed\n      dhcp4: false\n", 0o600)
    _write(root, "/etc/NetworkManager/system-connections/Wired.nmconnection",
           f"[connection]\nid=Wired\nuuid={NM_UUID}\ntype=ethernet\n\n[ethernet]\n"
           f"mac-address={MAC_UPPER}\ncloned-mac-address=stable\n\n[ipv4]\nmethod=auto\n", 0o600)
    _write(root, "/var/lib/NetworkManager/secret_key", "0123456789" * 4, 0o600)
    _write(root, "/var/lib/NetworkManager/internal-x-eth0.lease", "ADDRESS=10.0.0.5\n")
    return Layout("ubuntu", root)


def fedora(root: Path) -> Layout:
    _common(root, 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n')
    _write(root, "/etc/hostname", MASTER_HOST + "\n")
    _write(root, "/etc/hosts", "127.0.0.1 localhost localhost.localdomain\n")
    _write(root, "/etc/NetworkManager/system-connections/eth0.nmconnection",
           f"[connection]\nid=eth0\nuuid={NM_UUID}\ntype=ethernet\n\n[ethernet]\n"
           f"mac-address={MAC}\ncloned-mac-address={MAC}\n\n[wifi-security]\npsk=s3cret-psk\n",
           0o600)
    _write(root, "/etc/sysconfig/network-scripts/ifcfg-eth0",
           f'DEVICE=eth0\nHWADDR="{MAC}"\nUUID={NM_UUID}\nBOOTPROTO=dhcp\nONBOOT=yes\n')
    _write(root, "/boot/grub2/grub.cfg", "linux /vmlinuz root=/dev/vda2 ro\n")
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    _write(root, "/usr/lib/systemd/system/sshd-keygen@.service", "[Unit]\n")
    return Layout("fedora", root)


def rhel6(root: Path) -> Layout:
    """RHEL 6 keeps the host name in /etc/sysconfig/network only."""
    _common(root, 'NAME="Red Hat Enterprise Linux Server"\nID="rhel"\nVERSION_ID="6.10"\n')
    _write(root, "/etc/sysconfig/network", f"NETWORKING=yes\nHOSTNAME={MASTER_HOST}.lab.example\n")
    _write(root, "/etc/hosts", f"127.0.0.1 localhost\n10.0.0.5 {MASTER_HOST}.lab.example {MASTER_HOST}\n")
    _write(root, "/boot/grub/grub.conf",
           "default=0\ntitle RHEL\n\troot (hd0,0)\n\tkernel /vmlinuz ro root=/dev/sda2 rhgb\n"
           "\tinitrd /initramfs.img\n")
    return Layout("rhel6", root)


def suse(root: Path) -> Layout:
    _common(root, 'NAME="openSUSE Leap"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\n'
            'VERSION_ID="15.6"\n')
    _write(root, "/etc/hostname", MASTER_HOST + "\n")
    os.symlink("hostname", root / "etc/HOSTNAME")
    _write(root, "/etc/hosts", f"127.0.0.1 localhost\n192.168.1.10 {MASTER_HOST}\n")
    _write(root, "/etc/sysconfig/network/ifcfg-eth0",
           f"BOOTPROTO='dhcp'\nSTARTMODE='auto'\nLLADDR='{MAC}'\n")
    _write(root, "/etc/sysconfig/network/ifcfg-lo", "IPADDR=127.0.0.1\n")
    return Layout("suse", root)


def arch(root: Path) -> Layout:
    _common(root, 'NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n')
    _write(root, "/etc/hostname", MASTER_HOST + "\n")
    _write(root, "/etc/hosts", "127.0.0.1 localhost\n")
    _write(root, "/etc/systemd/network/20-wired.network",
           f"[Match]\nPermanentMACAddress={MAC}\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\n"
           "DUIDRawData=00:00:ab:11:f9:2a\n")
    _write(root, "/boot/loader/entries/arch.conf",
           "title Arch\nlinux /vmlinuz-linux\ninitrd /initramfs-linux.img\n"
           "options root=/dev/nvme0n1p2 rw\n")
    os.remove(root / "var/lib/dbus/machine-id")
    os.symlink("/etc/machine-id", root / "var/lib/dbus/machine-id")
    return Layout("arch", root)


BUILDERS = {"debian": debian, "ubuntu": ubuntu, "fedora": fedora, "rhel6": rhel6, "suse": suse,
            "arch": arch}


def tree_digest(root: Path) -> dict[str, str]:
    """Every file's content hash, mode and owner, and every link's text: "nothing written"."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                out[rel] = (f"{hashlib.sha256(path.read_bytes()).hexdigest()}:{st.st_mode:o}:"
                            f"{st.st_uid}")
            else:
                out[rel] = f"dir:{st.st_mode:o}"
    return out
