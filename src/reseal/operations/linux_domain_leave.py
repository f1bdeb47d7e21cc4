"""linux-domain-leave: remove the master's domain identity from the clone, offline.

A clone of a domain member carries the master's machine secret. When any copy renews it
(SSSD/adcli every 30 days, winbind per `machine password timeout`), the master and every
other copy stop authenticating ("Preauthentication failed"). This operation leaves that
identity locally — nothing on the DC is touched, the master's account least of all:

- keytab entries of the master (NAME$ and its SPNs) in /etc/krb5.keytab and the keytabs
  sssd.conf/smb.conf name; other principals are kept; an empty keytab is removed;
- Samba's secrets.tdb (machine password, local machine SID: Samba makes a new SID);
- caches and logs: /var/lib/sss/db, SSSD memory caches, winbind/netlogon caches, Samba and
  SSSD logs, FreeIPA client logs (virt-sysprep's kerberos-hostkeytab, samba-db-log,
  sssd-db-log, ipa-client);
- the master's name in sssd.conf, smb.conf, realmd.conf and /etc/ipa/default.conf becomes
  the clone's, so the domain configuration stays and points at the new name.

Every file goes through the undo journal. With `action: report` nothing is removed, and
each store is listed as a warning (never kept silently); a `domain:` join needs `remove`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reseal.domain.keytab import serialize_keytab
from reseal.domain.membership import (
    NAMING_CONFIGS,
    SECRETS_TDBS,
    cache_files,
    keytab_paths,
    name_pattern,
    principal_names_master,
    read_keytab,
    read_secrets,
)
from reseal.errors import BadInput
from reseal.image.guestfs import GuestFS
from reseal.image.model import OSFamily
from reseal.linux.guest import edit_text
from reseal.linux.names import short_name
from reseal.operations._linux_support import preflight
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.operations.linux_hostname import current_hostname

ORDER = 6  # after linux-domain-join's checks (ORDER 5), before the host name changes
ACTIONS = ("remove", "report")
MAX_LISTED = 20


@dataclass
class DomainLeaveOptions:
    action: str = "remove"  # "remove" the master's domain state, or only "report" it


def validate(request: IdentityRequest, options: Any) -> None:
    action = getattr(options, "action", "remove")
    if action not in ACTIONS:
        raise BadInput(f"linux-domain-leave: action {action!r} must be remove or report")
    if request.domain is not None and action != "remove":
        raise BadInput("linux-domain-leave: a domain join needs the master's identity "
                       "removed (action: remove); report leaves the master's secret in the clone")


def rename_host(text: str, old_short: str, old_fqdn: str | None, new_short: str,
                new_fqdn: str | None) -> str:
    """The master's FQDN and short name, as whole host names, replaced by the clone's
    (an upper-case NAME or NAME$ stays upper-case)."""
    if old_fqdn and new_fqdn:
        text = re.sub(rf"(?<![\w.-]){re.escape(old_fqdn)}(?![\w-])", new_fqdn.lower(), text,
                      flags=re.IGNORECASE)

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        return new_short.upper() if found.isupper() else new_short.lower()

    return re.sub(rf"(?<![\w.-]){re.escape(old_short)}(?![\w.-]|\.[A-Za-z])", replace, text,
                  flags=re.IGNORECASE)


def _master_fqdn(fs: GuestFS, short: str) -> str | None:
    """The master's FQDN as its own configuration spells it (hosts, sssd ad_hostname)."""
    for path in ("/etc/hosts", "/etc/sssd/sssd.conf", "/etc/ipa/default.conf"):
        if fs.is_file(path):
            match = re.search(rf"(?<![\w.-])({re.escape(short)}\.[A-Za-z0-9.-]+)",
                              fs.read_text(path), re.IGNORECASE)
            if match:
                return match.group(1).rstrip(".").lower()
    return None


