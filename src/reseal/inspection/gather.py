"""Collect the inspect report from an opened `Target`."""

from __future__ import annotations

from reseal.image.lvm import SECTOR, LvmLayout
from reseal.image.model import Volume
from reseal.image.target import Target
from reseal.inspection.linux import inspect_linux
from reseal.inspection.model import (
    InspectReport,
    LogicalVolumeRow,
    PartitionRow,
    VolumeGroupRow,
)
from reseal.inspection.windows import inspect_windows
from reseal.linux.lilocheck import RawDisk

TYPE_NAMES = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI system",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "ebd0a0a2-b9e5-4433-87c0-68b6b7199c87": "Microsoft basic data",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery",
    "0fc63daf-8483-4772-8e79-3d69e47de4e4": "Linux filesystem",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
    "0x07": "NTFS/exFAT/HPFS",
    "0x0b": "FAT32",
    "0x0c": "FAT32 (LBA)",
    "0x0e": "FAT16 (LBA)",
    "0x27": "Windows recovery (hidden NTFS)",
    "0x82": "Linux swap",
    "0x83": "Linux",
    "0x8e": "Linux LVM",
    "0xef": "EFI system",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "lvm": "LVM logical volume",
}


def _row(volume: Volume) -> PartitionRow:
    part = volume.partition
    type_id = part.type_id if part else ""
    return PartitionRow(
        volume=volume.key,
        index=part.index if part else 0,
        start=part.start if part else 0,
        size=part.size if part else 0,
        type_id=type_id,
        type_name=TYPE_NAMES.get(type_id, ""),
        fstype=volume.fstype,
        label=volume.label,
        uuid=volume.uuid,
        name=part.name if part else "",
        guid=part.guid if part else "",
        bootable=part.bootable if part else False,
        mounted=volume.fs is not None,
        read_only=volume.read_only,
        notes=list(volume.notes),
    )


def inspect_target(target: Target) -> InspectReport:
    layout = target.layout
    disk = RawDisk(target.raw_path, layout.size, layout) if target.raw_path and layout else None
    return InspectReport(
        source=str(target.source),
        kind=target.kind,
        table=layout.table if layout else "none",
        disk_size=layout.size if layout else None,
        disk_guid=layout.disk_guid if layout else "",
        partitions=[_row(v) for v in target.volumes],
        windows=[inspect_windows(s) for s in target.windows],
        linux=[inspect_linux(s, disk) for s in target.linux],
        warnings=list(target.warnings),
        volume_groups=volume_group_rows(target.lvm, target.volumes),
    )


def volume_group_rows(lvm: LvmLayout | None, volumes: list[Volume]) -> list[VolumeGroupRow]:
    """Each volume group with its PVs and LVs; an LV reseal did not open says why."""
    if lvm is None:
        return []
    opened = {v.key for v in volumes}
    rows = []
    for found in lvm.groups:
        group = found.group
        extent = group.extent_size * SECTOR
        lvs = []
        for place in found.placements:
            key = place.mapper_name if place.mapper_name in opened else ""
            lvs.append(LogicalVolumeRow(place.lv.name, place.lv.uuid, place.size,
                                        place.lv.segment_summary(), key, place.reason))
        rows.append(VolumeGroupRow(
            group.name, group.uuid, group.seqno, extent,
            {pv.volume: pv.label.uuid for pv in found.pvs.values()}, lvs, len(found.copies),
            found.problem))
    return rows
