"""Collect the inspect report from an opened `Target`."""

from __future__ import annotations

from reseal.image.lvm import SECTOR, LvmLayout
from reseal.image.model import Volume
from reseal.image.parttypes import type_name
from reseal.image.target import Target
from reseal.inspection.linux import inspect_linux
from reseal.inspection.model import (
    InspectReport,
    LogicalVolumeRow,
    PartitionRow,
    VolumeGroupRow,
)
from reseal.inspection.windows import inspect_windows
from reseal.linux.lilocheck import raw_disk


def _row(volume: Volume) -> PartitionRow:
    part = volume.partition
    type_id = part.type_id if part else ""
    return PartitionRow(
        volume=volume.key,
        index=part.index if part else 0,
        start=part.start if part else 0,
        size=part.size if part else 0,
        type_id=type_id,
        type_name=type_name(type_id),
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
    disk = raw_disk(target)
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
