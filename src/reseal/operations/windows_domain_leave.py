"""windows-domain-leave: a clone of a domain member leaves the master's domain, offline.

Every clone of a domain member carries the master's machine-account password (LSA secret
`$MACHINE.ACC`): all of them would authenticate to the domain as the master's computer account,
and reset each other's password. This operation does what `NetUnjoinDomain` does on the machine
itself, without booting it and without touching the domain controller (the master's account
stays in the directory; `NETSETUP_ACCT_DELETE` would only disable it, see
https://learn.microsoft.com/windows/win32/api/lmjoin/nf-lmjoin-netunjoindomain):

* SECURITY: the `$MACHINE.ACC` secret is removed; the primary-domain policy becomes a
  workgroup the way [MS-LSAD] 2.2.4.x describes `PolicyPrimaryDomainInformation` of a
  workgroup member (name = the workgroup, SID absent: `PolPrDmN` = workgroup, `PolPrDmS`,
  `PolDnDDN`, `PolDnTrN`, `PolMachineAccountS/R` emptied, `PolDnDmG` zeroed), byte for byte as
  the workgroup hives in ../shared hold them;
* cached domain logons (`Cache\\NL$n`) become unused slots, and the key they were encrypted
  with (`NL$KM`) is replaced by a new random one when SYSTEM's boot key opens the LSA key
  (every fresh install holds an `NL$KM`, joined or not); otherwise `NL$KM` is removed and
  Windows makes a new one;
* SYSTEM, in every control set: the primary DNS suffix (`Tcpip\\Parameters` `Domain`,
  `NV Domain`) is cleared when it is the domain's DNS name and follows membership
  (`SyncDomainWithMembership`, default 1); Netlogon goes back to manual start (3), as on a
  workgroup member, and forgets its cached AD site (`DynamicSiteName`);
* SOFTWARE Winlogon `DefaultDomainName`/`AltDefaultDomainName`/`CachePrimaryDomain` naming
  the domain now name the computer (local logon), respectively the workgroup.

It runs after windows-computer-name (so the local logon domain is the new name). A workgroup
member is left alone. The report says that the clone must be joined again.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from reseal.errors import BadInput, ResealError
from reseal.image.model import OSFamily
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.windows.domain import (
    CACHE,
    CACHE_KEY_SECRET,
    MACHINE_ACCOUNT_SECRET,
    cache_revision,
    empty_cache_entry,
    policy_bytes,
    read_domain_state,
    used_cache_entries,
)
from reseal.windows.hives import LoadedHive, control_sets, hive_set
from reseal.windows.lsa import LsaSecrets, boot_key, delete_secret
from reseal.windows.sam import encode_policy_name

ORDER = 35
REG_SZ = 1
REG_DWORD = 4
SERVICE_DEMAND_START = 3
SERVICE_AUTO_START = 2
WINLOGON = "Microsoft\\Windows NT\\CurrentVersion\\Winlogon"
WORKGROUP_FORBIDDEN = set('\\/:*?"<>|,')
NL_KM_SIZE = 64


@dataclass
class DomainLeaveOptions:
    workgroup: str = "WORKGROUP"


def validate(request: IdentityRequest, options: DomainLeaveOptions | None) -> None:
    workgroup = (options or DomainLeaveOptions()).workgroup
    if not workgroup or len(workgroup) > 15 or set(workgroup) & WORKGROUP_FORBIDDEN \
            or workgroup.strip() != workgroup:
        raise BadInput(f"windows-domain-leave workgroup {workgroup!r}: a workgroup name has 1 to "
                       '15 characters and none of \\ / : * ? " < > | ,')


def stored_digest(raw: bytes) -> str:
    """What the report keeps of a removed secret: a digest of its encrypted bytes, so that
    `reseal verify` can tell the master's secret from a new one (never the secret itself)."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


REMOVED_SECRET_NOTE = "removed the master's $MACHINE.ACC (stored value {digest})"


def apply(ctx: OperationContext) -> None:
    options: DomainLeaveOptions = ctx.options or DomainLeaveOptions()
    hives = hive_set(ctx)
    security = hives.config("SECURITY")
    if security is None:
        ctx.warn("no SECURITY hive: domain membership unknown, nothing done")
        return
    state = read_domain_state(security.hive)
    for problem in state.problems:
        ctx.warn(problem)
    if not state.member and not state.machine_secret and not state.cached_logons:
        ctx.note(f"{state.describe()}: not a domain member, nothing to leave")
        return
    domain = state.primary_name or "(unnamed domain)"
    secret_key = security.key(f"Policy\\Secrets\\{MACHINE_ACCOUNT_SECRET}\\CurrVal")
    stored_value = secret_key.value("") if secret_key is not None else None
    stored = stored_value.raw if stored_value is not None else b""
    if delete_secret(security.hive, MACHINE_ACCOUNT_SECRET):
        ctx.change(security.where(f"Policy\\Secrets\\{MACHINE_ACCOUNT_SECRET}"), "remove",
                   f"machine-account secret of {domain} (set {state.machine_secret_changed})")
        if stored:
            ctx.note(REMOVED_SECRET_NOTE.format(digest=stored_digest(stored)))
    _empty_cache(ctx, security)
    _new_cache_key(ctx, hives.config("SYSTEM"), security)
    _workgroup_policy(ctx, security, options.workgroup)
    hives.mark_changed(security)
    system = hives.config("SYSTEM")
    if system is not None and _system_membership(ctx, system, state.dns_name):
        hives.mark_changed(system)
    software = hives.config("SOFTWARE")
    if software is not None and _winlogon(ctx, software, system, domain, options.workgroup):
        hives.mark_changed(software)
    ctx.note(
        f"left {state.describe()}: the clone is now in workgroup {options.workgroup} and must be "
        f"joined to a domain again (answer file `domain:`, or djoin/Add-Computer on the clone); "
        f"the master's computer account in {domain} was not touched"
    )


