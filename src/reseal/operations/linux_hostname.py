"""linux-hostname: give the clone the requested host name everywhere a distribution keeps it."""

from __future__ import annotations

from typing import Any

from reseal.image.guestfs import LARGE_TEXT_LIMIT, SMALL_LIMIT, GuestFS
from reseal.image.model import OSFamily
from reseal.linux import netconfig, shellvars
from reseal.linux.guest import edit_text, files_under, os_release
from reseal.linux.hosts import rename_in_hosts
from reseal.linux.names import short_name, validate_hostname
from reseal.linux.osrelease import Family
from reseal.operations._linux_support import preflight
from reseal.operations.base import IdentityRequest, Operation, OperationContext

ORDER = 20
NM_CONNECTIONS = "/etc/NetworkManager/system-connections"


def validate(request: IdentityRequest, options: Any) -> None:
    """Refuse a name that breaks RFC 1123 before the target is opened."""
    if request.hostname is not None:
        validate_hostname(request.hostname)


def current_hostname(fs: GuestFS) -> str | None:
    """The static host name the guest boots with (first place found wins)."""
    for path in ("/etc/hostname", "/etc/HOSTNAME"):
        if fs.is_file(path):
            for line in fs.read_text(path, limit=SMALL_LIMIT).splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    return line
    if fs.is_file("/etc/sysconfig/network"):
        value = shellvars.get(fs.read_text("/etc/sysconfig/network"), "HOSTNAME")
        if value:
            return value
    return None


def apply(ctx: OperationContext) -> None:
    fs = ctx.system.fs
    new = ctx.request.hostname
    old = current_hostname(fs)
    if new is None:
        ctx.note(f"no hostname requested; the host name stays {old or '(none set)'}")
        return
    validate_hostname(new)
    preflight(ctx)
    family = os_release(fs).family

    hostname_file_host = fs.resolve("/etc/hostname") if fs.exists("/etc/hostname") else None
    if fs.is_file("/etc/hostname") or family is not Family.REDHAT or not fs.is_file(
        "/etc/sysconfig/network"
    ):
        fs.write_text("/etc/hostname", new + "\n")
        ctx.change("/etc/hostname", "set", old, new)

    # SUSE keeps /etc/HOSTNAME (often a link to /etc/hostname: then it is already done).
    if fs.exists("/etc/HOSTNAME") and fs.resolve("/etc/HOSTNAME") != hostname_file_host:
        if fs.is_file("/etc/HOSTNAME"):
            fs.write_text("/etc/HOSTNAME", new + "\n")
            ctx.change("/etc/HOSTNAME", "set", old, new)
    elif family is Family.SUSE and not fs.exists("/etc/HOSTNAME") and fs.is_dir("/etc/sysconfig"):
        fs.write_text("/etc/HOSTNAME", new + "\n")
        ctx.change("/etc/HOSTNAME", "create", None, new)

    if fs.is_file("/etc/sysconfig/network"):
        text = fs.read_text("/etc/sysconfig/network")
        if shellvars.get(text, "HOSTNAME") is not None and edit_text(
            fs, "/etc/sysconfig/network",
            lambda t: shellvars.set_value(t, "HOSTNAME", new, add=False),
        ):
            ctx.change("/etc/sysconfig/network", "set", f"HOSTNAME={old}", f"HOSTNAME={new}")

    if fs.is_file("/etc/hosts"):
        add = family is Family.DEBIAN
        if edit_text(fs, "/etc/hosts", lambda t: rename_in_hosts(t, old, new, add_loopback=add),
                     limit=LARGE_TEXT_LIMIT):
            ctx.change("/etc/hosts", "set", old, new)

    if old and fs.is_file("/etc/mailname"):
        mailname = fs.read_text("/etc/mailname", limit=SMALL_LIMIT).strip()
        if mailname.lower() in (old.lower(), short_name(old).lower()) or (
            "." in mailname and short_name(mailname).lower() == short_name(old).lower()
        ):
            replacement = new if "." in new or "." not in mailname else (
                new + "." + mailname.split(".", 1)[1]
            )
            fs.write_text("/etc/mailname", replacement + "\n")
            ctx.change("/etc/mailname", "set", mailname, replacement)

    if old:
        for path in files_under(fs, NM_CONNECTIONS):
            text = fs.read_text(path)
            new_text, edits = netconfig.set_nm_dhcp_hostname(text, old, new)
            if edits:
                fs.write_text(path, new_text)
                for edit in edits:
                    ctx.change(f"{path} {edit.what}", "set", edit.old, edit.new)

    ctx.identity("hostname", old, new)


OPERATION = Operation(
    name="linux-hostname",
    description="set the requested host name in /etc/hostname, /etc/hosts, sysconfig, SUSE "
    "/etc/HOSTNAME, /etc/mailname and NetworkManager's dhcp-hostname",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
)
