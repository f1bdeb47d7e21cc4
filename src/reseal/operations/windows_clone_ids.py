"""windows-clone-ids: the identities clones must not share, other than SID and name.

SOFTWARE: Cryptography `MachineGuid` (new, lower case, no braces), SQMClient `MachineId` (new,
braced upper case), WindowsUpdate `SusClientId`/`SusClientIdValidation` (removed: the client
registers anew), Defender for Endpoint `senseGuid` (removed). SYSTEM, in every control set:
Tcpip6 `Dhcpv6DUID` and per-interface `Dhcpv6Iaid` (removed), cached DHCPv4 leases under
Tcpip interfaces (removed), IDConfigDB hardware-profile `HwProfileGuid` (new). The ConfigMgr
client identity file `%SystemRoot%\\SMSCFG.INI` is removed (the client makes a new one).
"""

from __future__ import annotations

import random
import uuid

from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.registry import Key
from reseal.windows.hives import LoadedHive, control_sets, hive_set

ORDER = 25  # before windows-computer-name, so the values it drops are not swept for the old name
REG_SZ = 1
CRYPTOGRAPHY = "Microsoft\\Cryptography"
SQM_CLIENT = "Microsoft\\SQMClient"
WINDOWS_UPDATE = "Microsoft\\Windows\\CurrentVersion\\WindowsUpdate"
SENSE = "Microsoft\\Windows Advanced Threat Protection"
DHCP_LEASE_VALUES = (
    "DhcpIPAddress", "DhcpSubnetMask", "DhcpSubnetMaskOpt", "DhcpServer", "DhcpDefaultGateway",
    "DhcpNameServer", "DhcpDomain", "DhcpInterfaceOptions", "DhcpGatewayHardware",
    "DhcpGatewayHardwareCount", "Lease", "LeaseObtainedTime", "LeaseTerminatesTime", "T1", "T2",
    "DhcpClassIdBin", "DhcpDomainSearchList",
)

# per-interface DHCPv6 identity and option cache (the options hold the old DUID as client id)
DHCPV6_CACHE_VALUES = ("Dhcpv6Iaid", "Dhcpv6InterfaceOptions")


def validate(request: IdentityRequest, options: object) -> None:
    """Nothing the user gives this operation can be wrong."""


def _rng(request: IdentityRequest) -> random.Random:
    return random.Random(request.seed) if request.seed is not None else random.SystemRandom()


def _new_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def apply(ctx: OperationContext) -> None:
    hives = hive_set(ctx)
    rng = _rng(ctx.request)
    software = hives.config("SOFTWARE")
    if software is None:
        ctx.warn("no SOFTWARE hive: MachineGuid, SQM and Windows Update identities left alone")
    else:
        if _software_ids(ctx, software, rng):
            hives.mark_changed(software)
    system = hives.config("SYSTEM")
    if system is not None and _system_ids(ctx, system, rng):
        hives.mark_changed(system)
    windows = ctx.system
    assert isinstance(windows, WindowsSystem)
    smscfg = windows.fs.find_path(f"{windows.system_root}/SMSCFG.INI")
    if smscfg is not None and windows.fs.is_file(smscfg):
        windows.fs.remove(smscfg)
        ctx.change(smscfg, "remove", "ConfigMgr client identity")


def _software_ids(ctx: OperationContext, software: LoadedHive, rng: random.Random) -> bool:
    changed = False
    crypto = software.key(CRYPTOGRAPHY) or software.hive.create_key(CRYPTOGRAPHY)
    old_value = crypto.value("MachineGuid")
    old = old_value.data if old_value is not None else None
    guid = str(_new_uuid(rng))
    crypto.set_value("MachineGuid", REG_SZ, guid)
    ctx.change(software.where(CRYPTOGRAPHY, "MachineGuid"), "set", old, guid)
    ctx.identity("machine-guid", old, guid)
    changed = True
    sqm = software.key(SQM_CLIENT)
    old_sqm = sqm.value("MachineId") if sqm is not None else None
    if sqm is not None and old_sqm is not None:
        old_text = old_sqm.data
        new_sqm = "{" + str(_new_uuid(rng)).upper() + "}"
        sqm.set_value("MachineId", old_sqm.type, new_sqm)
        ctx.change(software.where(SQM_CLIENT, "MachineId"), "set", old_text, new_sqm)
        ctx.identity("sqm-machine-id", old_text, new_sqm)
    for path, names, identity in (
        (WINDOWS_UPDATE, ("SusClientId", "SusClientIdValidation"), "sus-client-id"),
        (SENSE, ("senseGuid",), "sense-guid"),
    ):
        key = software.key(path)
        for name in names:
            value = key.value(name) if key is not None else None
            if key is None or value is None:
                continue
            data = value.data
            if name == names[0] and isinstance(data, str):
                ctx.identity(identity, data, None)
            key.delete_value(name)
            ctx.change(software.where(path, name), "remove", _shown(data), None)
    return changed


def _shown(data: object) -> str:
    return data if isinstance(data, str) else f"{len(data) if isinstance(data, bytes) else 0} bytes"


def _system_ids(ctx: OperationContext, system: LoadedHive, rng: random.Random) -> bool:
    changed = False
    duid_seen: set[str] = set()
    for cs in control_sets(system):
        tcpip6 = system.key(f"{cs}\\Services\\Tcpip6\\Parameters")
        if tcpip6 is not None:
            duid = tcpip6.value("Dhcpv6DUID")
            if duid is not None:
                text = duid.raw.hex()
                if text not in duid_seen:
                    duid_seen.add(text)
                    ctx.identity("dhcpv6-duid" if len(duid_seen) == 1 else
                                 f"dhcpv6-duid-{len(duid_seen)}", text, None)
                tcpip6.delete_value("Dhcpv6DUID")
                ctx.change(system.where(tcpip6.path, "Dhcpv6DUID"), "remove", text, None)
                changed = True
            changed |= _remove_in_interfaces(ctx, system, tcpip6.subkey("Interfaces"),
                                             DHCPV6_CACHE_VALUES)
        tcpip = system.key(f"{cs}\\Services\\Tcpip\\Parameters")
        if tcpip is not None:
            changed |= _remove_in_interfaces(ctx, system, tcpip.subkey("Interfaces"),
                                             DHCP_LEASE_VALUES)
        profiles = system.key(f"{cs}\\Control\\IDConfigDB\\Hardware Profiles")
        for profile in profiles.subkeys() if profiles is not None else []:
            old_value = profile.value("HwProfileGuid")
            if old_value is None:
                continue
            old = old_value.data
            new = "{" + str(_new_uuid(rng)) + "}"
            profile.set_value("HwProfileGuid", old_value.type, new)
            ctx.change(system.where(profile.path, "HwProfileGuid"), "set", old, new)
            suffix = "" if profile.name == "0001" else f"-{profile.name}"
            ctx.identity(f"hw-profile-guid{suffix}", old, new)
            changed = True
    return changed


def _remove_in_interfaces(ctx: OperationContext, hive: LoadedHive, interfaces: Key | None,
                          names: tuple[str, ...]) -> bool:
    if interfaces is None:
        return False
    changed = False
    for key in hive.hive.walk(interfaces):
        present = {v.name.lower(): v.name for v in key.values()}
        for name in names:
            actual = present.get(name.lower())
            if actual is not None:
                key.delete_value(actual)
                ctx.change(hive.where(key.path, actual), "remove")
                changed = True
    return changed


OPERATION = Operation(
    name="windows-clone-ids",
    description="New MachineGuid, SQM and hardware-profile GUIDs; drop WSUS, DHCP and DUID identities",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=None,
)
