"""linux-leftovers: after the other operations, look for the master's identity still on disk.

Also the Linux half of `reseal verify`: `scan_linux_leftovers(fs, old_identity)` is called with
the old values a run's report recorded. Scanned:
- every text file under /etc (up to 2 MiB each, 20,000 files, 256 MiB in all): the old host
  name (as a whole word), machine-id, MACs, file-system and connection UUIDs;
- boot loader files under /boot, D-Bus, DHCP and NetworkManager state: the same ids;
- names under /var/log and /var/lib: state named after the old machine-id (the journal's
  /var/log/journal/<id>/, ...), walked to a bounded depth and count;
- the SSH host keys' fingerprints.
The host name is looked for as a whole word. When it is also a word of the distribution's own
name (a master called "debian"), it is looked for only where host names are kept, since every
apt source would name it otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from reseal.errors import ResealError
from reseal.image.guestfs import GuestFS
from reseal.image.model import OSFamily
from reseal.linux.guest import os_release
from reseal.operations.base import Operation, OperationContext
from reseal.operations.linux_ssh_hostkeys import host_fingerprints

ORDER = 90
MAX_TEXT_BYTES = 2 << 20
MAX_FILES = 20_000
MAX_TOTAL_BYTES = 256 << 20
MAX_STATE_ENTRIES = 200_000
MAX_STATE_DEPTH = 6
SCANNED_TREES = ("/etc", "/var/lib/dbus", "/var/lib/NetworkManager", "/var/lib/dhcp",
                 "/var/lib/dhclient", "/var/lib/dhcpcd")
STATE_TREES = ("/var/log", "/var/lib")
BOOT_NAMES = re.compile(r"(grub\.cfg|menu\.lst|grub\.conf|lilo\.conf|.*\.conf)$", re.IGNORECASE)
HOSTNAME_FILES = ("/etc/hostname", "/etc/HOSTNAME", "/etc/hosts", "/etc/mailname",
                  "/etc/sysconfig/network", "/etc/machine-info", "/etc/postfix/main.cf",
                  "/etc/exim4/update-exim4.conf.conf", "/etc/samba/smb.conf",
                  "/etc/sssd/sssd.conf", "/etc/realmd.conf", "/etc/ipa/default.conf",
                  "/etc/krb5.conf")
HOSTNAME_DIRS = ("/etc/ssh", "/etc/NetworkManager/system-connections")
MAX_HITS_WARNED = 20


@dataclass(frozen=True)
class Hit:
    where: str
    what: str  # "hostname", "machine-id", "mac:1", "ssh-host-key:ed25519"...
    match: str


def _text_files(fs: GuestFS) -> list[str]:
    paths: list[str] = []
    for tree in SCANNED_TREES:
        if fs.is_dir(tree):
            for top, _dirs, files in fs.walk(tree):
                paths.extend(f"{top.rstrip('/')}/{name}" for name in sorted(files))
                if len(paths) >= MAX_FILES:
                    return paths[:MAX_FILES]
    if fs.is_dir("/boot"):
        for top, _dirs, files in fs.walk("/boot"):
            paths.extend(f"{top.rstrip('/')}/{name}" for name in sorted(files)
                         if BOOT_NAMES.match(name))
    return paths[:MAX_FILES]


def _read_text(fs: GuestFS, path: str) -> str | None:
    try:
        if fs.is_symlink(path) or not fs.is_file(path) or fs.stat(path).st_size > MAX_TEXT_BYTES:
            return None
        data = fs.read_bytes(path, limit=MAX_TEXT_BYTES)
    except (OSError, ResealError):
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _distribution_words(fs: GuestFS) -> set[str]:
    """Words of the distribution's own names (ID, ID_LIKE, NAME, codename), lower case."""
    try:
        release = os_release(fs)
    except (OSError, ResealError):
        return set()
    text = " ".join(str(v) for v in vars(release).values() if isinstance(v, str | tuple))
    return {w for w in re.split(r"[^a-z0-9]+", text.lower().replace("'", "")) if w}


