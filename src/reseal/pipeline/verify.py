"""Leftover scan across every system of a target, driven by the old identity of a report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reseal.domain.membership import scan_domain_traces
from reseal.image.model import LinuxSystem
from reseal.image.target import Target
from reseal.operations.linux_leftovers import scan_linux_leftovers
from reseal.pipeline.report import RunReport


@dataclass(frozen=True)
class LeftoverHit:
    system: str
    where: str
    what: str
    match: str
    explained: bool  # the run's report says why this trace stays (e.g. an opaque binary blob)
    remedy: str = ""  # the operation that removes it
    beyond_files: bool = False  # --deep: where no file-level tool reaches; never "unexplained"
    count: int = 1


def old_identity(report: RunReport) -> dict[str, str]:
    """name -> old value, for every identity the run replaced."""
    return {name: v.old for name, v in report.identity.items() if v.old and v.old != v.new}


def _started(report: RunReport) -> datetime | None:
    """When the run began (what the image held before it is the master's)."""
    try:
        return datetime.fromisoformat(report.started)
    except (TypeError, ValueError):
        return None


def scan_leftovers(target: Target, report: RunReport, *, deep: bool = False) -> list[LeftoverHit]:
    old = old_identity(report)
    notes = "\n".join(report.notes)
    hits: list[LeftoverHit] = []
    for system in target.systems:
        if isinstance(system, LinuxSystem):
            label = f"linux:{system.volume.key}"
            for lhit in scan_linux_leftovers(system.fs, old):
                hits.append(LeftoverHit(label, lhit.where, lhit.what, lhit.match,
                                        lhit.where in notes))
            for trace in scan_domain_traces(system.fs, old):  # keytab entries, secrets.tdb
                hits.append(LeftoverHit(label, trace.where, trace.what, trace.match,
                                        trace.where in notes))
        else:
            from reseal.pipeline.verify_windows import windows_hits

            hits += windows_hits(target, system, old, notes, _started(report))
    if deep:
        from reseal.pipeline.verify_windows import deep_hits

        hits += deep_hits(target, old)
    return hits
