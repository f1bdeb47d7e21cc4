"""windows-hardware-bindings: let the image boot on other hardware.

Storage boot drivers present in the image get `Start=0` and lose `StartOverride`, so whichever
controller the new machine has, its driver loads at boot. `MountedDevices` keeps only
`\\DosDevices\\C:`, rewritten for the disk the image is on when reseal knows it (MBR: disk
signature + partition offset; GPT: `DMIO:ID:` + partition GUID); Windows rebuilds the other
entries at boot. With `remove_nic_bindings`, physical network adapters' class instances, their
Enum device nodes and their per-adapter TCP/IP settings (static IPs) are removed.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

from reseal.image.model import OSFamily
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.windows.hives import LoadedHive, control_sets, hive_set

ORDER = 45
REG_DWORD = 4
REG_BINARY = 3
BOOT_STORAGE_DRIVERS = (
    "storahci", "stornvme", "iaStorV", "msahci", "intelide", "pciide", "atapi", "LSI_SAS",
    "vioscsi", "viostor", "storvsc",
)
NET_CLASS = "{4d36e972-e325-11ce-bfc1-08002be10318}"
NCF_PHYSICAL = 0x4
SYSTEM_DRIVE = "\\DosDevices\\C:"


@dataclass
class HardwareBindingsOptions:
    remove_nic_bindings: bool = False
    storage_drivers: list[str] = field(default_factory=lambda: list(BOOT_STORAGE_DRIVERS))


def validate(request: IdentityRequest, options: HardwareBindingsOptions | None) -> None:
    """Driver names are matched against the image; nothing to refuse up front."""


def apply(ctx: OperationContext) -> None:
    hives = hive_set(ctx)
    options: HardwareBindingsOptions = ctx.options or HardwareBindingsOptions()
    system = hives.require("SYSTEM")
    changed = False
    for cs in control_sets(system):
        changed |= _boot_start_storage(ctx, system, cs, options.storage_drivers)
        if options.remove_nic_bindings:
            changed |= _remove_nics(ctx, system, cs)
    changed |= _mounted_devices(ctx, system)
    if changed:
        hives.mark_changed(system)


def _boot_start_storage(ctx: OperationContext, system: LoadedHive, cs: str, drivers: list[str]) -> bool:
    changed = False
    services = system.key(f"{cs}\\Services")
    if services is None:
        return False
    for name in drivers:
        service = services.subkey(name)
        if service is None:
            continue
        start = service.value("Start")
        old = start.data if start is not None else None
        if old != 0:
            service.set_value("Start", REG_DWORD, 0)
            ctx.change(system.where(service.path, "Start"), "set", old, 0)
            changed = True
        override = f"{service.path}\\StartOverride"
        if system.hive.key(override) is not None:
            system.hive.delete_key(override)
            ctx.change(system.where(override), "remove")
            changed = True
    return changed


def system_drive_value(ctx: OperationContext) -> bytes | None:
    """What `\\DosDevices\\C:` must hold for the partition Windows is on, when known."""
    partition = ctx.system.volume.partition
    layout = ctx.target.layout
    if partition is None or layout is None:
        return None
    if partition.table == "gpt" and partition.guid:
        return b"DMIO:ID:" + uuid.UUID(partition.guid).bytes_le
    if partition.table == "mbr" and layout.mbr_signature is not None:
        return struct.pack("<IQ", layout.mbr_signature, partition.start)
    return None


def _mounted_devices(ctx: OperationContext, system: LoadedHive) -> bool:
    key = system.key("MountedDevices")
    if key is None:
        return False
    changed = False
    for value in key.values():
        if value.name.lower() != SYSTEM_DRIVE.lower():
            key.delete_value(value.name)
            ctx.change(system.where("MountedDevices", value.name), "remove")
            changed = True
    wanted = system_drive_value(ctx)
    current = key.value(SYSTEM_DRIVE)
    if wanted is None:
        ctx.warn("the disk holding Windows is not known (directory target): "
                 f"MountedDevices {SYSTEM_DRIVE} kept as it is")
    else:
        old = current.raw if current is not None else None
        if old != wanted:
            key.set_value(SYSTEM_DRIVE, REG_BINARY, wanted)
            ctx.change(system.where("MountedDevices", SYSTEM_DRIVE), "set",
                       old.hex() if old is not None else None, wanted.hex())
            changed = True
    return changed


def _remove_nics(ctx: OperationContext, system: LoadedHive, cs: str) -> bool:
    changed = False
    class_key = system.key(f"{cs}\\Control\\Class\\{NET_CLASS}")
    if class_key is None:
        return False
    removed_drivers: set[str] = set()
    for instance in class_key.subkeys():
        characteristics = instance.value("Characteristics")
        cfg = instance.value("NetCfgInstanceId")
        if characteristics is None or cfg is None or not isinstance(characteristics.data, int):
            continue
        instance_id = cfg.data
        if not isinstance(instance_id, str):
            continue
        if not characteristics.data & NCF_PHYSICAL:
            continue
        interface = f"{cs}\\Services\\Tcpip\\Parameters\\Interfaces\\{instance_id}"
        for path in (interface, instance.path):
            if system.hive.key(path) is not None:
                system.hive.delete_key(path)
                ctx.change(system.where(path), "remove")
                changed = True
        removed_drivers.add(f"{NET_CLASS}\\{instance.name}".lower())
    enum = system.key(f"{cs}\\Enum")
    if enum is not None and removed_drivers:
        doomed = []
        for key in system.hive.walk(enum):
            driver = key.value("Driver")
            if driver is not None and isinstance(driver.data, str) and driver.data.lower() in removed_drivers:
                doomed.append(key.path)
        for path in doomed:
            system.hive.delete_key(path)
            ctx.change(system.where(path), "remove")
            changed = True
    return changed


OPERATION = Operation(
    name="windows-hardware-bindings",
    description="Boot-start storage drivers, reset MountedDevices, optionally drop NIC bindings",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=HardwareBindingsOptions,
)
