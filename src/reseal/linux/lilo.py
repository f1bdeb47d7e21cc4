"""LILO: /etc/lilo.conf device references.

LILO reads its configuration only when `lilo` runs: it then records the kernel's sector list
and command line in its map file and the map's address in the boot sector. Any edit to
lilo.conf therefore needs `lilo` to run again before it takes effect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
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


def settings_of(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(key in lower case, value) of every `key = value` line, comments dropped."""
    for line in lines:
        match = _SETTING.match(line.split("#", 1)[0])
        if match:
            yield match.group(1).lower(), match.group(2)


def parse_lilo(text: str) -> LiloConfig:
    boot: str | None = None
    roots: list[str] = []
    disks: list[str] = []
    images: list[str] = []
    for key, value in settings_of(text.splitlines()):
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


_APPEND_LINE = re.compile(r'^(\s*)append\s*=\s*(?:"([^"]*)"|(\S+))', re.IGNORECASE)
_SECTION_START = re.compile(r"^\s*(image|other)\s*=", re.IGNORECASE)


def kernel_only_roots(text: str, partuuid_map: dict[str, str]) -> tuple[str, list[Rewrite]]:
    """image= sections without an initrd: a kernel alone cannot resolve root=UUID=, so their
    root device goes to the kernel as root=PARTUUID= (which it resolves itself), through the
    section's append= (LILO passes root= values other than UUID=/LABEL= as device numbers).
    The section's own root= line goes; the global append it replaced is kept in it."""
    lines = text.splitlines(keepends=True)
    starts = [n for n, line in enumerate(lines) if _SECTION_START.match(line.split("#", 1)[0])]
    glob = lines[:starts[0]] if starts else lines
    global_settings = _settings(glob)
    global_append = _append_value(glob)
    done: list[Rewrite] = []
    edits: list[tuple[int, int, list[str]]] = []  # (start, end, new lines) per section
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(lines)
        section = lines[start:end]
        settings = _settings(section)
        if "image" not in settings:
            continue
        if settings.get("initrd") or global_settings.get("initrd"):
            continue
        device = settings.get("root") or global_settings.get("root")
        spec = partuuid_map.get(device or "")
        if not spec:
            continue
        own_append = _append_value(section)
        rest = own_append if own_append is not None else (global_append or "")
        value = f"root={spec} {rest}".strip()
        new_section = [line for line in section
                       if not re.match(r"^\s*root\s*=", line.split("#", 1)[0], re.IGNORECASE)]
        second = section[1] if len(section) > 1 else ""
        indent = second[:len(second) - len(second.lstrip())] or "  "
        appended = False
        for index, line in enumerate(new_section):
            match = _APPEND_LINE.match(line)
            if match:
                ending = "\n" if line.endswith("\n") else ""
                new_section[index] = f'{match.group(1)}append="{value}"{ending}'
                appended = True
        if not appended:
            head = new_section[0] if new_section[0].endswith("\n") else new_section[0] + "\n"
            new_section[0:1] = [head, f'{indent}append="{value}"\n']
        edits.append((start, end, new_section))
        done.append(Rewrite(f"root={device}", f'append="{value}" (no initrd)'))
    for start, end, new_section in reversed(edits):
        lines[start:end] = new_section
    return "".join(lines), done


def _settings(lines: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in settings_of(lines):
        found.setdefault(key, value)
    return found


def _append_value(lines: list[str]) -> str | None:
    for line in lines:
        match = _APPEND_LINE.match(line)
        if match:
            return match.group(2) if match.group(2) is not None else match.group(3)
    return None


def geometry_devices(text: str) -> set[str]:
    """Devices named by `partition=` lines inside `disk=` sections: geometry and BIOS-code
    hints for `lilo` itself (they must name the device as the kernel calls it), not
    references the booted system follows."""
    found: set[str] = set()
    in_disk = False
    for key, value in settings_of(text.splitlines()):
        if key == "disk":
            in_disk = True
        elif key in ("image", "other", "boot", "map", "install", "root", "default"):
            in_disk = False
        elif key == "partition" and in_disk:
            found.add(value)
    return found


def is_partition_device(value: str) -> bool:
    return PARTITION_DEVICE.fullmatch(value) is not None


@dataclass(frozen=True)
class LiloImage:
    """One `image=` section: the kernel path, the names LILO's menu knows it by, its initrd."""

    path: str
    label: str  # label= or the path's base name, as LILO names it
    alias: str | None
    initrd: str | None  # the section's initrd=, else the global one
    root: str | None = None  # the section's root=, else the global one


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
    for key, value in settings_of(text.splitlines()):
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
                                settings.get("initrd") or glob.get("initrd"),
                                settings.get("root") or glob.get("root")))
    return LiloSections(glob.get("boot"), glob.get("map") or "/boot/map", tuple(images))
