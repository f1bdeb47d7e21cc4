"""What Linux operations share: reading the guest's facts, safe edits, the run's random source.

Everything goes through the system's GuestFS, so paths are resolved inside the image.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable

from reseal.image.guestfs import GuestFS
from reseal.linux.osrelease import OSRelease, parse_os_release
from reseal.operations.base import OperationContext

# Every file or directory a Linux operation may write. The first Linux operation of a run
# resolves them all (and the files inside the directories), so a link that leaves the image
# is refused before anything is written.
WRITTEN_FILES = (
    "/etc/hostname", "/etc/HOSTNAME", "/etc/hosts", "/etc/mailname", "/etc/sysconfig/network",
    "/etc/machine-id", "/var/lib/dbus/machine-id",
    "/etc/udev/rules.d/70-persistent-net.rules",
    "/etc/fstab", "/etc/crypttab", "/etc/default/grub", "/etc/lilo.conf",
    "/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/boot/grub/menu.lst", "/boot/grub/grub.conf",
    "/etc/initramfs-tools/conf.d/resume", "/etc/kernel/cmdline",
)
WRITTEN_DIRS = (
    "/etc/ssh", "/etc/NetworkManager/system-connections", "/etc/netplan",
    "/etc/sysconfig/network-scripts", "/etc/sysconfig/network", "/etc/systemd/network",
    "/var/lib/NetworkManager", "/var/lib/dhcp", "/var/lib/dhclient", "/var/lib/dhcpcd",
    "/boot/loader/entries", "/boot/efi/EFI",
)
_PREFLIGHT_KEY = "linux:preflight-done"
_RANDOM_KEY = "linux:random"


def preflight(ctx: OperationContext) -> None:
    """Resolve every path Linux operations may touch; raises UnsafePath before any write."""
    if ctx.shared.get(_PREFLIGHT_KEY):
        return
    fs = ctx.system.fs
    for path in WRITTEN_FILES:
        fs.resolve(path)
    for directory in WRITTEN_DIRS:
        fs.resolve(directory)
        for top, _dirs, files in fs.walk(directory) if fs.is_dir(directory) else ():
            for name in files:
                fs.resolve(f"{top.rstrip('/')}/{name}")
    ctx.shared[_PREFLIGHT_KEY] = True


def os_release(fs: GuestFS) -> OSRelease:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if fs.is_file(path):
            return parse_os_release(fs.read_text(path))
    return OSRelease()


def rng(ctx: OperationContext) -> random.Random:
    """One random source per run: seeded when the request has a seed (reproducible tests)."""
    source = ctx.shared.get(_RANDOM_KEY)
    if source is None:
        seed = ctx.request.seed
        source = random.Random(seed) if seed is not None else random.SystemRandom()
        ctx.shared[_RANDOM_KEY] = source
    assert isinstance(source, random.Random)
    return source


def new_uuid(ctx: OperationContext) -> str:
    return str(uuid.UUID(int=rng(ctx).getrandbits(128), version=4))


def new_hex(ctx: OperationContext, digits: int) -> str:
    return f"{rng(ctx).getrandbits(digits * 4):0{digits}x}"


def edit_text(ctx: OperationContext, path: str, edit: Callable[[str], str]) -> bool:
    """Rewrite a guest text file through `edit`; writes only when the text changed."""
    fs = ctx.system.fs
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
