"""File-system UUIDs an initrd names, and rewriting them offline.

initramfs-tools keeps the resume device in conf/conf.d/resume (RESUME=UUID=...), cryptsetup
its crypttab in cryptroot/crypttab, dracut host-only images the root and resume in
etc/cmdline.d/*.conf and etc/fstab. If the swap's UUID changes and the initrd keeps the old
one, every boot of the clone waits ~30 s for a device that never appears. References in small
text members are rewritten here; one anywhere else (a member's name, such as a systemd unit
named after the device, or a binary) cannot be, and the caller keeps that UUID instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reseal.errors import ResealError
from reseal.image.guestfs import GuestFS
from reseal.image.model import LinuxSystem
from reseal.linux import devrefs
from reseal.linux.devrefs import Rewrite
from reseal.linux.initrd import Initrd, InitrdError, parse_initrd

MAX_INITRD = 512 << 20
MAX_TEXT_MEMBER = 1 << 20
BOOT_DIRS = ("/boot",)
INITRD_NAME = re.compile(r"^(initrd\.img-.+|initrd-.+\.img|initramfs-.+\.img|initrd\.img|"
                         r"initrd|initramfs\.img|initrd-.+|initramfs-.+)$")
WRITABLE = ("none", "zeros", "gzip", "xz", "lzma", "bzip2", "zstd")


@dataclass
class InitrdScan:
    """What one initrd says about the UUIDs asked for."""

    fs: GuestFS
    path: str
    rewritable: dict[str, list[str]] = field(default_factory=dict)  # uuid -> text members
    fixed: dict[str, list[str]] = field(default_factory=dict)  # uuid -> where, unrewritable
    error: str | None = None  # the initrd could not be read: why

    @property
    def label(self) -> str:
        return self.path if self.fs.key == "root" else f"{self.fs.key}:{self.path}"


def initrd_files(system: LinuxSystem) -> list[tuple[GuestFS, str]]:
    """Every initrd under /boot (links skipped: they point at one of these)."""
    found: list[tuple[GuestFS, str]] = []
    seen: set[str] = set()
    for directory in BOOT_DIRS:
        fs = system.fs
        try:
            names = fs.listdir(directory) if fs.is_dir(directory) else []
        except ResealError:
            continue
        for name in sorted(names):
            path = f"{directory}/{name}"
            if not INITRD_NAME.match(name) or fs.is_symlink(path) or not fs.is_file(path):
                continue
            key = str(fs.resolve(path))
            if key not in seen:
                seen.add(key)
                found.append((fs, path))
    return found


def _forms(uuid: str) -> tuple[str, str]:
    """The UUID as text, and as systemd escapes it in unit names (dev-disk-by\\x2duuid-...)."""
    return uuid.lower(), uuid.lower().replace("-", "\\x2d")


def scan_initrd(fs: GuestFS, path: str, uuids: list[str]) -> InitrdScan:
    scan = InitrdScan(fs, path)
    try:
        if fs.stat(path).st_size > MAX_INITRD:
            raise InitrdError(f"larger than {MAX_INITRD >> 20} MiB")
        initrd = parse_initrd(fs.read_bytes(path, limit=MAX_INITRD))
    except (InitrdError, ResealError, OSError) as exc:
        scan.error = str(exc)
        return scan
    unwritable = {s.compression for s in initrd.segments if s.compression not in WRITABLE}
    forms = {uuid: _forms(uuid) for uuid in uuids}
    for _, member in initrd.members():
        lowered_name = member.name.lower()
        haystack = member.data.lower()  # bytes: ASCII case folding, no decoding of binaries
        for uuid, (plain, escaped) in forms.items():
            if plain in lowered_name or escaped in lowered_name:
                scan.fixed.setdefault(uuid, []).append(f"the name of {member.name}")
            if plain.encode() not in haystack and escaped.encode() not in haystack:
                continue
            text = _text_of(member.data) if member.is_file else None
            if text is not None and _has_token(text, uuid) and not unwritable:
                scan.rewritable.setdefault(uuid, []).append(member.name)
            else:
                what = "text" if text is not None else "binary data"
                scan.fixed.setdefault(uuid, []).append(f"{what} in {member.name}")
    return scan


def _text_of(data: bytes) -> str | None:
    if len(data) > MAX_TEXT_MEMBER or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _has_token(text: str, uuid: str) -> bool:
    return any(m.group(0).lower() == uuid.lower() for m in devrefs.UUID_TOKEN.finditer(text))


def rewrite_initrd(fs: GuestFS, path: str, uuid_map: dict[str, str]) -> list[tuple[str, Rewrite]]:
    """Replace old UUIDs in the initrd's text members; writes (journaled) only on a change.
    Returns (member, rewrite) pairs. Raises InitrdError when it cannot be read or written."""
    try:
        initrd: Initrd = parse_initrd(fs.read_bytes(path, limit=MAX_INITRD))
    except (ResealError, OSError) as exc:
        raise InitrdError(str(exc)) from exc
    done: list[tuple[str, Rewrite]] = []
    for segment_index, member in initrd.members():
        text = _text_of(member.data) if member.is_file else None
        if text is None:
            continue
        new_text, rewrites = devrefs.replace_uuids(text, uuid_map)
        if rewrites:
            initrd.replace_data(segment_index, member.name, new_text.encode("utf-8"))
            done += [(member.name, r) for r in rewrites]
    if done:
        fs.write_bytes(path, initrd.to_bytes())
    return done
