"""Leftover scan across every system of a target, driven by the old identity of a report."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from reseal.image.model import LinuxSystem
from reseal.image.target import Target
from reseal.pipeline.report import RunReport


@dataclass(frozen=True)
class LeftoverHit:
    system: str
    where: str
    what: str
    match: str


def old_identity(report: RunReport) -> dict[str, str]:
    """name -> old value, for every identity the run replaced."""
    return {name: v.old for name, v in report.identity.items() if v.old and v.old != v.new}


def scan_leftovers(target: Target, report: RunReport) -> list[LeftoverHit]:
    old = old_identity(report)
    hits: list[LeftoverHit] = []
    for system in target.systems:
        if isinstance(system, LinuxSystem):
            module = importlib.import_module("reseal.operations.linux_leftovers")
            found = module.scan_linux_leftovers(system.fs, old)
            label = f"linux:{system.volume.key}"
        else:
            module = importlib.import_module("reseal.operations.windows_leftovers")
            found = module.scan_windows_leftovers(system, old)
            label = f"windows:{system.volume.key}"
        for hit in found:
            hits.append(LeftoverHit(label, str(getattr(hit, "where", hit)),
                                    str(getattr(hit, "what", "")), str(getattr(hit, "match", ""))))
    return hits
