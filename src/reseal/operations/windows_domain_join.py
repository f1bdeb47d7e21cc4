"""windows-domain-join: join a Windows clone to the answer file's domain offline, like
`djoin /provision` on the imaging host followed by `djoin /requestodj /windowspath`.

With a `domain:` section (or `--join-domain`), the imaging host (never the image) binds to a DC
over LDAPS or StartTLS with the DC certificate checked (`reseal.domain.ldapacct`), creates the
clone's computer account under its new name in `ou` with a random 120-character password
(adcli's attribute set with Windows' own values: operatingSystem and operatingSystemVersion
from SOFTWARE, as Windows sets them on its account), and writes the join into the image:
`$MACHINE.ACC`, the primary- and DNS-domain policy, the Tcpip primary DNS suffix, Netlogon's
start type and JoinDomain record, the domain's groups in the local Administrators and Users,
Winlogon's CachePrimaryDomain. What each value is, and the sources, are in
`reseal.windows.odj`. The clone boots as a member under its own name: no first-boot network
join, no join credential in the image (`domain.mode` does not apply: a Windows clone is always
joined this way).

Safety order, as `linux-domain-join`: every refusal (no name of its own, unreadable join
password, TLS or certificate, the bind, the domain, the OU, an existing account without
`reuse_existing`, the master's own account, an LSA key that SYSTEM's boot key does not open)
happens when this operation runs, first of the Windows operations (ORDER 5), before any file
of the image is written. The account is made in a commit after every operation has run (so
after windows-domain-leave cleared the master's membership), then the join is written into
the hives and the hives are committed at once; if that write fails, the account just created
is deleted again (no orphan). The join password is never stored, printed or reported; the
machine password exists in memory and, encrypted by the LSA key, in SECURITY only.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reseal.domain.join import JoinPlan, account_for, check_request, open_join
from reseal.domain.ldapacct import ComputerSpec, DomainError
from reseal.domain.netlogon import DS_DNS_CONTROLLER_FLAG, DcPing, PingError, parse_ping
from reseal.domain.passwords import machine_password
from reseal.domain.settings import DomainSettings
from reseal.errors import BadInput, ResealError
from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.windows import odj
from reseal.windows.domain import read_domain_state
from reseal.windows.hives import SHARED_KEY as HIVES_KEY
from reseal.windows.hives import HiveSet, LoadedHive, hive_set
from reseal.windows.lsa import LsaSecrets, boot_key
from reseal.windows.sid import Sid

ORDER = 5  # first of the Windows operations: its refusals come before any write
SHARED_KEY = "windows:domain-join"
CURRENT_VERSION = "Microsoft\\Windows NT\\CurrentVersion"
# DS_DS_FLAG | DS_KDC_FLAG | DS_LDAP_FLAG | DS_WRITABLE_FLAG | DS_DNS_CONTROLLER_FLAG |
# DS_DNS_DOMAIN_FLAG | DS_DNS_FOREST_FLAG: what a DC that answered LDAPS and made an account is
FALLBACK_DC_FLAGS = 0x10 | 0x20 | 0x8 | 0x100 | DS_DNS_CONTROLLER_FLAG | 0x40000000 | 0x80000000


def clone_name(request: IdentityRequest, domain: DomainSettings) -> tuple[str, str]:
    """(NetBIOS computer name, FQDN) of the clone in `domain`."""
    if request.hostname is None:
        raise BadInput("domain join: the clone needs a computer name of its own (--hostname, "
                       "or hostname in the answer file) to get an account of its own")
    name = request.hostname.split(".", 1)[0].upper()
    return name, f"{name.lower()}.{domain.name.lower()}"


def validate(request: IdentityRequest, options: Any) -> None:
    domain = request.domain
    if domain is None:
        return
    name, _fqdn = clone_name(request, domain)
    check_request(domain, name, [p for p in domain.problems() if not p.startswith("mode ")],
                  "choose a computer name of at most 15 characters")


@dataclass
class _WindowsJoin:
    """The account and hive work left for the end of the run (see the module docstring)."""

    ctx: OperationContext
    plan: JoinPlan
    hives: HiveSet
    lsa: LsaSecrets
    dc: odj.DcRecord | None

    def commit(self) -> None:
        ctx, plan = self.ctx, self.plan
        try:
            if ctx.dry_run:
                # the plan shows every value the join writes; nothing reaches the image
                self._write_image(machine_password(), None)
                return
            password = machine_password()
            with account_for(plan, password, ctx.change, ctx.warn) as account:
                self._write_image(password, Sid.parse(account.sid) if account.sid else None)
                self.hives.commit()
        finally:
            plan.session.close()
        ctx.identity("domain-account", None, plan.principal)
        ctx.note(f"joined {plan.info.dns_name} offline as {plan.spec.sam_account_name} "
                 f"({account.dn}); the clone boots as a member (JoinDomain names "
                 f"{self.dc.host if self.dc else 'no DC'})")

    def _write_image(self, password: str, account_sid: Sid | None) -> None:
        ctx, info = self.ctx, self.plan.info
        join = odj.JoinRecord(
            netbios_domain=info.netbios_name, dns_domain=info.dns_name,
            forest=info.forest or info.dns_name, domain_sid=Sid.parse(info.sid),
            domain_guid=uuid.UUID(info.guid), computer_name=self.plan.spec.name,
            account_sid=account_sid, dc=self.dc)
        record = ctx.change
        security = self.hives.require("SECURITY")
        odj.write_policy(security, join, record)
        odj.write_machine_secret(security, self.lsa, password, record, datetime.now(UTC))
        self.hives.mark_changed(security)
        system = self.hives.require("SYSTEM")
        for note in odj.write_system(system, join, record):
            ctx.note(note)
        self.hives.mark_changed(system)
        sam = self.hives.config("SAM")
        if sam is not None and odj.write_local_groups(sam, join, record):
            self.hives.mark_changed(sam)
        software = self.hives.config("SOFTWARE")
        if software is not None and odj.write_winlogon(software, join, record):
            self.hives.mark_changed(software)


def _run_before_hives(shared: dict[str, Any], key: str, value: object) -> None:
    """Put `value` into the run's shared state ahead of the hive set, so that its commit
    (account, then hive edits) runs before the hives are written, and writes them itself."""
    hives = shared.pop(HIVES_KEY, None)
    shared[key] = value
    if hives is not None:
        shared[HIVES_KEY] = hives


def _software_version(software: LoadedHive | None) -> tuple[str, str | None]:
    """(operatingSystem, operatingSystemVersion) as Windows sets them on its account:
    ProductName and "major.minor (build)"."""
    key = software.key(CURRENT_VERSION) if software is not None else None
    if key is None:
        return "Windows", None

    def text(name: str) -> str | None:
        value = key.value(name)
        return str(value.data).strip("\0 ") if value is not None and value.data is not None \
            else None

    product = (text("ProductName") or "Windows")[:64]
    build = text("CurrentBuildNumber") or text("CurrentBuild")
    major, minor = key.value("CurrentMajorVersionNumber"), key.value("CurrentMinorVersionNumber")
    if major is not None and minor is not None:
        version = f"{major.data!s}.{minor.data!s}"
    else:
        version = text("CurrentVersion") or ""
    if not version:
        return product, None
    return product, f"{version} ({build})" if build else version


def _master_names(system: LoadedHive, security: LoadedHive) -> set[str]:
    from reseal.operations.windows_computer_name import old_computer_names

    return {n.upper() for n in old_computer_names(system, security)}


def _dc_record(plan: JoinPlan, domain: DomainSettings, ctx: OperationContext) -> odj.DcRecord:
    """The DC that makes the account, as DsGetDcName would report it (LDAP ping)."""
    ping: DcPing | None = None
    try:
        raw = plan.session.netlogon_ping()
        ping = parse_ping(raw) if raw else None
    except (PingError, DomainError) as exc:
        ctx.note(f"the DC gave no usable LDAP ping answer ({exc}); JoinDomain gets the flags of "
                 "a writable DC and no site")
    address = None
    for candidate in (domain.firstboot_address, domain.address):
        if candidate:
            try:
                address = str(ipaddress.ip_address(candidate))
                break
            except ValueError:
                continue
    address = address or plan.session.peer_address() or plan.info.dc_dns_name
    if ping is None:
        return odj.DcRecord(host=plan.info.dc_dns_name, address=address, flags=FALLBACK_DC_FLAGS)
    return odj.DcRecord(host=ping.dc_host or plan.info.dc_dns_name, address=address,
                        flags=ping.locator_flags, dc_site=ping.dc_site,
                        client_site=ping.client_site)


def apply(ctx: OperationContext) -> None:
    domain = ctx.request.domain
    if domain is None:
        ctx.note("no domain requested")
        return
    windows = ctx.system
    assert isinstance(windows, WindowsSystem)
    hives = hive_set(ctx)
    system, security = hives.config("SYSTEM"), hives.config("SECURITY")
    if system is None or security is None:
        raise BadInput(f"{windows.system_root}/System32/config: SYSTEM or SECURITY is "
                       "missing; a domain join writes both")
    try:
        lsa = LsaSecrets.open(security.hive, boot_key(system.hive))
    except ResealError as exc:
        raise BadInput(f"domain join: the LSA key in SECURITY cannot be opened ({exc}); the "
                       "machine secret cannot be written") from None
    name, fqdn = clone_name(ctx.request, domain)
    os_name, os_version = _software_version(hives.config("SOFTWARE"))
    spec = ComputerSpec(name=name, dns_host_name=fqdn, enctypes=domain.enctype_bits,
                        os_name=os_name, os_version=os_version)
    plan = open_join(domain, spec, _master_names(system, security))
    try:
        dc = _dc_record(plan, domain, ctx)
    except BaseException:
        plan.session.close()
        raise
    where = f"domain:{plan.info.realm}"
    if plan.existing is not None:
        ctx.change(where, "reset", plan.existing.dn, f"{spec.sam_account_name} (reuse_existing)")
    else:
        ctx.change(where, "create", None, f"CN={name},{plan.container}")
    _run_before_hives(ctx.shared, SHARED_KEY, _WindowsJoin(ctx, plan, hives, lsa, dc))
    state = read_domain_state(security.hive)
    ctx.note(f"offline join of {spec.sam_account_name} to {plan.info.dns_name} (domain SID "
             f"{plan.info.sid}) through {domain.endpoint().describe()}; the master was "
             f"{state.describe()}")


OPERATION = Operation(
    name="windows-domain-join",
    description="with domain: (or --join-domain), join the Windows clone offline like djoin: "
    "a computer account of its own over LDAPS, $MACHINE.ACC, domain policy, DNS suffix, "
    "Netlogon and local groups written into the image",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
)
