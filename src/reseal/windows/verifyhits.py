"""The Windows part of `reseal verify`, as `LeftoverHit` rows: live and user hives (the leftover
scan), the file-level places (`reseal.windows.fileverify`) and, with --deep, the raw disk
(`reseal.windows.deepscan`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reseal.image.model import WindowsSystem
from reseal.image.target import Target
from reseal.windows.deepscan import deep_scan
from reseal.windows.fileverify import remedy_for, scan_windows_files

if TYPE_CHECKING:
    from reseal.pipeline.verify import LeftoverHit


def windows_hits(target: Target, system: WindowsSystem, old: dict[str, str], notes: str,
                 scan_hives: Callable[[WindowsSystem, dict[str, str]], list[Any]]
                 ) -> list[LeftoverHit]:
    from reseal.pipeline.verify import LeftoverHit

    label = f"windows:{system.volume.key}"
    hits = [LeftoverHit(label, h.where, f"{h.identity} ({h.form})", h.match, h.where in notes,
                        remedy_for(h.identity)) for h in scan_hives(system, old)]
    for trace in scan_windows_files(target, system, old, notes):
        explained = trace.where in notes or (trace.same_as is not None and trace.same_as in notes)
        hits.append(LeftoverHit(label, trace.where, trace.what, trace.match, explained,
                                trace.remedy))
    return hits


def deep_hits(target: Target, old: dict[str, str]) -> list[LeftoverHit]:
    from reseal.pipeline.verify import LeftoverHit

    if target.raw_path is None:
        return [LeftoverHit("disk", str(target.source), "--deep needs a disk image or device; a "
                            "directory target has no raw bytes to scan", "", True,
                            beyond_files=True, count=0)]
    hits = []
    for hit in deep_scan(target.raw_path, target.layout, target.volumes, old):
        hits.append(LeftoverHit("disk", hit.region, f"{hit.identity} ({hit.form}): {hit.what}",
                                old.get(hit.identity, ""), hit.in_file is not None, hit.remedy,
                                beyond_files=hit.in_file is None, count=hit.count))
    return hits
