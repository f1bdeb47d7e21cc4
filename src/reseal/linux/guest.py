"""Facts and edits on a Linux guest's files: its os-release, the paths operations may write,
text edits that write only when something changed.

Everything goes through the system's GuestFS, so paths are resolved inside the image. What
depends on a run (once-per-run checks, the run's random source) is in
`reseal.operations._linux_support`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reseal.image.guestfs import GuestFS
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
def os_release(fs: GuestFS) -> OSRelease:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if fs.is_file(path):
            return parse_os_release(fs.read_text(path))
    return OSRelease()


def resolve_written_paths(fs: GuestFS) -> None:
    """Resolve every path Linux operations may write (and the files in those folders), so a
    link that leaves the image is refused (UnsafePath) before anything is written."""
    for path in WRITTEN_FILES:
        fs.resolve(path)
    for directory in WRITTEN_DIRS:
        fs.resolve(directory)
        for top, _dirs, files in fs.walk(directory) if fs.is_dir(directory) else ():
            for name in files:
                fs.resolve(f"{top.rstrip('/')}/{name}")


def edit_text(fs: GuestFS, path: str, edit: Callable[[str], str]) -> bool:
    """Rewrite a guest text file through `edit`; writes only when the text changed."""
    if not fs.is_file(path):
        return False
    old = fs.read_text(path)
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
