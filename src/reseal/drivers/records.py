"""Registry records of a staged package, shaped like the ones Windows writes.

The shapes were read from real SYSTEM hives (Windows 10 1709: pvscsi/vmci as oemN packages,
stornvme/mshdc inbox; Windows 7: CriticalDeviceDatabase LSI_SAS):

- `DriverDatabase\\DriverInfFiles\\oemN.inf`: (default) REG_MULTI_SZ [store name], Active
  REG_SZ store name, Configurations REG_MULTI_SZ install sections.
- `DriverDatabase\\DriverPackages\\<store name>`: Version (48-byte REG_BINARY below),
  Provider, InfName, Catalog, ImportDate (FILETIME), StatusFlags, (default) = oemN.inf;
  `Configurations\\<section>`: Service, ConfigScope 7, ConfigFlags 0;
  `Descriptors\\<hwid split at \\>`: Configuration, Manufacturer, Description.
- `DriverDatabase\\DeviceIds\\<hwid split at \\>`: value oemN.inf = REG_BINARY
  [rank, 0xff, 0, 0] (rank 1 for the hardware ID, 2.. for compatible IDs), and
  `DeviceIds\\{class guid}`: oemN.inf = REG_NONE.
- `DriverDatabase` OemInfMap: bitmap, most significant bit of byte 0 = oem0.inf.

Version layout (little endian): u16 0xff00 (oem) | u16 9 | u32 0 | class GUID (16, mixed
endian) | DriverVer date as FILETIME (8) | DriverVer version as u64 w<<48|x<<32|y<<16|z | 8
zero bytes.
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, date, datetime

from reseal.drivers.inf import InfFile, ServiceSpec, parse_int
from reseal.errors import CorruptData
from reseal.registry import Hive, RegType

FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
OEM_STATUS_FLAGS = 0x12  # what Windows 10 records for an imported third-party package


def filetime(moment: datetime) -> bytes:
    delta = moment - FILETIME_EPOCH
    ticks = (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10
    return struct.pack("<Q", ticks)


def version_blob(class_guid: str, driver_date: date | None,
                 driver_version: tuple[int, int, int, int] | None) -> bytes:
    """The 48-byte DriverPackages Version value (see the module docstring)."""
    try:
        guid = uuid.UUID(class_guid.strip("{}")).bytes_le if class_guid else bytes(16)
    except ValueError as exc:
        raise CorruptData(f"ClassGUID {class_guid!r} is not a GUID; fix the INF") from exc
    when = filetime(datetime(driver_date.year, driver_date.month, driver_date.day,
                             tzinfo=UTC)) if driver_date else bytes(8)
    w, x, y, z = driver_version or (0, 0, 0, 0)
    packed = struct.pack("<Q", (w << 48) | (x << 32) | (y << 16) | z)
    return struct.pack("<HHI", 0xFF00, 9, 0) + guid + when + packed + bytes(8)


def oem_map_get(raw: bytes) -> set[int]:
    used = set()
    for index, byte in enumerate(raw):
        for bit in range(8):
            if byte & (0x80 >> bit):
                used.add(index * 8 + bit)
    return used


def oem_map_bytes(used: set[int]) -> bytes:
    """Bitmap of used oemN numbers, as long as the highest number needs (at least 1 byte)."""
    length = max(1, (max(used) // 8 + 1) if used else 0)
    data = bytearray(length)
    for number in used:
        data[number // 8] |= 0x80 >> (number % 8)
    return bytes(data)


def device_id_path(hardware_id: str) -> str:
    """`PCI\\VEN_1AF4&DEV_1001` -> `PCI\\VEN_1AF4&DEV_1001` as a key path (empty parts
    dropped); an ID without a backslash is one key."""
    return "\\".join(part for part in hardware_id.split("\\") if part)


def string_token(raw: str) -> str:
    """`%VioStor.DeviceDesc%` -> `viostor.devicedesc` (Windows keeps the [Strings] key, lower
    case, and the text under `Strings`); "" when the INF wrote plain text."""
    text = raw.strip()
    if len(text) > 2 and text.startswith("%") and text.endswith("%") and "%" not in text[1:-1]:
        return text[1:-1].lower()
    return ""


def critical_device_key(hardware_id: str) -> str:
    """CriticalDeviceDatabase names a device by its ID with `\\` replaced by `#`."""
    return hardware_id.replace("\\", "#").lower()


def image_path(binary: str, file_name: str, *, windows7: bool, store_name: str) -> str:
    """ImagePath for a boot-critical service, in the form the image's inbox services use."""
    if binary.startswith("%13%"):
        return f"\\SystemRoot\\System32\\DriverStore\\FileRepository\\{store_name}\\{file_name}"
    return f"\\SystemRoot\\system32\\drivers\\{file_name}" if windows7 else \
        f"System32\\drivers\\{file_name}"