def _empty_cache(ctx: OperationContext, security: LoadedHive) -> None:
    used = used_cache_entries(security.hive)
    cache = security.key(CACHE)
    if not used or cache is None:
        return
    revision = cache_revision(security.hive)
    for name in used:
        value = cache.value(name)
        assert value is not None
        cache.set_value(name, value.type, empty_cache_entry(revision))
    ctx.change(security.where(CACHE), "set", f"{len(used)} cached domain logons", "unused slots")


def _new_cache_key(ctx: OperationContext, system: LoadedHive | None, security: LoadedHive) -> None:
    """NL$KM: a fresh key when the LSA key can be opened, otherwise removed."""
    if security.key(f"Policy\\Secrets\\{CACHE_KEY_SECRET}") is None:
        return
    where = security.where(f"Policy\\Secrets\\{CACHE_KEY_SECRET}")
    reason = "no SYSTEM hive"
    if system is not None:
        try:
            lsa = LsaSecrets.open(security.hive, boot_key(system.hive))
            fresh = secrets.token_bytes(NL_KM_SIZE)
            lsa.write(CACHE_KEY_SECRET, fresh, fresh)
            ctx.change(where, "set", "master's cached-logon key", "new random key")
            return
        except ResealError as exc:
            reason = str(exc)
    delete_secret(security.hive, CACHE_KEY_SECRET)
    ctx.change(where, "remove", "master's cached-logon key")
    ctx.note(f"{where}: removed rather than replaced ({reason}); Windows makes a new one")


def _workgroup_policy(ctx: OperationContext, security: LoadedHive, workgroup: str) -> None:
    target = {
        "PolPrDmN": encode_policy_name(workgroup),
        "PolPrDmS": b"",
        "PolDnDDN": b"",
        "PolDnTrN": b"",
        "PolDnDmG": bytes(16),
        "PolMachineAccountS": b"",
        "PolMachineAccountR": b"",
    }
    for name, data in target.items():
        current = policy_bytes(security.hive, name)
        key = security.key(f"Policy\\{name}")
        if key is None or current is None or current == data:
            continue
        value = key.value("")
        assert value is not None
        key.set_value("", value.type, data)
        ctx.change(security.where(f"Policy\\{name}"), "set",
                   f"{len(current)} bytes", workgroup if name == "PolPrDmN" else "empty")


def _system_membership(ctx: OperationContext, system: LoadedHive, dns_name: str | None) -> bool:
    changed = False
    for cs in control_sets(system):
        tcpip = system.key(f"{cs}\\Services\\Tcpip\\Parameters")
        if tcpip is not None and dns_name:
            sync = tcpip.value("SyncDomainWithMembership")
            follows = sync is None or sync.data != 0
            for name in ("Domain", "NV Domain"):
                held = tcpip.value(name)
                text = held.data if held is not None else None
                if follows and held is not None and isinstance(text, str) \
                        and text.lower() == dns_name.lower():
                    tcpip.set_value(name, held.type, "")
                    ctx.change(system.where(tcpip.path, name), "set", text, "")
                    changed = True
        netlogon = system.key(f"{cs}\\Services\\Netlogon")
        start = netlogon.value("Start") if netlogon is not None else None
        if netlogon is not None and start is not None and start.data == SERVICE_AUTO_START:
            netlogon.set_value("Start", start.type, SERVICE_DEMAND_START)
            ctx.change(system.where(netlogon.path, "Start"), "set", "2 (automatic)", "3 (manual)")
            changed = True
        parameters = system.key(f"{cs}\\Services\\Netlogon\\Parameters")
        if parameters is not None and parameters.value("DynamicSiteName") is not None:
            parameters.delete_value("DynamicSiteName")
            ctx.change(system.where(parameters.path, "DynamicSiteName"), "remove")
            changed = True
    return changed


def _winlogon(ctx: OperationContext, software: LoadedHive, system: LoadedHive | None,
              domain: str, workgroup: str) -> bool:
    winlogon = software.key(WINLOGON)
    if winlogon is None:
        return False
    computer = _computer_name(system)
    changed = False
    for name, replacement in (("DefaultDomainName", computer), ("AltDefaultDomainName", computer),
                              ("CachePrimaryDomain", workgroup)):
        value = winlogon.value(name)
        text = value.data if value is not None else None
        if value is None or not isinstance(text, str) or replacement is None:
            continue
        if text.upper() == domain.upper():
            winlogon.set_value(name, value.type, replacement)
            ctx.change(software.where(WINLOGON, name), "set", text, replacement)
            changed = True
    return changed


def _computer_name(system: LoadedHive | None) -> str | None:
    if system is None:
        return None
    for cs in control_sets(system):
        key = system.key(f"{cs}\\Control\\ComputerName\\ComputerName")
        value = key.value("ComputerName") if key is not None else None
        if value is not None and isinstance(value.data, str) and value.data:
            return value.data
    return None


OPERATION = Operation(
    name="windows-domain-leave",
    description="A domain member leaves the master's domain: $MACHINE.ACC, cached logons and NL$KM "
    "removed, primary domain reset to a workgroup (the DC is not touched)",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=DomainLeaveOptions,
)
