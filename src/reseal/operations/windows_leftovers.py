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
from reseal.registry.index import FREE_CELL
from reseal.windows.hives import EXPLAINED_KEY, HiveSet, LoadedHive, hive_set
from reseal.windows.sid import Sid, SidRewriter
from reseal.windows.traces import TracePattern, candidates

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

    @property
    def unused(self) -> bool:
        """A copy in a free cell or in the slack of a cell: no reader sees it, a commit of the
        hive zero-fills it."""
        return self.form in ("free cell", "cell slack")


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


def scan_hives(hives: Iterable[LoadedHive], old_identity: dict[str, str], *,
               unused: bool = False) -> list[Hit]:
    """Every trace of `old_identity` in key names, value names, value data and security
    descriptors; with `unused`, also the copies left in free cells and cell slack (form
    "free cell" / "cell slack"), which a commit zero-fills.

    Each hive is searched once for all needles as bytes (`reseal.windows.traces.candidates`);
    only the keys and values that hold a needle are decoded and checked.
    """
    needles = _needles(old_identity)
    hits: list[Hit] = []
    if not needles:
        return hits
    patterns = [needle.text for needle in needles]
    binaries: list[bytes] = []
    binary_owner: list[_Needle] = []
    for needle in needles:
        if needle.binary is not None:
            binaries.append(needle.binary)
            binary_owner.append(needle)
        if needle.sid is not None:
            binaries.append(needle.sid.old.to_bytes()[2:])  # authority and parts: every SID under it
            binary_owner.append(needle)
    for loaded in hives:
        found = candidates(loaded.hive, patterns, binaries)
        for candidate in found.keys:
            key = candidate.key
            if candidate.name:
                for needle in needles:
                    if needle.text.found_in_text(key.name):
                        hits.append(Hit(loaded.label, key.path, None, "key name", needle.identity,
                                        needle.text.text))
            for value in candidate.values:
                hits.extend(_value_hits(loaded, key.path, value.name, value.raw, needles))
        hits.extend(_descriptor_hits(loaded, needles))
        if unused:
            for source, occurrence in found.unused:
                owner = needles[source] if source < len(needles) else binary_owner[source - len(needles)]
                form = "free cell" if occurrence.kind == FREE_CELL else "cell slack"
                place = f"<{form} at file offset {occurrence.file_offset:#x}>"  # no key holds it
                hits.append(Hit(loaded.label, place, None, form, owner.identity, owner.text.text))
    return hits


def _value_hits(loaded: LoadedHive, key_path: str, name: str, raw: bytes,
                needles: list[_Needle]) -> list[Hit]:
    hits: list[Hit] = []
    for needle in needles:
        if needle.text.found_in_text(name):
            hits.append(Hit(loaded.label, key_path, name, "value name", needle.identity,
                            needle.text.text))
        form = needle.text.found_in_bytes(raw)
        if form is None and needle.sid is not None and needle.sid.contains_binary(raw):
            form = "binary SID"
        if form is None and needle.binary is not None and needle.binary in raw:
            form = "binary GUID"
        if form is not None:
            hits.append(Hit(loaded.label, key_path, name, form, needle.identity, needle.text.text))
    return hits


def _descriptor_hits(loaded: LoadedHive, needles: list[_Needle]) -> list[Hit]:
    hits: list[Hit] = []
    sids = [needle for needle in needles if needle.sid is not None]
    if not sids:
        return hits
    descriptors = loaded.hive.security_descriptors()
    for needle in sids:
        assert needle.sid is not None
        if any(needle.sid.contains_binary(descriptor) for descriptor in descriptors):
            hits.append(Hit(loaded.label, "", None, "security descriptor", needle.identity,
                            needle.text.text))
    return hits


def scan_windows_leftovers(system: WindowsSystem, old_identity: dict[str, str]) -> list[Hit]:
    """Scan the hives of `system` as they are on disk (used by `reseal verify`), free cells
    and cell slack included."""
    return scan_hives(HiveSet(system).every_hive(), old_identity, unused=True)


def _scrub_unused(ctx: OperationContext, hives: HiveSet, unused: list[Hit]) -> None:
    """Copies in free cells and slack go when the hive is written (it is zero-filled then):
    make sure every hive holding one is written."""
    labels = {hit.hive for hit in unused}
    if not labels:
        return
    for loaded in hives.every_hive():
        if loaded.label in labels:
            hives.mark_changed(loaded)
    ctx.note(f"{len(unused)} stale copies of the old identity in free cells and cell slack of "
             f"{', '.join(sorted(labels))}: zero-filled when the hives are written")


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
    everything = scan_hives(hives.every_hive(), old, unused=True)
    found = [h for h in everything if not h.unused]
    _scrub_unused(ctx, hives, [h for h in everything if h.unused])
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
