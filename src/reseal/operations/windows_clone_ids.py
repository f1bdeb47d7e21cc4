"""windows-clone-ids: the identities clones must not share, other than SID and name.

What Sysprep's generalize pass resets, researched item by item:

* SOFTWARE Cryptography `MachineGuid` (new, lower case, no braces) and SQMClient `MachineId`
  (new, braced upper case): Sysprep generalize deletes MachineId so each image gets its own
  (Microsoft Windows support blog, "同じ SQMClient MachineID が使用されてしまう事象",
  https://jpwinsup.github.io/blog/2023/01/11/Deployment/Sysprep/duplicatedMachineId/).
* Windows Update / WSUS client identity: `SusClientId`, `SusClientIdValidation`, `PingID` and
  `AccountDomainSid` under `Microsoft\\Windows\\CurrentVersion\\WindowsUpdate` are removed; the
  WSUS documentation says imaged clients whose SusClientId was populated in the image do not
  show in WSUS and that these values must be cleared so the client registers anew ("Client
  Requirements", WSUS 3.0 SP2 deployment guide, https://technet.microsoft.com/library/dd939898).
  Defender for Endpoint `senseGuid` is removed too.
* KMS client machine ID (CMID): kept in the Software Protection trusted store
  (`System32\\spp\\store`, signed and encrypted by the service), and reset by `slmgr /rearm`,
  which `sysprep /generalize` calls ("The /rearm process is also called by sysprep
  /generalize", https://learn.microsoft.com/windows-server/get-started/activation-slmgr-vbs-options).
  No offline tool can rewrite that store, so the report says to run `slmgr.vbs /rearm` once on
  the clone before it activates against a KMS host (KMS counts clones with one CMID as one).
* Remote Desktop's self-signed certificate (subject = the old computer name) and its private
  key are removed; Remote Desktop Services makes a new one at start (see
  `reseal.windows.rdpcert`).
* MSDTC: each transaction coordinator is identified by the CID keys under SOFTWARE
  `Classes\\CID` (Description `MSDTC`, `MSDTCUIS`, `MSDTC TIP`, ...); coordinators with one CID
  cannot talk to each other. Reinstalling MSDTC removes and recreates them (Microsoft
  Distributed Services blog, "Instructions to reinstall the Microsoft Distributed Transaction
  Coordinator (MSDTC) service",
  http://blogs.msdn.com/b/distributedservices/archive/2009/04/01/instructions-to-reinstall-the-microsoft-distributed-transaction-coordinator-msdtc-service.aspx);
  offline, each such key (and its `CID.Local` twin) gets a new GUID.
* SYSTEM, in every control set: Tcpip6 `Dhcpv6DUID` and per-interface `Dhcpv6Iaid` (removed),
  cached DHCPv4 leases under Tcpip interfaces (removed), IDConfigDB `HwProfileGuid` (new).
* The ConfigMgr client identity file `%SystemRoot%\\SMSCFG.INI` is removed (the client makes a
  new one).
"""

from __future__ import annotations

import random
import uuid

from reseal.errors import CorruptData
from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.registry import Key
from reseal.windows.hives import LoadedHive, control_sets, hive_set
from reseal.windows.rdpcert import (
    KEY_DIRS,
    MAX_KEY_FILE,
    RDP_STORE,
    key_file_names_container,
    parse_store_blob,
)

ORDER = 25  # before windows-computer-name, so the values it drops are not swept for the old name
REG_SZ = 1
CRYPTOGRAPHY = "Microsoft\\Cryptography"
SQM_CLIENT = "Microsoft\\SQMClient"
WINDOWS_UPDATE = "Microsoft\\Windows\\CurrentVersion\\WindowsUpdate"
SENSE = "Microsoft\\Windows Advanced Threat Protection"
CLASSES_CID = ("Classes\\CID", "Classes\\CID.Local")
SPP_STORE = "System32/spp/store"
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
    if software is not None:
        changed = _msdtc_cids(ctx, software, rng)
        changed |= _rdp_certificate(ctx, software, windows)
        if changed:
            hives.mark_changed(software)
    if windows.fs.find_path(f"{windows.system_root}/{SPP_STORE}") is not None:
        ctx.note("KMS client machine ID (CMID): kept in the Software Protection store "
                 f"({windows.system_root}/{SPP_STORE}), which no offline tool can rewrite; if "
                 "this image activates against a KMS host, run `cscript slmgr.vbs /rearm` once "
                 "on the clone (the reset sysprep /generalize performs) so KMS counts it apart")


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
        (WINDOWS_UPDATE, ("SusClientId", "SusClientIdValidation", "PingID", "AccountDomainSid"),
         "sus-client-id"),
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


def _msdtc_cids(ctx: OperationContext, software: LoadedHive, rng: random.Random) -> bool:
    """MSDTC's CID keys get new GUIDs (the same new GUID under CID and CID.Local)."""
    cid_root = software.key(CLASSES_CID[0])
    if cid_root is None:
        return False
    changed = False
    for key in cid_root.subkeys():
        description = key.subkey("Description")
        value = description.value("") if description is not None else None
        text = value.data if value is not None else None
        if not isinstance(text, str) or not text.upper().startswith("MSDTC"):
            continue
        new = "{" + str(_new_uuid(rng)) + "}"
        old = key.name
        for root in CLASSES_CID:
            if software.key(f"{root}\\{old}") is not None:
                software.hive.rename_key(f"{root}\\{old}", new)
                ctx.change(software.where(f"{root}\\{old}"), "rename", old, new)
        label = text.strip().lower().replace(" ", "-")
        ctx.identity(f"{label}-cid", old.strip("{}"), new.strip("{}"))
        changed = True
    return changed


def _rdp_certificate(ctx: OperationContext, software: LoadedHive, windows: WindowsSystem) -> bool:
    """Remove Remote Desktop's self-signed certificate and its private key file."""
    store = software.key(RDP_STORE)
    if store is None:
        return False
    changed = False
    for entry in store.subkeys():
        blob = entry.value("Blob")
        if blob is None:
            continue
        where = software.where(entry.path, "Blob")
        try:
            cert = parse_store_blob(blob.raw, where=where)
        except CorruptData as exc:
            ctx.warn(f"{exc}; left as it is")
            continue
        if not cert.self_signed:
            ctx.note(f"{software.where(entry.path)}: a CA-issued Remote Desktop certificate "
                     f"({cert.subject_cn}); left as it is")
            continue
        software.hive.delete_key(entry.path)
        ctx.change(software.where(entry.path), "remove",
                   f"self-signed Remote Desktop certificate CN={cert.subject_cn}")
        changed = True
        if cert.container:
            _remove_key_file(ctx, windows, cert.container)
    if changed:
        ctx.note("Remote Desktop Services makes a new self-signed certificate at its next start")
    return changed


def _remove_key_file(ctx: OperationContext, windows: WindowsSystem, container: str) -> None:
    fs = windows.fs
    for directory in KEY_DIRS:
        found = fs.find_path(directory)
        if found is None or not fs.is_dir(found):
            continue
        for name in fs.listdir(found):
            path = f"{found}/{name}"
            if fs.is_symlink(path) or not fs.is_file(path) or fs.stat(path).st_size > MAX_KEY_FILE:
                continue
            if key_file_names_container(fs.read_bytes(path), container):
                fs.remove(path)
                ctx.change(path, "remove", "private key of the Remote Desktop certificate")


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
    description="New MachineGuid, SQM, hardware-profile and MSDTC GUIDs; drop WSUS, DHCP and DUID "
    "identities and Remote Desktop's self-signed certificate; say how to reset the KMS CMID",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=None,
)
