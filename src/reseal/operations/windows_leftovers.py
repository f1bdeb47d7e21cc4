"""windows-leftovers: prove no trace of the old identity is left in any hive of the image.

Every hive (SYSTEM, SOFTWARE, SAM, SECURITY, DEFAULT, DRIVERS, user hives) is scanned: key names,
value names and value data, the latter in binary SID form and in UTF-16LE and ASCII text form,
for every old identity the run replaced (machine SID, computer names, GUIDs). In a run the hives
are scanned as the run left them in memory (so a dry run shows what a real run would leave);
`reseal verify` calls `scan_windows_leftovers` on the image as it is on disk.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.windows.hives import EXPLAINED_KEY, HiveSet, LoadedHive, hive_set
from reseal.windows.sid import Sid, SidRewriter
from reseal.windows.traces import TracePattern

ORDER = 90
MAX_WARNINGS = 50


@dataclass(frozen=True)
class Hit:
    """One place where an old identity is still present."""

    hive: str
    key: str
    value: str | None  # None: the key name itself matched
    form: str  # "key name", "value name", "binary SID", "utf-16le", "ascii", "binary GUID"
    identity: str  # which identity: "machine-sid", "computer-name", ...
    match: str  # the old value found

    @property
    def where(self) -> str:
        base = f"{self.hive}\\{self.key}" if self.key else self.hive
        return base if self.value is None else f"{base} [{self.value or '(default)'}]"

    @property
    def what(self) -> str:
        return f"{self.identity} ({self.form})"


@dataclass(frozen=True)
class _Needle:
    identity: str
    text: TracePattern
    binary: bytes | None = None  # binary SID prefix or GUID bytes
    sid: SidRewriter | None = None


def _needles(old_identity: dict[str, str]) -> list[_Needle]:
    needles: list[_Needle] = []
    for name, old in sorted(old_identity.items()):
        if not old or len(old) < 2:
            continue
        if name.startswith("machine-sid"):
            sid = Sid.parse(old)
            # the rewriter's binary matcher finds whole SIDs under the old machine SID
            needles.append(_Needle(name, TracePattern(old, digit_boundary=True), None,
                                   SidRewriter(sid, sid)))
            continue
        binary: bytes | None = None
        if name.startswith("dhcpv6-duid"):
            binary = bytes.fromhex(old) if len(old) % 2 == 0 and _is_hex(old) else None
        else:
            try:
                binary = uuid.UUID(old.strip("{}")).bytes_le
            except ValueError:
                binary = None
        needles.append(_Needle(name, TracePattern(old.strip("{}")), binary))
    return needles


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def scan_hives(hives: Iterable[LoadedHive], old_identity: dict[str, str]) -> list[Hit]:
    needles = _needles(old_identity)
    hits: list[Hit] = []
    if not needles:
        return hits
    for loaded in hives:
        for key in loaded.hive.walk():
            for needle in needles:
                if needle.text.found_in_text(key.name):
                    hits.append(Hit(loaded.label, key.path, None, "key name", needle.identity,
                                    needle.text.text))
            for value in key.values():
                raw = value.raw
                for needle in needles:
                    if needle.text.found_in_text(value.name):
                        hits.append(Hit(loaded.label, key.path, value.name, "value name",
                                        needle.identity, needle.text.text))
                    form = needle.text.found_in_bytes(raw)
                    if form is None and needle.sid is not None and needle.sid.contains_binary(raw):
                        form = "binary SID"
                    if form is None and needle.binary is not None and needle.binary in raw:
                        form = "binary GUID"
                    if form is not None:
                        hits.append(Hit(loaded.label, key.path, value.name, form,
                                        needle.identity, needle.text.text))
        for needle in needles:
            if needle.sid is None:
                continue
            for descriptor in loaded.hive.security_descriptors():
                if needle.sid.contains_binary(descriptor):
                    hits.append(Hit(loaded.label, "", None, "security descriptor",
                                    needle.identity, needle.text.text))
                    break
    return hits


def scan_windows_leftovers(system: WindowsSystem, old_identity: dict[str, str]) -> list[Hit]:
    """Scan the hives of `system` as they are on disk (used by `reseal verify`)."""
    return scan_hives(HiveSet(system).every_hive(), old_identity)


def old_identity_of_run(ctx: OperationContext) -> dict[str, str]:
    return {name: v.old for name, v in ctx.log.identity.items() if v.old and v.old != v.new}


def validate(request: IdentityRequest, options: object) -> None:
    """A scan takes no input."""


def apply(ctx: OperationContext) -> None:
    old = old_identity_of_run(ctx)
    if not old:
        return
    hives: HiveSet = hive_set(ctx)
    explained: set[tuple[str, str, str | None]] = ctx.shared.get(EXPLAINED_KEY, set())
    found = scan_hives(hives.every_hive(), old)
    hits = [h for h in found if (h.hive, h.key, h.value) not in explained]
    if len(found) > len(hits):
        ctx.note(f"{len(found) - len(hits)} traces of the old identity left on purpose "
                 "(explained in the notes above)")
    ctx.warn_at_most([f"old {hit.what} still in {hit.where}" for hit in hits], MAX_WARNINGS,
                     "{count} more traces of the old identity not listed")
    if not hits:
        ctx.note(f"no unexplained trace of the old identity ({', '.join(sorted(old))}) left in any hive")


OPERATION = Operation(
    name="windows-leftovers",
    description="Scan every hive for the old SID, computer name and GUIDs; list each trace left",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=None,
)
