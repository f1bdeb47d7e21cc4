"""windows-pnp-nonpresent: forget devices that were no longer present on the master (off by
default).

Sysprep's generalize pass removes the PnP state of the reference machine's devices unless
`PersistAllDeviceInstalls` is set (https://learn.microsoft.com/windows-hardware/customize/desktop/unattend/microsoft-windows-pnpsysprep-persistalldeviceinstalls);
offline, reseal cannot know which devices the clone's hardware has, but Windows 8 and later
record when each device instance last arrived and was last removed
(`DEVPKEY_Device_LastArrivalDate`/`DEVPKEY_Device_LastRemovalDate`, property set
{83da6326-97a6-4088-9453-a1923f573b29} ids 0x65/0x66 under `Enum\\...\\Properties`,
https://learn.microsoft.com/windows-hardware/drivers/install/devpkey-device-lastremovaldate).
An instance removed after it last arrived is a "disconnected" device in `pnputil
/enum-devices /disconnected` terms; this operation does offline what `pnputil /remove-device`
does for each: the `Enum` instance key, its driver key under `Control\\Class` (when no other
instance uses it) and its interface keys under `Control\\DeviceClasses`, in every control set.
Root-enumerated devices (`ROOT`, `HTREE`) are made by Windows or setup, not found on a bus, and
stay. A hive without those properties (Windows 7 and older) is left alone with a note.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from reseal.image.model import OSFamily
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.registry import Key
from reseal.windows.hives import LoadedHive, control_sets, hive_set

ORDER = 46
DEVICE_DATES = "{83da6326-97a6-4088-9453-a1923f573b29}"
LAST_ARRIVAL, LAST_REMOVAL = "0065", "0066"
SOFTWARE_BUSES = {"ROOT", "HTREE"}


@dataclass(frozen=True)
class NonPresentDevice:
    instance: str  # "PCI\\VEN_...\\3&..." as Windows names the instance
    key_path: str  # ControlSet00N\\Enum\\...
    driver: str | None  # "{class guid}\\0001"


def validate(request: IdentityRequest, options: object) -> None:
    """No input."""


def _filetime(key: Key | None) -> int | None:
    value = key.value("") if key is not None else None
    if value is None or len(value.raw) != 8:
        return None
    return int(struct.unpack("<Q", value.raw)[0])


def non_present_devices(system: LoadedHive, control_set: str) -> tuple[list[NonPresentDevice], int]:
    """Devices removed after they last arrived, and how many instances carry the dates."""
    enum = system.key(f"{control_set}\\Enum")
    found: list[NonPresentDevice] = []
    dated = 0
    for bus in enum.subkeys() if enum is not None else []:
        if bus.name.upper() in SOFTWARE_BUSES:
            continue
        for device in bus.subkeys():
            for instance in device.subkeys():
                dates = instance.subkey("Properties")
                dates = dates.subkey(DEVICE_DATES) if dates is not None else None
                if dates is None:
                    continue
                arrival = _filetime(dates.subkey(LAST_ARRIVAL))
                removal = _filetime(dates.subkey(LAST_REMOVAL))
                if arrival is None and removal is None:
                    continue
                dated += 1
                if removal is not None and (arrival is None or removal > arrival):
                    driver = instance.value("Driver")
                    found.append(NonPresentDevice(
                        f"{bus.name}\\{device.name}\\{instance.name}", instance.path,
                        driver.data if driver is not None and isinstance(driver.data, str) else None))
    return found, dated


def apply(ctx: OperationContext) -> None:
    hives = hive_set(ctx)
    system = hives.require("SYSTEM")
    removed = 0
    dated_total = 0
    for cs in control_sets(system):
        devices, dated = non_present_devices(system, cs)
        dated_total += dated
        if not devices:
            continue
        present_drivers = _drivers_in_use(system, cs, {d.key_path.lower() for d in devices})
        for device in devices:
            system.hive.delete_key(device.key_path)
            ctx.change(system.where(device.key_path), "remove", "device not present on the master")
            removed += 1
            if device.driver and device.driver.lower() not in present_drivers:
                driver_key = f"{cs}\\Control\\Class\\{device.driver}"
                if system.hive.delete_key(driver_key):
                    ctx.change(system.where(driver_key), "remove", f"driver key of {device.instance}")
            _remove_interfaces(ctx, system, cs, device.instance)
    if removed:
        hives.mark_changed(system)
        ctx.note(f"{removed} device instances that were not present on the master were removed; "
                 "Windows detects the clone's devices at boot")
    elif not dated_total:
        ctx.note("the SYSTEM hive records no device arrival/removal dates (Windows 7 or older): "
                 "which devices are absent cannot be told offline, nothing removed")


def _drivers_in_use(system: LoadedHive, control_set: str, removed: set[str]) -> set[str]:
    enum = system.key(f"{control_set}\\Enum")
    used: set[str] = set()
    for key in system.hive.walk(enum) if enum is not None else []:
        if key.path.lower() in removed:
            continue
        driver = key.value("Driver")
        if driver is not None and isinstance(driver.data, str):
            used.add(driver.data.lower())
    return used


def _remove_interfaces(ctx: OperationContext, system: LoadedHive, control_set: str,
                       instance: str) -> None:
    """Interface keys `##?#<instance with # for \\>#{interface}` of the removed instance."""
    classes = system.key(f"{control_set}\\Control\\DeviceClasses")
    marker = "##?#" + instance.replace("\\", "#").lower() + "#"
    for interface in classes.subkeys() if classes is not None else []:
        for entry in interface.subkeys():
            if entry.name.lower().startswith(marker):
                system.hive.delete_key(entry.path)
                ctx.change(system.where(entry.path), "remove", f"interface of {instance}")


OPERATION = Operation(
    name="windows-pnp-nonpresent",
    description="Remove PnP device instances that were not present on the master (Windows 8+ "
    "arrival/removal dates), with their driver and interface keys",
    os=OSFamily.WINDOWS,
    default_enabled=False,
    apply=apply,
    options_type=None,
)
