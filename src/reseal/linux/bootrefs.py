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


def disk_partuuid_map(target: Target) -> dict[str, str]:
    """Kernel names of the first disk's partitions -> PARTUUID= (what a kernel without an
    initrd resolves by itself): the GPT partition GUID, or for MBR the disk signature and
    the partition number ("1a2b3c4d-02")."""
    layout = target.layout
    mapping: dict[str, str] = {}
    if layout is None:
        return mapping
    for part in layout.partitions:
        if part.table == "gpt" and part.guid:
            spec = f"PARTUUID={part.guid.lower()}"
        elif part.table == "mbr" and layout.mbr_signature:
            spec = f"PARTUUID={layout.mbr_signature:08x}-{part.index:02x}"
        else:
            continue
        for alias in devrefs.device_aliases(part.index):
            mapping[alias] = spec
    return mapping


def rewrite_text(
    text: str, kind: str, uuid_map: dict[str, str], device_map: dict[str, str],
    root_spec: str | None, resume_spec: str | None, *,
    partuuid_map: dict[str, str] | None = None,
) -> tuple[str, list[Rewrite]]:
    """All rewrites for one file: old UUIDs, then unstable device names. Boot entries
    without an initrd get PARTUUID= forms (from `partuuid_map`), as GRUB's 10_linux does:
    a kernel alone cannot find a file system by UUID; with no map they are left alone."""
    text, done = devrefs.replace_uuids(text, uuid_map)
    if kind == "fstab":
        text, more = fstab.rewrite_device_field(text, device_map, 0)
        done += more
    elif kind == "crypttab":
        text, more = fstab.rewrite_device_field(text, device_map, 1)
        done += more
    else:
        if kind == "lilo":
            if partuuid_map:
                text, more = lilo.kernel_only_roots(text, partuuid_map)
                done += more
            text, more = lilo.rewrite_lilo_roots(text, device_map, root_spec)
            done += more
        pieces = []
        for piece, kernel_only in boot_entries(text, kind):
            if kernel_only:
                piece, more = devrefs.replace_kernel_devices(piece, None, partuuid_map or {})
            else:
                piece, more = devrefs.replace_kernel_devices(piece, root_spec, device_map)
            pieces.append(piece)
            done += more
        text = "".join(pieces)
        if resume_spec:
            text, more = _replace_resume(text, resume_spec)
            done += more
    return text, done


_GRUB_ENTRY = re.compile(r"^\s*menuentry\b")
_LEGACY_TITLE = re.compile(r"^\s*title\b")
_INITRD_LINE = re.compile(r"^\s*(initrd\w*|module\w*)\b")


def boot_entries(text: str, kind: str) -> list[tuple[str, bool]]:
    """The text cut into (piece, is a boot entry without an initrd); joined, the pieces are
    the text again. GRUB 2: menuentry blocks; GRUB legacy: title sections; a systemd-boot
    entry: the whole file. Other kinds are one piece."""
    lines = text.splitlines(keepends=True)
    if kind == "loader":
        return [(text, not any(_INITRD_LINE.match(line) for line in lines))]
    if kind == "legacy":
        starts = [n for n, line in enumerate(lines) if _LEGACY_TITLE.match(line)]
        bounds = [(start, starts[i + 1] if i + 1 < len(starts) else len(lines))
                  for i, start in enumerate(starts)]
    elif kind == "grub":
        bounds = _grub_blocks(lines)
    else:
        return [(text, False)]
    pieces: list[tuple[str, bool]] = []
    at = 0
    for start, end in bounds:
        if start > at:
            pieces.append(("".join(lines[at:start]), False))
        block = lines[start:end]
        pieces.append(("".join(block), not any(_INITRD_LINE.match(line) for line in block)))
        at = end
    if at < len(lines):
        pieces.append(("".join(lines[at:]), False))
    return pieces


def _grub_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """Line spans of menuentry blocks (braces counted outside quotes and comments)."""
    blocks = []
    n = 0
    while n < len(lines):
        if not _GRUB_ENTRY.match(lines[n]):
            n += 1
            continue
        depth, end = 0, n
        for end in range(n, len(lines)):
            depth += _brace_delta(lines[end])
            if depth <= 0 and end > n or depth <= 0 and "{" in lines[end]:
                break
        blocks.append((n, end + 1))
        n = end + 1
    return blocks


def _brace_delta(line: str) -> int:
    delta, quote = 0, ""
    for char in line:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            break
        elif char == "{":
            delta += 1
        elif char == "}":
            delta -= 1
    return delta


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