_ADDREG_TYPES = {
    0x00000000: RegType.REG_SZ,
    0x00000001: RegType.REG_BINARY,
    0x00010000: RegType.REG_MULTI_SZ,
    0x00020000: RegType.REG_EXPAND_SZ,
    0x00010001: RegType.REG_DWORD,
    0x00020001: RegType.REG_NONE,
}
FLG_ADDREG_KEYONLY = 0x10
FLG_ADDREG_APPEND = 0x08
FLG_ADDREG_DELVAL = 0x04


def apply_service_add_reg(inf: InfFile, sections: tuple[str, ...], hive: Hive,
                          base_path: str) -> None:
    """Apply the HKR lines of a service install section's AddReg sections below
    `base_path` (Parameters\\BusType and friends). Other roots (HKLM...) are left out:
    reseal only writes what it can remove again with the service key."""
    for section in sections:
        for key, fields, lineno in inf.entries(section):
            if key is not None or not fields or fields[0].strip().upper() != "HKR":
                continue
            subkey = "\\".join(p for p in (fields[1].strip() if len(fields) > 1 else ""
                                            ).split("\\") if p and p != "..")
            name = fields[2].strip() if len(fields) > 2 else ""
            flags = parse_int(fields[3], inf.where(lineno)) if len(fields) > 3 and \
                fields[3].strip() else 0
            target = hive.create_key(f"{base_path}\\{subkey}" if subkey else base_path)
            if flags & (FLG_ADDREG_KEYONLY | FLG_ADDREG_DELVAL | FLG_ADDREG_APPEND):
                continue
            value_type = _ADDREG_TYPES.get(flags & ~0x2)  # 0x2 = NOCLOBBER
            if value_type is None:
                continue
            target.set_value(name, value_type, _addreg_data(value_type, list(fields[4:]), inf,
                                                            lineno))


def _addreg_data(value_type: int, fields: list[str], inf: InfFile, lineno: int
                 ) -> bytes | str | int | list[str]:
    if value_type == RegType.REG_DWORD:
        return parse_int(fields[0], inf.where(lineno)) & 0xFFFFFFFF if fields and \
            fields[0].strip() else 0
    if value_type == RegType.REG_MULTI_SZ:
        return [f for f in fields if f]
    if value_type in (RegType.REG_BINARY, RegType.REG_NONE):
        return bytes(parse_int("0x" + f.strip(), inf.where(lineno)) for f in fields if f.strip())
    return fields[0] if fields else ""


def service_values(spec: ServiceSpec, *, image: str, boot: bool
                   ) -> list[tuple[str, int, int | str | list[str]]]:
    """Values of Services\\<svc> for a boot-critical driver: Start forced to 0 (boot)."""
    values: list[tuple[str, int, int | str | list[str]]] = [
        ("Type", RegType.REG_DWORD, spec.service_type if spec.service_type is not None else 1),
        ("Start", RegType.REG_DWORD, 0 if boot else (spec.start_type or 3)),
        ("ErrorControl", RegType.REG_DWORD,
         spec.error_control if spec.error_control is not None else 1),
        ("ImagePath", RegType.REG_EXPAND_SZ, image),
    ]
    if spec.load_order_group:
        values.insert(3, ("Group", RegType.REG_SZ, spec.load_order_group))
    if spec.display_name:
        values.append(("DisplayName", RegType.REG_SZ, spec.display_name))
    return values
