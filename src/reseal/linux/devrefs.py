"""Device references in boot and mount configuration: find them and rewrite them.

Two kinds of rewrite, both token-exact so nothing else on a line changes:
- file-system UUIDs that changed (old -> new), wherever they appear: `UUID=`, `root=UUID=`,
  `/dev/disk/by-uuid/`, GRUB's `search --fs-uuid`, `rd.luks.uuid=`;
- kernel device names of partitions (`/dev/sda2`, `/dev/vda1`, `/dev/nvme0n1p2`), which name a
  different partition (or nothing) once a clone sits on another disk, replaced by stable
  `UUID=` forms when reseal knows which file system they meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PARTITION_DEVICE = re.compile(
    r"/dev/(?:(?:sd|hd|vd|xvd)[a-z]+(\d+)|nvme\d+n\d+p(\d+)|mmcblk\d+p(\d+))(?![\w/])"
)
_UUID_TEXT = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}"
# A "-" may come before (GRUB's menu-entry ids: gnulinux-simple-<uuid>), not after.
UUID_TOKEN = re.compile(rf"(?<![0-9A-Za-z])(?:{_UUID_TEXT})(?![0-9A-Za-z-])")
KERNEL_DEVICE_PARAM = re.compile(
    r"(?<![\w.-])(root|resume|real_root|cryptdevice)=(/dev/[^\s\"':]+)"
)


@dataclass(frozen=True)
class Rewrite:
    """One reference replaced in one file (for the report)."""

    old: str
    new: str


def partition_number(device: str) -> int | None:
    match = PARTITION_DEVICE.fullmatch(device)
    if not match:
        return None
    return int(next(group for group in match.groups() if group))


def replace_uuids(text: str, uuid_map: dict[str, str]) -> tuple[str, list[Rewrite]]:
    """Replace every token that is an old UUID (case-insensitive) with its new value."""
    lowered = {old.lower(): new for old, new in uuid_map.items()}
    done: list[Rewrite] = []

    def swap(match: re.Match[str]) -> str:
        new = lowered.get(match.group(0).lower())
        if new is None:
            return match.group(0)
        done.append(Rewrite(match.group(0), new))
        return new

    return UUID_TOKEN.sub(swap, text), done


def replace_kernel_devices(
    text: str, root_spec: str | None, device_map: dict[str, str]
) -> tuple[str, list[Rewrite]]:
    """`root=/dev/sda2` style kernel parameters -> stable forms.

    `device_map` maps a device path to its stable spec ("UUID=..."); `root_spec` is what the
    root file system is called in fstab, used for `root=` when the device itself is unknown.
    """
    done: list[Rewrite] = []

    def swap(match: re.Match[str]) -> str:
        param, device = match.group(1), match.group(2)
        if partition_number(device) is None:
            return match.group(0)
        new = device_map.get(device)
        if new is None and param in ("root", "real_root") and root_spec:
            new = root_spec
        if new is None:
            return match.group(0)
        done.append(Rewrite(match.group(0), f"{param}={new}"))
        return f"{param}={new}"

    return KERNEL_DEVICE_PARAM.sub(swap, text), done


def unstable_devices(text: str) -> list[str]:
    """Partition device names still present (comments ignored), for warnings."""
    found: list[str] = []
    for line in text.splitlines():
        body = line.split("#", 1)[0]
        found.extend(m.group(0) for m in PARTITION_DEVICE.finditer(body))
    return found


def device_aliases(number: int) -> list[str]:
    """The names the first disk's partition `number` has had under common drivers."""
    return [f"/dev/sda{number}", f"/dev/vda{number}", f"/dev/hda{number}",
            f"/dev/xvda{number}", f"/dev/nvme0n1p{number}", f"/dev/mmcblk0p{number}"]
