"""LILO: /etc/lilo.conf device references.

LILO reads its configuration only when `lilo` runs: it then records the kernel's sector list
and command line in its map file and the map's address in the boot sector. Any edit to
lilo.conf therefore needs `lilo` to run again before it takes effect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reseal.linux.devrefs import PARTITION_DEVICE, Rewrite, partition_number

_ROOT_LINE = re.compile(r"^(\s*root\s*=\s*)(\"?)(/dev/[^\s\"]+)(\"?)(.*)$")
_SETTING = re.compile(r"^\s*([A-Za-z_-]+)\s*=\s*\"?([^\s\"]+)\"?")


@dataclass(frozen=True)
class LiloConfig:
    boot: str | None
    roots: tuple[str, ...]
    disks: tuple[str, ...]  # disk= lines
    images: tuple[str, ...]


def parse_lilo(text: str) -> LiloConfig:
    boot: str | None = None
    roots: list[str] = []
    disks: list[str] = []
    images: list[str] = []
    for line in text.splitlines():
        match = _SETTING.match(line.split("#", 1)[0])
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2)
        if key == "boot":
            boot = value
        elif key == "root":
            roots.append(value)
        elif key == "disk":
            disks.append(value)
        elif key == "image":
            images.append(value)
    return LiloConfig(boot, tuple(roots), tuple(disks), tuple(images))


def rewrite_lilo_roots(
    text: str, device_map: dict[str, str], root_spec: str | None
) -> tuple[str, list[Rewrite]]:
    """`root=/dev/sda2` lines -> `root="UUID=..."` (LILO needs the quotes for that form)."""
    lines = text.splitlines(keepends=True)
    done: list[Rewrite] = []
    for number, line in enumerate(lines):
        ending = "\n" if line.endswith("\n") else ""
        match = _ROOT_LINE.match(line.rstrip("\n"))
        if not match or partition_number(match.group(3)) is None:
            continue
        new = device_map.get(match.group(3)) or root_spec
        if not new:
            continue
        lines[number] = f'{match.group(1)}"{new}"{match.group(5)}{ending}'
        done.append(Rewrite(f"root={match.group(3)}", f'root="{new}"'))
    return "".join(lines), done


def is_partition_device(value: str) -> bool:
    return PARTITION_DEVICE.fullmatch(value) is not None


@dataclass(frozen=True)
class LiloImage:
    """One `image=` section: the kernel path, the names LILO's menu knows it by, its initrd."""

    path: str
    label: str  # label= or the path's base name, as LILO names it
    alias: str | None
    initrd: str | None  # the section's initrd=, else the global one


@dataclass(frozen=True)
class LiloSections:
    boot: str | None
    map: str  # map=, default /boot/map
    images: tuple[LiloImage, ...]


def parse_lilo_sections(text: str) -> LiloSections:
    """Global options and `image=` sections (`other=` sections end an image section)."""
    glob: dict[str, str] = {}
    sections: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        match = _SETTING.match(line.split("#", 1)[0])
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2)
        if key in ("image", "other"):
            current = {}
            sections.append((key, current))
            current[key] = value
        elif current is not None:
            current.setdefault(key, value)
        else:
            glob.setdefault(key, value)
    images = []
    for kind, settings in sections:
        if kind != "image":
            continue
        path = settings["image"]
        images.append(LiloImage(path, settings.get("label") or path.rsplit("/", 1)[-1],
                                settings.get("alias"),
                                settings.get("initrd") or glob.get("initrd")))
    return LiloSections(glob.get("boot"), glob.get("map") or "/boot/map", tuple(images))
