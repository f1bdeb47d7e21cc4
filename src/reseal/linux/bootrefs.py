"""Where a Linux system names its file systems, and rewriting all of those places at once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reseal.image.guestfs import GuestFS
from reseal.image.model import LinuxSystem
from reseal.image.target import Target
from reseal.linux import devrefs, fstab, lilo
from reseal.linux.devrefs import Rewrite

GRUB_CONFIGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
LEGACY_CONFIGS = ("/boot/grub/menu.lst", "/boot/grub/grub.conf")
KERNEL_CMDLINE_FILES = ("/etc/default/grub", "/etc/kernel/cmdline",
                        "/etc/initramfs-tools/conf.d/resume")
LOADER_ENTRIES = "/boot/loader/entries"
ESP_MOUNTS = ("/boot/efi", "/efi", "/boot")


@dataclass
class BootFile:
    """A file that names file systems, on the root volume or on the ESP."""

    fs: GuestFS
    path: str
    kind: str  # "fstab", "crypttab", "grub", "legacy", "cmdline", "lilo", "loader"

    @property
    def label(self) -> str:
        return self.path if self.fs.key in ("root",) else f"{self.fs.key}:{self.path}"


@dataclass
class RewriteResult:
    file: BootFile
    rewrites: list[Rewrite] = field(default_factory=list)
    still_unstable: list[str] = field(default_factory=list)


def boot_files(system: LinuxSystem) -> list[BootFile]:
    fs = system.fs
    found: list[BootFile] = []

    def add(owner: GuestFS, path: str, kind: str) -> None:
        if owner.is_file(path):  # a link is followed inside the image by GuestFS
            found.append(BootFile(owner, path, kind))

    add(fs, "/etc/fstab", "fstab")
    add(fs, "/etc/crypttab", "crypttab")
    for path in GRUB_CONFIGS:
        add(fs, path, "grub")
    for path in LEGACY_CONFIGS:
        add(fs, path, "legacy")
    for path in KERNEL_CMDLINE_FILES:
        add(fs, path, "cmdline")
    add(fs, "/etc/lilo.conf", "lilo")
    for name in fs.listdir(LOADER_ENTRIES):
        if name.endswith(".conf"):
            add(fs, f"{LOADER_ENTRIES}/{name}", "loader")
    for owner, top_dir in _esp_roots(system):
        for top, _dirs, files in owner.walk(top_dir) if owner.is_dir(top_dir) else ():
            for name in files:
                if name.lower() == "grub.cfg":
                    add(owner, f"{top.rstrip('/')}/{name}", "grub")
    return _unique(found)


def _esp_roots(system: LinuxSystem) -> list[tuple[GuestFS, str]]:
    """(file system, its EFI directory): a mounted ESP volume, or /boot/efi/EFI on the root."""
    found: list[tuple[GuestFS, str]] = [(system.fs, "/boot/efi/EFI")]
    for mountpoint in ESP_MOUNTS:
        volume = system.extra_volumes.get(mountpoint)
        if volume is not None and volume.fs is not None:
            found.append((volume.fs, "/EFI"))
    return found


def _unique(files: list[BootFile]) -> list[BootFile]:
    seen: set[str] = set()
    out = []
    for item in files:
        key = str(item.fs.resolve(item.path))
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def disk_device_map(target: Target) -> dict[str, str]:
    """Kernel names of the first disk's partitions -> stable spec (UUID=...), from the target."""
    mapping: dict[str, str] = {}
    for volume in target.volumes:
        if volume.partition is None or not volume.uuid:
            continue
        spec = f"UUID={volume.uuid}"
        for alias in devrefs.device_aliases(volume.partition.index):
            mapping[alias] = spec
    return mapping


def rewrite_text(
    text: str, kind: str, uuid_map: dict[str, str], device_map: dict[str, str],
    root_spec: str | None, resume_spec: str | None,
) -> tuple[str, list[Rewrite]]:
    """All rewrites for one file: old UUIDs, then unstable device names."""
    text, done = devrefs.replace_uuids(text, uuid_map)
    if kind == "fstab":
        text, more = fstab.rewrite_device_field(text, device_map, 0)
        done += more
    elif kind == "crypttab":
        text, more = fstab.rewrite_device_field(text, device_map, 1)
        done += more
    else:
        if kind == "lilo":
            text, more = lilo.rewrite_lilo_roots(text, device_map, root_spec)
            done += more
        text, more = devrefs.replace_kernel_devices(text, root_spec, device_map)
        done += more
        if resume_spec:
            text, more = _replace_resume(text, resume_spec)
            done += more
    return text, done


_RESUME_PARAM = re.compile(r"(?<![\w.-])(resume|RESUME)=(/dev/[^\s\"':]+)")


def _replace_resume(text: str, resume_spec: str) -> tuple[str, list[Rewrite]]:
    """`resume=/dev/sda3` (kernel parameter or initramfs-tools RESUME=) -> the fstab swap."""
    done: list[Rewrite] = []

    def swap(match: re.Match[str]) -> str:
        if devrefs.partition_number(match.group(2)) is None:
            return match.group(0)
        done.append(Rewrite(match.group(0), f"{match.group(1)}={resume_spec}"))
        return f"{match.group(1)}={resume_spec}"

    return _RESUME_PARAM.sub(swap, text), done
