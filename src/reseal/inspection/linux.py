"""Linux facts read through GuestFS: every path is resolved inside the image, so a link such as
/etc/hostname -> /etc/../../../../etc/passwd is refused, never followed to the host."""

from __future__ import annotations

import re
import shlex

from reseal.domain.membership import read_membership
from reseal.errors import ResealError
from reseal.image.fstab import parse_fstab
from reseal.image.guestfs import GuestFS
from reseal.image.model import LinuxSystem
from reseal.inspection.model import BootLoader, LiloState, LinuxReport, SshHostKey
from reseal.linux.lilocheck import RawDisk, check_lilo
from reseal.linux.lilomap import LiloFormatError
from reseal.linux.ssh import ssh_fingerprint

CONFIG_READ_LIMIT = 4 << 20
MAX_SSH_KEYS = 64
ROOT_ARGUMENT = re.compile(r"(?:^|\s)root=(\S+)")
GRUB2_CONFIGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/boot/efi/EFI/debian/grub.cfg")
GRUB_LEGACY_CONFIGS = ("/boot/grub/menu.lst", "/boot/grub/grub.conf", "/etc/grub.conf")
SYSTEMD_BOOT_DIRS = ("/boot/efi/loader", "/efi/loader", "/boot/loader")


def _read(fs: GuestFS, path: str, report: LinuxReport) -> str | None:
    try:
        if not fs.is_file(path):
            return None
        return fs.read_bytes(path, limit=CONFIG_READ_LIMIT).decode("utf-8", errors="replace")
    except ResealError as exc:
        report.absent.append(f"{path}: {exc}")
    except OSError as exc:
        report.absent.append(f"{path}: cannot read it ({exc.strerror})")
    return None


def inspect_linux(system: LinuxSystem, disk: RawDisk | None = None) -> LinuxReport:
    fs = system.fs
    report = LinuxReport(volume=system.volume.key)
    report.mounted_below_root = {mp: v.key for mp, v in system.extra_volumes.items()}
    _os_release(fs, report)
    hostname = _read(fs, "/etc/hostname", report)
    if hostname is not None:
        report.hostname = (hostname.strip().splitlines() or [""])[0] or None
    machine_id = _read(fs, "/etc/machine-id", report)
    if machine_id is not None:
        report.machine_id = machine_id.strip() or None
    report.ssh_host_keys = _ssh_host_keys(fs, report)
    report.boot_loaders = _boot_loaders(system, report, disk)
    fstab = _read(fs, "/etc/fstab", report)
    if fstab is not None:
        report.fstab = parse_fstab(fstab)
    report.domain = read_membership(fs, report.hostname)
    return report


def _os_release(fs: GuestFS, report: LinuxReport) -> None:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read(fs, path, report)
        if text is None:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().isidentifier():
                try:
                    words = shlex.split(value)
                except ValueError:
                    words = [value]
                fields[key.strip()] = " ".join(words)
        report.os_name = fields.get("PRETTY_NAME") or fields.get("NAME")
        report.os_version = fields.get("VERSION_ID") or fields.get("VERSION")
        return
    report.absent.append("os-release: not found")


def _ssh_host_keys(fs: GuestFS, report: LinuxReport) -> list[SshHostKey]:
    keys: list[SshHostKey] = []
    try:
        names = fs.listdir("/etc/ssh")
    except ResealError as exc:
        report.absent.append(f"/etc/ssh: {exc}")
        return keys
    for name in names:
        if not (name.startswith("ssh_host_") and name.endswith(".pub")):
            continue
        if len(keys) >= MAX_SSH_KEYS:
            break
        text = _read(fs, f"/etc/ssh/{name}", report)
        parsed = ssh_fingerprint(text.strip()) if text else None
        if parsed is None:
            report.absent.append(f"/etc/ssh/{name}: not a public key")
            continue
        keys.append(SshHostKey(path=f"/etc/ssh/{name}", key_type=parsed[0], fingerprint=parsed[1]))
    return keys


def _first_root(text: str, line_prefixes: tuple[str, ...]) -> str | None:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(line_prefixes):
            match = ROOT_ARGUMENT.search(stripped)
            if match:
                return match.group(1)
    return None


def _boot_loaders(system: LinuxSystem, report: LinuxReport,
                  disk: RawDisk | None) -> list[BootLoader]:
    fs = system.fs
    found = []
    for path in GRUB2_CONFIGS:
        text = _read(fs, path, report)
        if text is not None:
            found.append(BootLoader("GRUB 2", path, _first_root(text, ("linux", "linuxefi"))))
            break
    for path in GRUB_LEGACY_CONFIGS:
        text = _read(fs, path, report)
        if text is not None and not any(b.name == "GRUB 2" for b in found):
            found.append(BootLoader("GRUB legacy", path, _first_root(text, ("kernel",))))
            break
    lilo = _read(fs, "/etc/lilo.conf", report)
    if lilo is not None:
        found.append(BootLoader("LILO", "/etc/lilo.conf", _lilo_root(lilo),
                                _lilo_state(system, lilo, disk)))
    for directory in SYSTEMD_BOOT_DIRS:
        if _safe_is_file(fs, f"{directory}/loader.conf") or _safe_is_dir(fs, f"{directory}/entries"):
            found.append(_systemd_boot(fs, directory, report))
            break
    return found


def _lilo_state(system: LinuxSystem, config: str, disk: RawDisk | None) -> LiloState:
    try:
        return check_lilo(system, config, disk)
    except (LiloFormatError, ResealError, OSError, ValueError) as exc:
        return LiloState(boot="?", boot_status=f"cannot verify: {exc}")


def _lilo_root(text: str) -> str | None:
    for line in text.splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep and key.strip() == "root":
            return value.strip().strip('"') or None
    return None


def _systemd_boot(fs: GuestFS, directory: str, report: LinuxReport) -> BootLoader:
    entries = f"{directory}/entries"
    for name in fs.listdir(entries)[:256] if _safe_is_dir(fs, entries) else []:
        if name.endswith(".conf"):
            text = _read(fs, f"{entries}/{name}", report) or ""
            root = _first_root(text, ("options",))
            if root:
                return BootLoader("systemd-boot", f"{entries}/{name}", root)
    return BootLoader("systemd-boot", f"{directory}/loader.conf", None)


def _safe_is_file(fs: GuestFS, path: str) -> bool:
    try:
        return fs.is_file(path)
    except ResealError:
        return False


def _safe_is_dir(fs: GuestFS, path: str) -> bool:
    try:
        return fs.is_dir(path)
    except ResealError:
        return False
