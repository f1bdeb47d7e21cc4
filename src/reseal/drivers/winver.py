"""The image's Windows version and architecture, read from its hives.

SOFTWARE (`Microsoft\\Windows NT\\CurrentVersion`) is the authority when present. Without it
(offline images copied partially, the test fixtures) the SYSTEM hive still tells enough:
`DriverDatabase\\Version` (0xMMmm0000) exists from Windows 8 on; the inbox packages'
`Version` (Microsoft's own drivers carry the OS build as their version) give the build; a
SYSTEM hive with no DriverDatabase is Windows 7 (build 7600 + service pack from
`Control\\Windows\\CSDVersion`). `PROCESSOR_ARCHITECTURE` comes from the Session Manager
environment of the current control set.
"""

from __future__ import annotations

import struct

from reseal.drivers.select import WindowsVersion
from reseal.errors import CorruptData
from reseal.registry import Hive

_ARCH_NAMES = {"x86": "x86", "amd64": "amd64", "arm64": "arm64", "ia64": "ia64", "arm": "arm"}
# PROCESSOR_ARCHITECTURE_* numbers, as DriverDatabase\Architecture records them
ARCH_NUMBERS = {"x86": 0, "arm": 5, "ia64": 6, "amd64": 9, "arm64": 12}
_PRODUCT_TYPES = {"winnt": 1, "lanmannt": 2, "servernt": 3}


def current_control_set(system: Hive) -> str:
    """`ControlSet00N` that Select\\Current names (ControlSet001 when Select is missing)."""
    select = system.key("Select")
    current = select.value("Current") if select is not None else None
    number = current.data if current is not None and isinstance(current.data, int) else 1
    name = f"ControlSet{number:03d}"
    return name if system.key(name) is not None else "ControlSet001"


def control_sets(system: Hive) -> list[str]:
    """Every ControlSet00N key of SYSTEM (what a boot can pick: Current, LastKnownGood...)."""
    return sorted((k.name for k in system.root.subkeys()
                   if k.name.lower().startswith("controlset") and k.name[10:].isdigit()),
                  key=str.lower)


def read_arch(system: Hive) -> str:
    env = system.key(f"{current_control_set(system)}\\Control\\Session Manager\\Environment")
    value = env.value("PROCESSOR_ARCHITECTURE") if env is not None else None
    text = str(value.data).strip().lower() if value is not None else ""
    if text not in _ARCH_NAMES:
        raise CorruptData(f"SYSTEM\\{current_control_set(system)}\\Control\\Session Manager\\"
                          f"Environment: PROCESSOR_ARCHITECTURE {text or '(missing)'!r} is not "
                          "one reseal knows; is this a Windows SYSTEM hive?")
    return _ARCH_NAMES[text]


def read_product_type(system: Hive) -> int:
    key = system.key(f"{current_control_set(system)}\\Control\\ProductOptions")
    value = key.value("ProductType") if key is not None else None
    return _PRODUCT_TYPES.get(str(value.data).lower(), 1) if value is not None else 1


def read_windows_version(system: Hive, software: Hive | None = None) -> WindowsVersion:
    """The version facts selection and staging need (see the module docstring)."""
    arch = read_arch(system)
    product_type = read_product_type(system)
    if software is not None:
        found = _from_software(software, arch, product_type)
        if found is not None:
            return found
    database = system.key("DriverDatabase")
    if database is not None:
        version = database.value("Version")
        packed = version.data if version is not None and isinstance(version.data, int) else 0
        major, minor = (packed >> 24) & 0xFF, (packed >> 16) & 0xFF
        if major < 6:
            major, minor = 6, 2
        build = _inbox_build(system, major, minor)
        return WindowsVersion(major, minor, build, arch, product_type,
                              source="SYSTEM DriverDatabase (no SOFTWARE hive)")
    windows = system.key(f"{current_control_set(system)}\\Control\\Windows")
    csd = windows.value("CSDVersion") if windows is not None else None
    service_pack = (csd.data >> 8) if csd is not None and isinstance(csd.data, int) else 0
    return WindowsVersion(6, 1, 7600 + service_pack, arch, product_type,
                          source="SYSTEM without DriverDatabase: Windows 7 (no SOFTWARE hive)")


def _from_software(software: Hive, arch: str, product_type: int) -> WindowsVersion | None:
    key = software.key("Microsoft\\Windows NT\\CurrentVersion")
    if key is None:
        return None

    def text(name: str) -> str:
        value = key.value(name)
        return str(value.data).strip() if value is not None else ""

    major_value = key.value("CurrentMajorVersionNumber")
    minor_value = key.value("CurrentMinorVersionNumber")
    if major_value is not None and isinstance(major_value.data, int):
        major = major_value.data
        minor = minor_value.data if minor_value is not None and \
            isinstance(minor_value.data, int) else 0
    else:
        parts = text("CurrentVersion").split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            return None
        major, minor = int(parts[0]), int(parts[1])
    build_text = text("CurrentBuildNumber") or text("CurrentBuild")
    build = int(build_text) if build_text.isdigit() else 0
    return WindowsVersion(major, minor, build, arch, product_type,
                          source="SOFTWARE Microsoft\\Windows NT\\CurrentVersion")


def _inbox_build(system: Hive, major: int, minor: int) -> int:
    """Highest build among Microsoft inbox packages of this OS version (0 when none)."""
    packages = system.key("DriverDatabase\\DriverPackages")
    best = 0
    if packages is None:
        return best
    for package in packages.subkeys():
        provider = package.value("Provider")
        version = package.value("Version")
        if provider is None or str(provider.data) != "Microsoft" or version is None:
            continue
        raw = version.raw
        if len(raw) < 40:
            continue
        packed = struct.unpack_from("<Q", raw, 32)[0]
        v_major, v_minor, v_build = packed >> 48, (packed >> 32) & 0xFFFF, (packed >> 16) & 0xFFFF
        if (v_major, v_minor) == (major, minor):
            best = max(best, v_build)
    return best
