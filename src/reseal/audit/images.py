"""`reseal audit images`: the identities disk images carry, read offline and read-only with the
inspection code, compared across images.

Each image is one machine: what its systems hold (machine SID, computer and host names,
MachineGuid, SusClientId, machine-id, SSH host keys, saved DUIDs) and what its disk holds
(GPT disk and partition GUIDs, MBR signature, file-system UUIDs). An image that cannot be
opened is listed with the reason and the others are audited anyway.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

from reseal.audit.collisions import find_collisions, summarise
from reseal.audit.model import AuditReport, Identity, Machine, Probe
from reseal.audit.progress import Progress
from reseal.errors import BadInput, ResealError

UNSET_GUID = "00000000-0000-0000-0000-000000000000"


def check_paths(images: list[str]) -> None:
    """Refuse (exit 2) before anything is opened: a missing path, or one image named twice."""
    seen: dict[Path, str] = {}
    for image in images:
        path = Path(image)
        if not path.exists():
            raise BadInput(f"{image}: no such file, block device or directory")
        resolved = path.resolve()
        if resolved in seen:
            raise BadInput(f"{image}: the same image as {seen[resolved]}; name each image once")
        seen[resolved] = image


def audit_images(images: list[str], *, allow_unclean_ntfs: bool = False,
                 allowed_backing: tuple[Path, ...] = (),
                 progress: Progress | None = None) -> AuditReport:
    """Read every image (read-only) and compare their identities. `allowed_backing`: the
    backing files (masters) qcow2/vmdk overlays may use; any other is refused."""
    check_paths(images)
    started_at = datetime.datetime.now(datetime.UTC)
    start = time.monotonic()
    machines = []
    for image in images:
        begun = time.monotonic()
        machine = Machine(id=image, label=image, addresses=[])
        machines.append(machine)
        try:
            _read_image(image, machine, allow_unclean_ntfs, allowed_backing)
            machine.probes.append(Probe("inspect", "ok", "",
                                        round(time.monotonic() - begun, 3)))
        except ResealError as exc:
            machine.status = "error"
            machine.probes.append(Probe("inspect", "error", str(exc),
                                        round(time.monotonic() - begun, 3)))
            machine.notes.append(f"not audited: {exc}")
        if progress is not None:
            progress.advance(Path(image).name)
    if progress is not None:
        progress.close()
    findings = find_collisions(machines)
    failed = [m.id for m in machines if m.status != "ok"]
    return AuditReport(
        scope="images", started=started_at.isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - start, 3), targets=list(images), machines=machines,
        findings=findings, summary=summarise(machines, findings),
        settings={"images": len(images), "read_only": True},
        warnings=[f"{i}: could not be read; its identities are not compared" for i in failed])


def _read_image(image: str, machine: Machine, allow_unclean_ntfs: bool,
                allowed_backing: tuple[Path, ...]) -> None:
    from reseal.image.target import OpenOptions, open_target
    from reseal.inspection import inspect_target
    from reseal.inspection.clone_ids import linux_saved_duids, windows_clone_ids

    options = OpenOptions(writable=False, allow_unclean_ntfs=allow_unclean_ntfs,
                          allowed_backing=allowed_backing)
    with open_target(image, options) as target:
        report = inspect_target(target)
        layout = target.layout
        add = machine.identities.append
        if layout is not None:
            if report.disk_guid and report.disk_guid.lower() != UNSET_GUID:
                add(Identity("disk-guid", report.disk_guid, "GPT header"))
            if layout.table == "mbr" and layout.mbr_signature:
                add(Identity("mbr-signature", f"0x{layout.mbr_signature:08x}", "MBR"))
        for row in report.partitions:
            where = f"{row.volume} ({row.fstype or 'no file system'})"
            if row.guid and row.guid.lower() != UNSET_GUID:
                add(Identity("partition-guid", row.guid, "GPT entry", detail=row.volume))
            if row.uuid:
                add(Identity("fs-uuid", row.uuid, "file system", detail=where))
        os_names = []
        for windows, system in zip(report.windows, target.windows, strict=True):
            os_names.append(windows.product_name or "Windows")
            if windows.computer_name:
                add(Identity("computer-name", windows.computer_name, "SYSTEM hive"))
                machine.names.setdefault("computer", windows.computer_name)
            sid = windows.sam_sid or windows.security_sid
            if sid:
                add(Identity("machine-sid", sid, "SAM hive" if windows.sam_sid else "SECURITY"))
            if windows.machine_guid:
                add(Identity("machine-guid", windows.machine_guid, "SOFTWARE hive"))
            for kind, value in windows_clone_ids(system, windows.control_set).items():
                add(Identity(kind, value, "SOFTWARE hive" if kind == "sus-client-id"
                             else "SYSTEM hive"))
            machine.notes += [f"Windows: {a}" for a in windows.absent]
        for linux, lsystem in zip(report.linux, target.linux, strict=True):
            os_names.append(linux.os_name or "Linux")
            if linux.hostname:
                add(Identity("hostname", linux.hostname, "/etc/hostname"))
                machine.names.setdefault("hostname", linux.hostname)
            if linux.machine_id:
                add(Identity("machine-id", linux.machine_id, "/etc/machine-id"))
            else:
                machine.notes.append("machine-id empty or absent: made on first boot")
            for key in linux.ssh_host_keys:
                add(Identity("ssh-host-key", key.fingerprint, key.path, detail=key.key_type))
            for duid in linux_saved_duids(lsystem):
                add(Identity("dhcp-duid", duid, "dhclient lease file"))
        machine.os = ", ".join(os_names)
        if not report.windows and not report.linux:
            machine.notes.append("no operating system found: only disk identifiers compared")
        machine.notes += report.warnings
