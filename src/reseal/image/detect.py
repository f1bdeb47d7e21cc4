"""Find the operating systems on mounted volumes."""

from __future__ import annotations

from reseal.image.model import LinuxSystem, System, Volume, WindowsSystem


def detect_systems(volumes: list[Volume]) -> list[System]:
    systems: list[System] = []
    for volume in volumes:
        fs = volume.fs
        if fs is None:
            continue
        for candidate in ("Windows", "WINDOWS", "WINNT"):
            root = fs.find_child("/", candidate)
            if root and fs.find_path(f"{root}/System32/config/SYSTEM"):
                systems.append(WindowsSystem(volume=volume, system_root=root))
                break
        else:
            if fs.is_dir("/etc") and (
                fs.exists("/etc/os-release")
                or fs.exists("/usr/lib/os-release")
                or fs.exists("/etc/fstab")
                or fs.exists("/etc/hostname")
            ):
                systems.append(LinuxSystem(volume=volume))
    return systems