def apply(ctx: OperationContext) -> None:
    fs = ctx.system.fs
    action = getattr(ctx.options, "action", "remove")
    master = current_hostname(fs)
    master_short = short_name(master) if master else None
    names = [n for n in (master, master_short) if n]
    keytabs = []
    for path in keytab_paths(fs):
        read = read_keytab(fs, path)
        if read is not None:
            keytabs.append((path, *read))
    machine_names = [e.components[0].rstrip("$") for _p, _i, entries in keytabs for e in entries
                     if len(e.components) == 1 and e.components[0].endswith("$")]
    secrets = [s for s in (read_secrets(fs, p) for p in SECRETS_TDBS) if s is not None]
    pattern = name_pattern(names + machine_names)
    caches = cache_files(fs)
    if not keytabs and not secrets and not caches:
        ctx.note("no keytab, Samba secrets or SSSD/winbind state: nothing of a domain to leave")
        return
    principal = next((f"{n.upper()}$@{e.realm}" for _p, _i, entries in keytabs for e in entries
                      for n in [e.components[0].rstrip("$")]
                      if len(e.components) == 1 and e.components[0].endswith("$")), None)
    if principal is None:
        for store in secrets:
            if store.machine_password_domains:
                owner = next(iter(n for n in store.machine_sids
                                  if n not in store.machine_password_domains), master_short)
                principal = f"{(owner or '?').upper()}$ (domain "\
                    f"{store.machine_password_domains[0]})"
    found: list[str] = []
    for path, info, entries in keytabs:
        master_entries = [e for e in entries if pattern and principal_names_master(e, pattern)]
        if info.error:
            found.append(f"{path}: unreadable keytab ({info.error})")
        elif master_entries:
            found.append(f"{path}: {len(master_entries)} keys of "
                         f"{', '.join(sorted({e.principal for e in master_entries})[:3])}")
    for store in secrets:
        found.append(f"{store.path}: Samba machine secrets ("
                     f"{', '.join(store.machine_password_domains) or 'no machine password'})")
    if caches:
        found.append(f"{len(caches)} cache/log file(s) of SSSD, winbind or the IPA client "
                     f"({', '.join(caches[:3])}{', ...' if len(caches) > 3 else ''})")
    if action == "report":
        ctx.warn_at_most([f"{item}: still the master's domain identity (kept: action report)"
                          for item in found], MAX_LISTED,
                         "{count} more domain stores kept")
        if principal:
            ctx.identity("domain-account", principal, principal)
        return

    preflight(ctx)
    for path, info, entries in keytabs:
        keep = [e for e in entries if not (pattern and principal_names_master(e, pattern))]
        if info.error or not keep:
            fs.remove(path)
            ctx.change(path, "remove", f"{len(entries)} keys" if not info.error else info.error)
        elif len(keep) != len(entries):
            fs.write_bytes(path, serialize_keytab(keep), mode=0o600)
            ctx.change(path, "write", f"{len(entries)} keys", f"{len(keep)} keys of other "
                       "principals kept")
    for store in secrets:
        fs.remove(store.path)
        ctx.change(store.path, "remove", ", ".join(store.machine_password_domains) or None)
        other = [k for k in store.keys if not k.startswith((
            "SECRETS/MACHINE_", "SECRETS/SID/", "SECRETS/DOMGUID/", "SECRETS/PROTECT/IDS/",
            "SECRETS/SALTING_PRINCIPAL", "SECRETS/DOMTRUST_ACCT_PASS", "SECRETS/AUTH_"))]
        if other:
            ctx.note(f"{store.path} also held {', '.join(other[:5])}: set those again on the "
                     "clone (e.g. smbpasswd -w for an LDAP admin password)")
        for name, sid in store.machine_sids.items():
            if master_short and name.upper() == master_short.upper():
                ctx.identity("samba-machine-sid", sid, None)
    for path in caches:
        fs.remove(path)
    if caches:
        ctx.change("SSSD/winbind/IPA caches and logs", "remove", f"{len(caches)} files")
    if principal:
        ctx.identity("domain-account", principal, None)
    new = ctx.request.hostname
    if master_short and new:
        new_short = short_name(new)
        old_fqdn = _master_fqdn(fs, master_short)
        domain = ctx.request.domain
        new_fqdn = new.lower() if "." in new else (
            f"{new_short.lower()}.{domain.name.lower()}" if domain is not None else
            (f"{new_short.lower()}.{old_fqdn.split('.', 1)[1]}" if old_fqdn else None))
        for path in NAMING_CONFIGS:
            if edit_text(fs, path, lambda text: rename_host(text, master_short, old_fqdn,
                                                            new_short, new_fqdn)):
                ctx.change(path, "set", old_fqdn or master_short, new_fqdn or new_short)
    if ctx.request.domain is None and (principal or secrets):
        ctx.note("the clone no longer holds the master's domain secret; join it with a "
                 "domain: section (reseal) or adcli/realm join")


OPERATION = Operation(
    name="linux-domain-leave",
    description="remove the master's domain identity (keytab entries, Samba secrets.tdb, "
    "SSSD/winbind caches, IPA client logs) and point sssd/smb/realmd/IPA config at the new "
    "name; action: report only lists them",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
    options_type=DomainLeaveOptions,
)
