"""linux-leftovers: after the other operations, look for the master's identity still on disk.

Also the Linux half of `reseal verify`: `scan_linux_leftovers(fs, old_identity)` is called with
the old values a run's report recorded. Scanned: text files under /etc, boot loader files under
/boot, D-Bus and DHCP state. The old host name is looked for only where host names live (a
name such as "debian" would otherwise match every apt source); ids, MACs and UUIDs everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reseal.image.guestfs import GuestFS
from reseal.image.model import OSFamily
from reseal.operations.base import Operation, OperationContext
from reseal.operations.linux_ssh_hostkeys import host_fingerprints

ORDER = 90
MAX_TEXT_BYTES = 2 << 20
SCANNED_TREES = ("/etc", "/var/lib/dbus", "/var/lib/NetworkManager", "/var/lib/dhcp",
                 "/var/lib/dhclient", "/var/lib/dhcpcd")
BOOT_NAMES = re.compile(r"(grub\.cfg|menu\.lst|grub\.conf|lilo\.conf|.*\.conf)$", re.IGNORECASE)
HOSTNAME_FILES = ("/etc/hostname", "/etc/HOSTNAME", "/etc/hosts", "/etc/mailname",
                  "/etc/sysconfig/network", "/etc/machine-info", "/etc/postfix/main.cf",
                  "/etc/exim4/update-exim4.conf.conf")
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
    if fs.is_dir("/boot"):
        for top, _dirs, files in fs.walk("/boot"):
            paths.extend(f"{top.rstrip('/')}/{name}" for name in sorted(files)
                         if BOOT_NAMES.match(name))
    return paths


def _read_text(fs: GuestFS, path: str) -> str | None:
    try:
        if fs.is_symlink(path) or not fs.is_file(path) or fs.stat(path).st_size > MAX_TEXT_BYTES:
            return None
        data = fs.read_bytes(path, limit=MAX_TEXT_BYTES)
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


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
    host_files = set(HOSTNAME_FILES)
    for directory in HOSTNAME_DIRS:
        host_files.update(f"{directory}/{n}" for n in fs.listdir(directory))

    for path in _text_files(fs):
        text = _read_text(fs, path)
        if text is None:
            continue
        for name, pattern in patterns.items():
            if pattern.search(text):
                hits.append(Hit(path, name, anywhere[name]))
        if host_pattern is not None and path in host_files and host_pattern.search(text):
            hits.append(Hit(path, "hostname", str(hostname)))

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
    hits = scan_linux_leftovers(ctx.system.fs, old)
    ctx.warn_at_most([f"{hit.where}: still holds the old {hit.what}" for hit in hits],
                     MAX_HITS_WARNED, "{count} more leftovers; `reseal verify` lists them all")
    if not hits:
        ctx.note(f"no trace of the old identity ({', '.join(sorted(old))}) left in /etc and /boot")


OPERATION = Operation(
    name="linux-leftovers",
    description="scan /etc, /boot and network state for the old host name, machine-id, MACs, "
    "UUIDs and host keys after the run",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
)
