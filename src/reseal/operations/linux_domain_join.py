"""linux-domain-join: join the clone to the answer file's Active Directory domain under its
own name, and install the first-boot hook (also for `firstboot.commands` alone).

Two modes (`domain.mode`):
- `firstboot` (default): the imaging host pre-stages the clone's computer account with a
  random one-time password (like `adcli preset-computer --one-time-password`) and installs
  `reseal-firstboot.service`; on its first boot the clone binds as NAME$, changes that
  password to its own (the imaging host never knows the final secret) and writes its keytab.
- `offline`: the imaging host creates the account with a random password and writes the
  keytab into the image; no first-boot network needed.

Safety order: everything that can refuse — the guest's python3, the join password, TLS and
the DC certificate, the bind, the OU, an existing account of that name, the master's own
account — is checked when this operation runs, first of the Linux operations (ORDER 5),
before any file of the image is written. The account itself is created last, after every
operation has written its files (a `commit` in the run's shared state); if writing the
hook or keytab then fails, the account just made is deleted again, so no orphan is left.
The join password is read when the run starts and never stored, printed or reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reseal.domain import keytab, krbkeys
from reseal.domain.hook import CA_PATH, HookPlan, guest_python_problem, install_hook
from reseal.domain.join import JoinPlan, account_for, check_request, open_join
from reseal.domain.ldapacct import ComputerAccount, ComputerSpec
from reseal.domain.membership import SYSTEM_KEYTAB, read_keytab
from reseal.domain.passwords import machine_password
from reseal.domain.settings import DomainSettings
from reseal.errors import BadInput
from reseal.image.guestfs import GuestFS
from reseal.image.model import OSFamily
from reseal.linux import shellvars
from reseal.linux.guest import os_release
from reseal.linux.names import short_name
from reseal.operations._linux_support import preflight
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.operations.linux_hostname import current_hostname

ORDER = 5  # first: its refusals must come before any other operation writes
SHARED_KEY = "linux:domain-join"


def clone_names(request: IdentityRequest, domain: DomainSettings) -> tuple[str, str]:
    """(NetBIOS computer name, FQDN) of the clone in `domain`."""
    if request.hostname is None:
        raise BadInput("domain join: the clone needs its own host name (--hostname, or "
                       "hostname in the answer file) to get an account of its own")
    short = short_name(request.hostname)
    fqdn = request.hostname.lower() if "." in request.hostname else \
        f"{short.lower()}.{domain.name.lower()}"
    return short.upper(), fqdn


def validate(request: IdentityRequest, options: Any) -> None:
    domain = request.domain
    if domain is None:
        return
    name, _fqdn = clone_names(request, domain)
    check_request(domain, name, domain.problems(),
                  "choose a host name whose first label has at most 15 characters")


@dataclass
class _Join:
    """The account work left for the end of the run (see the module docstring)."""

    ctx: OperationContext
    plan: JoinPlan
    hook: HookPlan
    ca_pem: bytes | None

    def commit(self) -> None:
        ctx, plan = self.ctx, self.plan
        if ctx.dry_run:
            plan.session.close()
            return
        password = machine_password()
        try:
            with account_for(plan, password, ctx.change, ctx.warn) as account:
                if plan.domain.mode == "offline":
                    self._write_keytab(account, password)
                else:
                    self._install_hook(account, password)
        finally:
            plan.session.close()
        old = ctx.log.identity.get("domain-account")
        ctx.identity("domain-account", old.old if old else None, plan.principal)

    def _write_keytab(self, account: ComputerAccount, password: str) -> None:
        fs, spec, realm = self.ctx.system.fs, self.plan.spec, self.plan.info.realm
        kvno = account.kvno or self.plan.session.key_version(account.dn)
        keys = krbkeys.derive_keys(password, krbkeys.computer_salt(realm, spec.name),
                                   krbkeys.enctypes_for(spec.enctypes))
        entries = keytab.machine_entries(realm, spec.name, spec.dns_host_name, kvno, keys)
        existing = read_keytab(fs, SYSTEM_KEYTAB)
        kept = existing[1] if existing is not None else []
        fs.write_bytes(SYSTEM_KEYTAB, keytab.serialize_keytab(
            keytab.replace_principals(kept, entries)), mode=0o600)
        self.ctx.change(SYSTEM_KEYTAB, "write", None,
                        f"{len(entries)} keys for {self.plan.principal}, kvno {kvno}")

    def _install_hook(self, account: ComputerAccount, one_time_password: str) -> None:
        domain, info, spec = self.plan.domain, self.plan.info, self.plan.spec
        self.hook.domain = {
            "name": info.dns_name, "netbios_name": info.netbios_name,
            "computer_name": spec.name, "sam_account_name": spec.sam_account_name,
            "account_dn": account.dn, "spns": spec.spns(), "enctypes": spec.enctypes,
            "address": domain.firstboot_address or domain.controller_name,
            "server_name": domain.controller_name, "tls": domain.tls, "port": domain.port,
            "ca_file": CA_PATH if self.ca_pem is not None else None,
        }
        written = install_hook(self.ctx.system.fs, self.hook,
                               one_time_password=one_time_password, ca_pem=self.ca_pem)
        for path in written:
            self.ctx.change(path, "write")
        self.ctx.note(f"first boot joins as {spec.sam_account_name}: it changes the one-time "
                      "password to its own and writes /etc/krb5.keytab "
                      "(journalctl -u reseal-firstboot)")


def _os_name(fs: GuestFS) -> str:
    """operatingSystem as adcli sets it: the distribution's NAME from os-release."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if fs.is_file(path):
            name = shellvars.get(fs.read_text(path), "NAME")
            if name:
                return name[:64]
    return "Linux"


