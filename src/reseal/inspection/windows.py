"""Windows facts read from the image's hives with regipy. A missing hive or key leaves the fact
absent (None) with a reason; it never stops the report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regipy.registry import RegistryHive

from reseal.errors import ResealError
from reseal.image.model import WindowsSystem
from reseal.image.workdirs import work_dir
from reseal.inspection.model import WindowsReport
from reseal.inspection.sids import sam_account_domain_sid, sid_to_string
from reseal.registry import Hive
from reseal.windows.domain import read_domain_state

HIVE_NAMES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT")
HIVE_READ_LIMIT = 512 << 20
CURRENT_VERSION = r"\Microsoft\Windows NT\CurrentVersion"


class _Hives:
    """Hives of one Windows system, copied out through GuestFS and opened once each."""

    def __init__(self, system: WindowsSystem, workdir: Path, report: WindowsReport) -> None:
        self.system = system
        self.workdir = workdir
        self.report = report
        self.opened: dict[str, RegistryHive | None] = {}

    def get(self, name: str) -> RegistryHive | None:
        if name not in self.opened:
            self.opened[name] = self._open(name)
        return self.opened[name]

    def _open(self, name: str) -> RegistryHive | None:
        guest = self.report.hive_paths.get(name)
        if guest is None:
            self.report.absent.append(f"{name} hive: not found")
            return None
        copy = self.workdir / name
        try:
            copy.write_bytes(self.system.fs.read_bytes(guest, limit=HIVE_READ_LIMIT))
            return RegistryHive(str(copy))
        except (OSError, ResealError) as exc:
            self.report.absent.append(f"{name} hive: cannot read it ({exc})")
        except Exception as exc:  # regipy raises its own types (and construct's) on bad hives
            self.report.absent.append(f"{name} hive: not a readable hive ({type(exc).__name__})")
        return None


def _value(hive: RegistryHive | None, key: str, name: str) -> Any:
    if hive is None:
        return None
    try:
        return hive.get_key(key).get_value(name)
    except Exception:  # regipy: RegistryKeyNotFoundException, RegistryValueNotFoundException...
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value).rstrip("\x00")


def inspect_windows(system: WindowsSystem) -> WindowsReport:
    report = WindowsReport(
        volume=system.volume.key,
        system_root=system.system_root,
        hive_paths={name: system.hive_path(name) for name in HIVE_NAMES},
    )
    with _hive_workdir() as workdir:
        hives = _Hives(system, workdir, report)
        _system_facts(hives.get("SYSTEM"), report)
        _software_facts(hives.get("SOFTWARE"), report)
        _sam_facts(hives.get("SAM"), report)
        _security_facts(hives.get("SECURITY"), report)
        _domain_facts(system, report)
        _join_pending(hives.get("SYSTEM"), report)
    return report


def _join_pending(hive: RegistryHive | None, report: WindowsReport) -> None:
    """A Netlogon JoinDomain record (left by a join, offline or online, until Netlogon's
    next start) in the boot control set."""
    if hive is None or report.control_set is None:
        return
    key = rf"\ControlSet{report.control_set:03d}\Services\Netlogon\JoinDomain"
    dc = _text(_value(hive, key, "DomainControllerName"))
    if dc:
        domain = _text(_value(hive, key, "DomainName")) or "?"
        report.join_pending = f"{domain} via {dc.lstrip(chr(92))} (read at Netlogon's next start)"


def _domain_facts(system: WindowsSystem, report: WindowsReport) -> None:
    """Membership as SECURITY's LSA policy records it (read with reseal's own hive reader,
    which also decodes the LSA secret keys; no secret value is ever read)."""
    guest = report.hive_paths.get("SECURITY")
    if guest is None:
        return
    try:
        security = Hive.from_bytes(system.fs.read_bytes(guest, limit=HIVE_READ_LIMIT),
                                   name="SECURITY")
        state = read_domain_state(security)
    except ResealError as exc:
        report.absent.append(f"SECURITY domain membership: {exc}")
        return
    report.membership = state.describe()
    report.domain_sid = state.domain_sid
    report.domain_dns_name = state.dns_name
    report.machine_account_sid = state.account_sid if state.member else None
    if state.machine_secret:
        when = state.machine_secret_changed
        report.machine_secret = "$MACHINE.ACC present" + (
            f", set {when:%Y-%m-%d %H:%M:%S} UTC" if when else "")
    else:
        report.machine_secret = "none"
    report.cached_logons = state.cached_logons


@contextlib.contextmanager
def _hive_workdir() -> Iterator[Path]:
    """Copies of the hives (SAM and SECURITY hold secrets) in a private work directory that
    the next run removes if this one is killed (see reseal.image.workdirs)."""
    with work_dir("inspect") as tmp:
        yield tmp


def _system_facts(hive: RegistryHive | None, report: WindowsReport) -> None:
    if hive is None:
        return
    default = _value(hive, r"\Select", "Default")
    if not isinstance(default, int) or not 0 < default < 1000:
        report.absent.append("SYSTEM Select\\Default: missing; the boot control set is unknown")
        return
    report.control_set = default
    control = rf"\ControlSet{default:03d}\Control"
    report.computer_name = _text(
        _value(hive, rf"{control}\ComputerName\ComputerName", "ComputerName")
    )
    report.architecture = _text(
        _value(hive, rf"{control}\Session Manager\Environment", "PROCESSOR_ARCHITECTURE")
    )
    if report.computer_name is None:
        report.absent.append(f"SYSTEM ControlSet{default:03d}: no ComputerName")
    if report.architecture is None:
        report.absent.append(f"SYSTEM ControlSet{default:03d}: no PROCESSOR_ARCHITECTURE")


def _software_facts(hive: RegistryHive | None, report: WindowsReport) -> None:
    if hive is None:
        return
    report.product_name = _text(_value(hive, CURRENT_VERSION, "ProductName"))
    report.build = _text(_value(hive, CURRENT_VERSION, "CurrentBuildNumber")) or _text(
        _value(hive, CURRENT_VERSION, "CurrentBuild")
    )
    report.edition = _text(_value(hive, CURRENT_VERSION, "EditionID"))
    report.display_version = _text(_value(hive, CURRENT_VERSION, "DisplayVersion")) or _text(
        _value(hive, CURRENT_VERSION, "CSDVersion")
    )
    report.machine_guid = _text(_value(hive, r"\Microsoft\Cryptography", "MachineGuid"))
    if report.product_name is None:
        report.absent.append("SOFTWARE Windows NT\\CurrentVersion\\ProductName: missing")
    if report.machine_guid is None:
        report.absent.append("SOFTWARE Microsoft\\Cryptography\\MachineGuid: missing")


def _binary(value: Any) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            return None
    return None


def _sam_facts(hive: RegistryHive | None, report: WindowsReport) -> None:
    if hive is None:
        return
    raw = _binary(_value(hive, r"\SAM\Domains\Account", "V"))
    if raw is None:
        report.absent.append("SAM Domains\\Account value V: missing")
        return
    try:
        report.sam_sid = sam_account_domain_sid(raw)
    except ResealError as exc:
        report.absent.append(f"SAM machine SID: {exc}")


def _security_facts(hive: RegistryHive | None, report: WindowsReport) -> None:
    if hive is None:
        return
    raw = _binary(_value(hive, r"\Policy\PolAcDmS", "(default)"))
    if raw is None:
        raw = _binary(_value(hive, r"\Policy\PolAcDmS", ""))
    if raw is None:
        report.absent.append("SECURITY Policy\\PolAcDmS: missing")
        return
    try:
        report.security_sid = sid_to_string(raw)
    except ResealError as exc:
        report.absent.append(f"SECURITY machine SID: {exc}")
