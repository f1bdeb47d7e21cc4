"""The readable form of the inspect report (tables and key/value blocks)."""

from __future__ import annotations

from reseal.formatting import format_table, terminal_safe
from reseal.inspection.model import (
    DomainMembership,
    InspectReport,
    LiloState,
    LinuxReport,
    VolumeGroupRow,
    WindowsReport,
)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _block(title: str, pairs: list[tuple[str, object]]) -> list[str]:
    width = max(len(k) for k, _ in pairs)
    lines = [terminal_safe(title)]
    for key, value in pairs:
        shown = "(absent)" if value in (None, "") else terminal_safe(value)
        lines.append(f"  {terminal_safe(key).ljust(width)}  {shown}")
    return lines


def render_text(report: InspectReport) -> str:
    lines = [f"{terminal_safe(report.source)}: {report.kind}, partition table {report.table}"
             + (f", {_size(report.disk_size)}" if report.disk_size else "")]
    if report.disk_guid:
        lines[0] += f", disk GUID {report.disk_guid}"
    rows = [(r.index or "-", r.volume, _size(r.start) if r.size else "", _size(r.size) if r.size else "",
             r.type_name or r.type_id, r.fstype or "?", r.label, r.uuid,
             ("rw" if not r.read_only else "ro") if r.mounted else "-")
            for r in report.partitions]
    lines += ["", format_table(("#", "VOL", "START", "SIZE", "TYPE", "FS", "LABEL", "UUID", "MOUNT"),
                               rows)]
    for group in report.volume_groups:
        lines += ["", *_volume_group(group)]
    for win in report.windows:
        lines += ["", *_windows(win)]
    for lin in report.linux:
        lines += ["", *_linux(lin)]
    if not report.windows and not report.linux:
        lines += ["", "no operating system found"]
    for warning in report.warnings:
        lines.append(f"warning: {terminal_safe(warning)}")
    return "\n".join(lines)


def _volume_group(group: VolumeGroupRow) -> list[str]:
    pvs = ", ".join(f"{volume} ({uuid})" for volume, uuid in group.physical_volumes.items())
    lines = _block(f"LVM volume group {group.name}", [
        ("VG UUID", group.uuid), ("seqno", group.seqno), ("extent size", _size(group.extent_size)),
        ("metadata copies", group.metadata_copies), ("physical volumes", pvs or None),
    ])
    if group.problem:
        lines.append(f"  problem: {group.problem}")
    rows = [(lv.name, _size(lv.size), lv.layout, lv.uuid, lv.volume or "not opened")
            for lv in group.logical_volumes]
    if rows:
        table = format_table(("LV", "SIZE", "LAYOUT", "LV UUID", "OPENED AS"), rows)
        lines += ["    " + line for line in table.splitlines()]
    lines += [f"  {lv.name} not opened: {lv.note}" for lv in group.logical_volumes if lv.note]
    return lines


def _windows(win: WindowsReport) -> list[str]:
    hives = ", ".join(f"{k}={v}" for k, v in win.hive_paths.items() if v) or None
    lines = _block(f"Windows on {win.volume} ({win.system_root})", [
        ("product", win.product_name), ("build", win.build), ("edition", win.edition),
        ("version", win.display_version), ("architecture", win.architecture),
        ("system root", win.system_root),
        ("boot control set", f"ControlSet{win.control_set:03d}" if win.control_set else None),
        ("computer name", win.computer_name), ("machine SID (SAM)", win.sam_sid),
        ("machine SID (SECURITY)", win.security_sid), ("MachineGuid", win.machine_guid),
        ("membership", win.membership), ("domain SID", win.domain_sid),
        ("machine account SID", win.machine_account_sid),
        ("domain join record", win.join_pending),
        ("machine account secret", win.machine_secret),
        ("cached domain logons", win.cached_logons), ("hives", hives),
    ])
    lines += [f"  absent: {terminal_safe(item)}" for item in win.absent]
    return lines


def _lilo(state: LiloState) -> list[tuple[str, object]]:
    """One line for the boot sector, one per image: is the installed map current."""
    version = f"LILO {state.version} " if state.version else ""
    pairs: list[tuple[str, object]] = [
        ("LILO boot sector", f"{version}in {state.boot}: {state.boot_status}")]
    for image in state.images:
        line = f"{image.label}: {image.status}"
        if image.kernel:
            line += f" ({image.kernel}, {image.sectors} sectors)" if image.sectors else \
                f" ({image.kernel})"
        if image.initrd:
            line += f"; initrd {image.initrd}"
        if image.command_line is not None:
            line += f"; command line: {image.command_line or '(empty)'}"
        pairs.append(("LILO image", line))
    return pairs


def domain_lines(member: DomainMembership) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = [("domain realm", member.realm),
                                       ("machine account", member.machine_principal)]
    if member.kvnos:
        pairs.append(("keytab kvno", ", ".join(map(str, member.kvnos))))
    if member.belongs_to:
        pairs.append(("belongs to", member.belongs_to))
    for tab in member.keytabs:
        text = tab.error or f"{len(tab.principals)} principals ({', '.join(tab.enctypes)})"
        pairs.append(("keytab", f"{tab.path}: {text}"))
    for store in member.samba:
        text = store.error or ("machine password for " + ", ".join(
            store.machine_password_domains) if store.machine_password_domains else
            "no machine password")
        pairs.append(("samba secrets", f"{store.path}: {text}"))
    if member.sssd_domains:
        pairs.append(("sssd domains", ", ".join(member.sssd_domains)))
    if member.caches:
        pairs.append(("domain caches", f"{len(member.caches)} files"))
    if member.first_boot_join:
        pairs.append(("first boot", member.first_boot_join))
    return pairs


def _linux(lin: LinuxReport) -> list[str]:
    pairs: list[tuple[str, object]] = [
        ("distribution", lin.os_name), ("version", lin.os_version), ("hostname", lin.hostname),
        ("machine-id", lin.machine_id),
    ]
    for key in lin.ssh_host_keys:
        pairs.append((f"ssh {key.key_type}", key.fingerprint))
    for loader in lin.boot_loaders:
        pairs.append(("boot loader", f"{loader.name} ({loader.config}), root={loader.root or '?'}"))
        if loader.lilo is not None:
            pairs += _lilo(loader.lilo)
    if not lin.boot_loaders:
        pairs.append(("boot loader", None))
    for mountpoint, volume in lin.mounted_below_root.items():
        pairs.append(("mounted", f"{volume} at {mountpoint}"))
    if lin.domain is not None:
        pairs += domain_lines(lin.domain)
    lines = _block(f"Linux on {lin.volume}", pairs)
    if lin.fstab:
        lines.append("  fstab:")
        table = format_table(("SPEC", "MOUNT", "TYPE", "OPTIONS"),
                             [(e.spec, e.mountpoint, e.fstype, e.options) for e in lin.fstab])
        lines += ["    " + line for line in table.splitlines()]
    lines += [f"  absent: {terminal_safe(item)}" for item in lin.absent]
    return lines