def _read_ca(domain: DomainSettings) -> bytes | None:
    if domain.ca_file is None:
        return None
    try:
        return domain.ca_file.read_bytes()
    except OSError as exc:
        raise BadInput(f"{domain.ca_file}: cannot read the CA file ({exc.strerror})") from None


def apply(ctx: OperationContext) -> None:
    domain = ctx.request.domain
    firstboot = ctx.request.firstboot
    commands = list(firstboot.commands) if firstboot is not None else []
    fs = ctx.system.fs
    if domain is None and not commands:
        ctx.note("no domain and no first-boot commands requested")
        return
    preflight(ctx)
    needs_hook = commands or (domain is not None and domain.mode == "firstboot")
    if needs_hook:
        problem = guest_python_problem(fs)
        if problem:
            raise BadInput(f"{problem}: the first-boot program cannot run on this clone; "
                           "install python3 in the master, or use domain.mode: offline "
                           "(the whole join from the imaging host)"
                           + ("" if domain is not None else
                              " (firstboot.commands need the first-boot program too)"))
    hostname = ctx.request.hostname or current_hostname(fs) or "localhost"
    if domain is None:
        fqdn = hostname.lower()
        hook = HookPlan(hostname=short_name(hostname), fqdn=fqdn, commands=commands)
        if not ctx.dry_run:
            for path in install_hook(fs, hook, one_time_password=None, ca_pem=None):
                ctx.change(path, "write")
        ctx.note(f"first boot runs {len(commands)} command(s), each logged with its exit "
                 "code (journalctl -u reseal-firstboot)")
        return
    name, fqdn = clone_names(ctx.request, domain)
    master = current_hostname(fs)
    master_names = {short_name(master).upper()} if master else set()
    existing_keytab = read_keytab(fs, SYSTEM_KEYTAB)
    if existing_keytab is not None:
        master_names |= {e.components[0].rstrip("$").upper() for e in existing_keytab[1]
                         if len(e.components) == 1 and e.components[0].endswith("$")}
    spec = ComputerSpec(name=name, dns_host_name=fqdn, enctypes=domain.enctype_bits,
                        os_name=_os_name(fs), os_version=os_release(fs).version_id or None)
    ca_pem = _read_ca(domain)
    plan = open_join(domain, spec, master_names)
    where = f"domain:{plan.info.realm}"
    if plan.existing is not None:
        ctx.change(where, "reset", plan.existing.dn,
                   f"{spec.sam_account_name} (reuse_existing)")
    else:
        ctx.change(where, "create", None, f"CN={name},{plan.container}")
    ctx.shared[SHARED_KEY] = _Join(ctx, plan, HookPlan(hostname=name.lower(), fqdn=fqdn,
                                                        commands=commands), ca_pem)
    ctx.note(f"{domain.mode} join of {spec.sam_account_name} to {plan.info.dns_name} "
             f"(domain SID {plan.info.sid}) through {domain.endpoint().describe()}")


OPERATION = Operation(
    name="linux-domain-join",
    description="join the clone to the answer file's AD domain under its own name: pre-stage "
    "the account with a one-time password and a first-boot hook that changes it, or join "
    "offline with a keytab; also runs firstboot.commands",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
)