def _state_entries(fs: GuestFS) -> Iterator[str]:
    """Paths under /var/log and /var/lib, breadth-bounded (names only, nothing read)."""
    count = 0
    for tree in STATE_TREES:
        if not fs.is_dir(tree):
            continue
        base_depth = tree.count("/")
        for top, dirs, files in fs.walk(tree):
            if top.count("/") - base_depth >= MAX_STATE_DEPTH:
                dirs[:] = []
            for name in [*dirs, *files]:
                count += 1
                if count > MAX_STATE_ENTRIES:
                    return
                yield f"{top.rstrip('/')}/{name}"


def scan_linux_leftovers(fs: GuestFS, old_identity: dict[str, str]) -> list[Hit]:
    """Every place the old identity values still appear; an empty list is a clean clone."""
    hits: list[Hit] = []
    anywhere = {name: value for name, value in old_identity.items()
                if value and (name in ("machine-id", "dbus-machine-id")
                              or name.startswith(("mac:", "fs-uuid:", "connection-uuid:", "partuuid:",
                                               "disk-guid", "lvm-")))}
    patterns = {name: re.compile(re.escape(value), re.IGNORECASE)
                for name, value in anywhere.items()}
    hostname = old_identity.get("hostname")
    host_pattern = (re.compile(rf"(?<![\w.-]){re.escape(hostname)}(?![\w-])", re.IGNORECASE)
                    if hostname else None)
    host_files: set[str] | None = None  # None: every text file under /etc
    if hostname and hostname.split(".", 1)[0].lower() in _distribution_words(fs):
        host_files = set(HOSTNAME_FILES)
        for directory in HOSTNAME_DIRS:
            host_files.update(f"{directory}/{n}" for n in fs.listdir(directory))

    total = 0
    for path in _text_files(fs):
        text = _read_text(fs, path)
        if text is None:
            continue
        total += len(text)
        if total > MAX_TOTAL_BYTES:
            break
        for name, pattern in patterns.items():
            if pattern.search(text):
                hits.append(Hit(path, name, anywhere[name]))
        if host_pattern is not None and path.startswith("/etc/") and (
                host_files is None or path in host_files) and host_pattern.search(text):
            hits.append(Hit(path, "hostname", str(hostname)))

    ids = {name: value.lower() for name, value in old_identity.items()
           if value and name in ("machine-id", "dbus-machine-id")}
    if ids:
        for path in _state_entries(fs):
            leaf = path.rsplit("/", 1)[1].lower()
            for name, value in ids.items():
                if value in leaf:
                    hits.append(Hit(path, name, value))

    current = host_fingerprints(fs)
    for name, value in old_identity.items():
        if name.startswith("ssh-host-key:") and value:
            key_type = name.split(":", 1)[1]
            if current.get(key_type) == value:
                hits.append(Hit(f"/etc/ssh/ssh_host_{key_type}_key.pub", name, value))
    return hits


def apply(ctx: OperationContext) -> None:
    if ctx.dry_run:
        ctx.note("dry run: nothing changed yet, so the leftover scan is skipped")
        return
    old = {name: v.old for name, v in ctx.log.identity.items() if v.old and v.old != v.new}
    if not old:
        ctx.note("no identity changed in this run: nothing to look for")
        return
    notes = "\n".join(ctx.log.notes)
    hits = [hit for hit in scan_linux_leftovers(ctx.system.fs, old)
            if hit.where not in notes]  # explained by an operation's note (as verify does)
    ctx.warn_at_most([f"{hit.where}: still holds the old {hit.what}" for hit in hits],
                     MAX_HITS_WARNED, "{count} more leftovers; `reseal verify` lists them all")
    if not hits:
        ctx.note(f"no trace of the old identity ({', '.join(sorted(old))}) left in /etc, /boot "
                 "and the state under /var")


OPERATION = Operation(
    name="linux-leftovers",
    description="scan every text file in /etc, /boot and network state for the old host name, "
    "machine-id, MACs, UUIDs and host keys, and /var for state named after the old machine-id",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
)
