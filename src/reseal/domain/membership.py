"""A Linux image's domain membership, read offline: who its machine secrets belong to.

Where a joined Linux machine keeps its identity in a domain:
- Kerberos keytabs (/etc/krb5.keytab, or what sssd.conf/smb.conf name): the machine
  principal NAME$@REALM and its SPNs, with key version numbers (kvno);
- Samba's secrets.tdb: the machine password, the local machine SID, the domain SID/GUID;
- caches: SSSD's /var/lib/sss/db and memory caches, winbind's caches, Samba/SSSD logs;
- configuration naming the machine: sssd.conf (ad_hostname, ldap_sasl_authid), smb.conf
  (netbios name), realmd.conf, FreeIPA's /etc/ipa/default.conf (host).

`read_membership` gathers this for `reseal inspect`; `master_state` lists what
`linux-domain-leave` removes or rewrites; `scan_domain_traces` is `reseal verify`'s check of
the binary stores (keytab entries and TDB records, with reseal's own bounded parsers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reseal.domain import tdb
from reseal.domain.keytab import KeytabEntry, KeytabError, parse_keytab
from reseal.errors import ResealError
from reseal.image.guestfs import GuestFS

SYSTEM_KEYTAB = "/etc/krb5.keytab"
SECRETS_TDBS = ("/var/lib/samba/private/secrets.tdb", "/var/lib/samba/secrets.tdb",
                "/etc/samba/secrets.tdb")
# caches and logs of the master's membership (virt-sysprep: samba-db-log, sssd-db-log)
SAMBA_CACHE_FILES = ("/var/lib/samba/winbindd_cache.tdb", "/var/cache/samba/winbindd_cache.tdb",
                     "/var/cache/samba/netsamlogon_cache.tdb", "/var/cache/samba/gencache.tdb",
                     "/var/lib/samba/gencache_notrans.tdb", "/var/cache/samba/gencache_notrans.tdb",
                     "/var/lib/samba/netsamlogon_cache.tdb", "/var/cache/samba/samlogon_cache.tdb",
                     "/var/lib/samba/private/netlogon_creds_cli.tdb",
                     "/var/lib/samba/private/krb5.conf")
CACHE_DIRS = ("/var/lib/sss/db", "/var/lib/sss/mc", "/var/lib/sss/pubconf", "/var/log/sssd",
              "/var/log/samba", "/var/lib/ipa-client/pki")
IPA_FILES = ("/var/log/ipaclient-install.log", "/var/log/ipaclient-uninstall.log")
NAMING_CONFIGS = ("/etc/sssd/sssd.conf", "/etc/samba/smb.conf", "/etc/realmd.conf",
                  "/etc/ipa/default.conf")
MAX_CONFIG_BYTES = 1 << 20
MAX_STORE_BYTES = 64 << 20
MAX_DIR_FILES = 10000


@dataclass
class KeytabInfo:
    path: str
    principals: dict[str, list[int]] = field(default_factory=dict)  # principal -> kvnos
    enctypes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class SambaSecrets:
    path: str
    machine_password_domains: list[str] = field(default_factory=list)
    machine_sids: dict[str, str] = field(default_factory=dict)  # SECRETS/SID/<name> -> SID
    keys: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class DomainMembership:
    """The domain identity an image carries (the inspect report's `domain` block)."""

    realm: str | None = None
    machine_principal: str | None = None  # NAME$@REALM from a keytab or secrets.tdb
    kvnos: list[int] = field(default_factory=list)
    belongs_to: str | None = None  # "this machine" or "another machine (NAME)"
    keytabs: list[KeytabInfo] = field(default_factory=list)
    samba: list[SambaSecrets] = field(default_factory=list)
    sssd_domains: list[str] = field(default_factory=list)
    caches: list[str] = field(default_factory=list)
    first_boot_join: str | None = None  # a pending first-boot join installed by reseal


def _read(fs: GuestFS, path: str, limit: int) -> bytes | None:
    try:
        if fs.is_symlink(path) or not fs.is_file(path):
            return None
        if fs.stat(path).st_size > limit:
            return None
        return fs.read_bytes(path, limit=limit)
    except (OSError, ResealError):
        return None


def _text(fs: GuestFS, path: str) -> str:
    data = _read(fs, path, MAX_CONFIG_BYTES)
    return data.decode("utf-8", errors="replace") if data is not None else ""


def _ini_values(text: str, key: str) -> list[str]:
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
    return [m.group(1) for m in pattern.finditer(text)]


def keytab_paths(fs: GuestFS) -> list[str]:
    paths = [SYSTEM_KEYTAB]
    sssd = _text(fs, "/etc/sssd/sssd.conf")
    smb = _text(fs, "/etc/samba/smb.conf")
    for value in (*_ini_values(sssd, "krb5_keytab"), *_ini_values(sssd, "ldap_krb5_keytab"),
                  *_ini_values(smb, "dedicated keytab file")):
        value = value.removeprefix("FILE:")
        if value.startswith("/") and value not in paths:
            paths.append(value)
    return paths


def read_keytab(fs: GuestFS, path: str) -> tuple[KeytabInfo, list[KeytabEntry]] | None:
    data = _read(fs, path, MAX_STORE_BYTES)
    if data is None:
        return None
    info = KeytabInfo(path)
    try:
        entries = parse_keytab(data)
    except KeytabError as exc:
        info.error = str(exc)
        return info, []
    for entry in entries:
        info.principals.setdefault(entry.principal, [])
        if entry.kvno not in info.principals[entry.principal]:
            info.principals[entry.principal].append(entry.kvno)
        if entry.enctype_name not in info.enctypes:
            info.enctypes.append(entry.enctype_name)
    return info, entries


def read_secrets(fs: GuestFS, path: str) -> SambaSecrets | None:
    data = _read(fs, path, MAX_STORE_BYTES)
    if data is None:
        return None
    secrets = SambaSecrets(path)
    try:
        records = tdb.parse_tdb(data)
    except tdb.TdbError as exc:
        secrets.error = str(exc)
        return secrets
    for record in records:
        key = record.key_text
        secrets.keys.append(key)
        if key.startswith("SECRETS/MACHINE_PASSWORD/"):
            secrets.machine_password_domains.append(key.rsplit("/", 1)[1])
        elif key.startswith("SECRETS/SID/"):
            sid = tdb.sid_from_samba(record.data)
            if sid:
                secrets.machine_sids[key.rsplit("/", 1)[1]] = sid
    return secrets


def cache_files(fs: GuestFS) -> list[str]:
    found = [path for path in (*SAMBA_CACHE_FILES, *IPA_FILES) if _safe_is_file(fs, path)]
    for directory in CACHE_DIRS:
        if not _safe_is_dir(fs, directory):
            continue
        for top, _dirs, files in fs.walk(directory):
            found.extend(f"{top.rstrip('/')}/{name}" for name in sorted(files))
            if len(found) > MAX_DIR_FILES:
                return found
    return found


def _safe_is_file(fs: GuestFS, path: str) -> bool:
    try:
        return fs.is_file(path) and not fs.is_symlink(path)
    except (OSError, ResealError):
        return False


def _safe_is_dir(fs: GuestFS, path: str) -> bool:
    try:
        return fs.is_dir(path) and not fs.is_symlink(path)
    except (OSError, ResealError):
        return False


def machine_principals(entries: list[KeytabEntry]) -> list[str]:
    """NAME$@REALM principals (one component ending in $) in keytab order."""
    seen: list[str] = []
    for entry in entries:
        if len(entry.components) == 1 and entry.components[0].endswith("$") and \
                entry.principal not in seen:
            seen.append(entry.principal)
    return seen


def read_membership(fs: GuestFS, hostname: str | None) -> DomainMembership | None:
    """The image's domain membership; None when it shows no sign of one."""
    member = DomainMembership()
    all_entries: list[KeytabEntry] = []
    for path in keytab_paths(fs):
        read = read_keytab(fs, path)
        if read is not None:
            member.keytabs.append(read[0])
            all_entries.extend(read[1])
    for path in SECRETS_TDBS:
        secrets = read_secrets(fs, path)
        if secrets is not None:
            member.samba.append(secrets)
    sssd = _text(fs, "/etc/sssd/sssd.conf")
    member.sssd_domains = [m.group(1) for m in re.finditer(r"^\s*\[domain/([^\]]+)\]", sssd,
                                                            re.MULTILINE)]
    member.caches = cache_files(fs)
    pending = _text(fs, "/etc/reseal/firstboot.json")
    if pending and not _safe_is_file(fs, "/var/lib/reseal-firstboot/joined"):
        match = re.search(r'"sam_account_name":\s*"([^"]+)"', pending)
        if match:
            member.first_boot_join = f"pending: joins as {match.group(1)} on first boot"
    principals = machine_principals(all_entries)
    if principals:
        member.machine_principal = principals[0]
        member.realm = principals[0].rsplit("@", 1)[1]
        member.kvnos = sorted({e.kvno for e in all_entries
                               if e.principal == member.machine_principal})
    else:
        for secrets in member.samba:
            if secrets.machine_password_domains:
                names = [n for n in secrets.machine_sids if n not in
                         secrets.machine_password_domains]
                if names:
                    member.machine_principal = f"{names[0]}$ (domain "\
                        f"{secrets.machine_password_domains[0]})"
                break
    krb5 = _text(fs, "/etc/krb5.conf")
    realms = _ini_values(krb5, "default_realm")
    if member.realm is None and realms:
        member.realm = realms[0].upper()
    if member.machine_principal and hostname:
        owner = member.machine_principal.split("$", 1)[0]
        short = hostname.split(".", 1)[0]
        member.belongs_to = ("this machine" if owner.lower() == short.lower()
                             else f"another machine ({owner}), not {short}")
    if not (member.keytabs or member.samba or member.sssd_domains or member.caches or
            member.first_boot_join or realms):
        return None
    return member


# --- the master's identity in those stores ----------------------------------------------


def name_pattern(names: list[str]) -> re.Pattern[str] | None:
    """Matches any of `names` as a whole host name (not inside a longer name)."""
    names = [n for n in names if n]
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
    return re.compile(rf"(?<![\w.-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


def principal_names_master(entry: KeytabEntry, pattern: re.Pattern[str]) -> bool:
    """An entry of the master: NAME$, or a service principal whose host is the master."""
    components = list(entry.components)
    if len(components) == 1:
        return bool(pattern.fullmatch(components[0].rstrip("$")))
    # host/NAME, host/name.domain, cifs/name.domain:445 ...: the host's first label
    return any(pattern.fullmatch(c.split(".", 1)[0].split(":", 1)[0]) for c in components[1:])


@dataclass(frozen=True)
class DomainTrace:
    where: str
    what: str
    match: str


def scan_domain_traces(fs: GuestFS, old_identity: dict[str, str]) -> list[DomainTrace]:
    """Keytab entries and TDB records that still name the old machine (verify)."""
    hostname = old_identity.get("hostname")
    account = old_identity.get("domain-account")  # MASTER$@REALM
    names = []
    if hostname:
        names += [hostname, hostname.split(".", 1)[0]]
    if account:
        names.append(account.split("@", 1)[0].rstrip("$"))
    pattern = name_pattern(names)
    old_sid = old_identity.get("samba-machine-sid")
    traces: list[DomainTrace] = []
    if pattern is not None:
        for path in keytab_paths(fs):
            read = read_keytab(fs, path)
            if read is None:
                continue
            info, entries = read
            if info.error:
                traces.append(DomainTrace(path, "keytab (unreadable)", info.error))
            for principal in sorted({e.principal for e in entries
                                     if principal_names_master(e, pattern)}):
                traces.append(DomainTrace(path, "domain-account (keytab entry)", principal))
    for path in SECRETS_TDBS:
        secrets = read_secrets(fs, path)
        if secrets is None:
            continue
        if secrets.error:
            traces.append(DomainTrace(path, "secrets.tdb (unreadable)", secrets.error))
            continue
        for key in secrets.keys:
            if pattern is not None and pattern.search(key.replace("/", " ")):
                traces.append(DomainTrace(path, "hostname (secrets.tdb key)", key))
        for name, sid in secrets.machine_sids.items():
            if old_sid and sid == old_sid:
                traces.append(DomainTrace(path, "samba-machine-sid", f"SECRETS/SID/{name}"))
        if account:
            for domain in secrets.machine_password_domains:
                traces.append(DomainTrace(path, "domain-account (machine password)",
                                          f"SECRETS/MACHINE_PASSWORD/{domain}"))
    return traces
