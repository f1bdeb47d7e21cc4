"""Facts and edits on a Linux guest's files: its os-release, the paths operations may write,
text edits that write only when something changed.

Everything goes through the system's GuestFS, so paths are resolved inside the image. What
depends on a run (once-per-run checks, the run's random source) is in
`reseal.operations._linux_support`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reseal.image.guestfs import LARGE_TEXT_LIMIT, SMALL_LIMIT, TEXT_LIMIT, GuestFS
from reseal.linux.osrelease import OSRelease, parse_os_release

# Every file or directory a Linux operation may write (see resolve_written_paths).
WRITTEN_FILES = (
    "/etc/hostname", "/etc/HOSTNAME", "/etc/hosts", "/etc/mailname", "/etc/sysconfig/network",
    "/etc/machine-id", "/var/lib/dbus/machine-id",
    "/etc/udev/rules.d/70-persistent-net.rules",
    "/etc/fstab", "/etc/crypttab", "/etc/default/grub", "/etc/lilo.conf",
    "/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/boot/grub/menu.lst", "/boot/grub/grub.conf",
    "/etc/initramfs-tools/conf.d/resume", "/etc/kernel/cmdline",
    "/var/lib/systemd/random-seed", "/boot/efi/loader/random-seed", "/efi/loader/random-seed",
    "/boot/loader/random-seed",
)
WRITTEN_DIRS = (
    "/etc/ssh", "/etc/NetworkManager/system-connections", "/etc/netplan",
    "/etc/sysconfig/network-scripts", "/etc/sysconfig/network", "/etc/systemd/network",
    "/var/lib/NetworkManager", "/var/lib/dhcp", "/var/lib/dhclient", "/var/lib/dhcpcd",
    "/boot/loader/entries", "/boot/efi/EFI", "/boot",
)
# How large a file the operations read may be (others, e.g. keys and leases, are only
# removed): checked before anything is written, so a crafted size never stops a run half-way.
SMALL_FILES = ("/etc/hostname", "/etc/HOSTNAME", "/etc/mailname", "/etc/machine-id",
               "/var/lib/dbus/machine-id")
LARGE_TEXT_FILES = ("/etc/hosts",)
TEXT_DIRS = ("/etc/NetworkManager/system-connections", "/etc/netplan",
             "/etc/sysconfig/network-scripts", "/etc/sysconfig/network", "/etc/systemd/network",
             "/boot/loader/entries")


def read_limit(path: str) -> int:
    if path in SMALL_FILES:
        return SMALL_LIMIT
    return LARGE_TEXT_LIMIT if path in LARGE_TEXT_FILES else TEXT_LIMIT


def os_release(fs: GuestFS) -> OSRelease:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if fs.is_file(path):
            return parse_os_release(fs.read_text(path, limit=SMALL_LIMIT))
    return OSRelease()


def resolve_written_paths(fs: GuestFS) -> None:
    """Resolve every path Linux operations may write (and the files in those folders), so a
    link that leaves the image (UnsafePath), a device node, FIFO or socket, or a file larger
    than reseal reads of its kind is refused before anything is written."""
    for path in WRITTEN_FILES:
        fs.check_plain(path, limit=read_limit(path))
    for directory in WRITTEN_DIRS:
        fs.resolve(directory)
        limit = TEXT_LIMIT if directory in TEXT_DIRS else None
        for top, _dirs, files in fs.walk(directory) if fs.is_dir(directory) else ():
            for name in files:
                fs.check_plain(f"{top.rstrip('/')}/{name}", limit=limit)


def edit_text(fs: GuestFS, path: str, edit: Callable[[str], str], *,
              limit: int = TEXT_LIMIT) -> bool:
    """Rewrite a guest text file through `edit`; writes only when the text changed."""
    if not fs.is_file(path):
        return False
    old = fs.read_text(path, limit=limit)
    new = edit(old)
    if new == old:
        return False
    fs.write_text(path, new)
    return True


def files_under(fs: GuestFS, directory: str, suffixes: Iterable[str] | None = None) -> list[str]:
    """Regular files directly in `directory` (sorted), optionally only with these suffixes."""
    if not fs.is_dir(directory):
        return []
    wanted = tuple(suffixes) if suffixes is not None else None
    found = []
    for name in fs.listdir(directory):
        path = f"{directory.rstrip('/')}/{name}"
        if fs.is_symlink(path) or not fs.is_file(path):
            continue
        if wanted is None or name.endswith(wanted):
            found.append(path)
    return found
