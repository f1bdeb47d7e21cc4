"""Finding an identity string in registry data, in the forms Windows stores it.

A computer name, SID or GUID may sit in a value as UTF-16LE (REG_SZ and most binary blobs) or as
ASCII/ANSI (older binary structures). Matching is case-insensitive on ASCII letters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from reseal.registry import Hive, Key, Value
from reseal.registry.index import (
    FREE_CELL,
    KEY_NAME,
    SLACK,
    VALUE_DATA,
    VALUE_NAME,
    Needle,
    Occurrence,
    walk_order,
)

STRING_TYPES = (1, 2, 6, 7)  # REG_SZ, REG_EXPAND_SZ, REG_LINK, REG_MULTI_SZ


def _ascii_insensitive(text: str) -> str:
    parts = []
    for char in text:
        if char.isascii() and char.isalpha():
            parts.append(f"[{char.lower()}{char.upper()}]")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


@dataclass(frozen=True)
class TracePattern:
    """Byte patterns for one identity string; `boundary` refuses a match followed by a digit
    (so S-1-5-21-1-2-3 does not match inside S-1-5-21-1-2-34)."""

    text: str
    digit_boundary: bool = False

    def _utf16(self) -> re.Pattern[bytes]:
        return _utf16_pattern(self.text, self.digit_boundary)

    def _ascii(self) -> re.Pattern[bytes]:
        return _ascii_pattern(self.text, self.digit_boundary)

    def text_regex(self) -> re.Pattern[str]:
        return _text_pattern(self.text, self.digit_boundary)


    def found_in_bytes(self, data: bytes) -> str | None:
        """'utf-16le' or 'ascii' when the text occurs in `data`, else None."""
        if not self.text:
            return None
        if self._utf16().search(data):
            return "utf-16le"
        if self.text.isascii() and self._ascii().search(data):
            return "ascii"
        return None

    def found_in_text(self, text: str) -> bool:
        return bool(self.text) and self.text_regex().search(text) is not None

    def replace_in_bytes(self, data: bytes, new: str, *, same_length_only: bool) -> tuple[bytes, int]:
        """Replace the UTF-16LE and ASCII forms; with `same_length_only`, only when `new` has the
        old length (binary structures must keep their layout)."""
        if same_length_only and len(new) != len(self.text):
            return data, 0
        out, count = self._utf16().subn(new.encode("utf-16-le"), data)
        if self.text.isascii() and new.isascii():
            out, more = self._ascii().subn(new.encode("ascii"), out)
            count += more
        return out, count

    def replace_in_text(self, text: str, new: str) -> tuple[str, int]:
        return self.text_regex().subn(new.replace("\\", "\\\\"), text)

    def needles(self) -> list[Needle]:
        """Byte strings every match of this pattern contains, in value data and in names as
        the hive stores them (UTF-16LE, or Latin-1 for compressed names); boundaries left out,
        so a hit is a candidate that `found_in_bytes`/`found_in_text` then decides."""
        if not self.text:
            return []
        if not self.text.isascii():
            return [Needle(self.text.encode("utf-16-le", "surrogatepass"))]
        lowered = self.text.lower()
        return [Needle(lowered.encode("utf-16-le"), True), Needle(lowered.encode("ascii"), True)]

    def folding_needle(self) -> Needle | None:
        """For names stored as UTF-16: Python's case-insensitive match also takes U+0130/U+0131
        for i, U+017F for s and U+212A for k. Every such match still holds the longest run of
        the text without i, k or s literally; None when that run is too short to search for."""
        runs = re.split(r"[iksIKS]", self.text)
        longest = max(runs, key=len)
        if longest == self.text:
            return None  # nothing to fold: the plain needles cover it
        if len(longest) < 4:
            return Needle(b"")  # too short to be selective: check every UTF-16 name
        return Needle(longest.lower().encode("utf-16-le"), True)


@lru_cache(maxsize=256)
def _utf16_pattern(text: str, digit_boundary: bool) -> re.Pattern[bytes]:
    if text.isascii():
        body = b"".join(
            (f"[{c.lower()}{c.upper()}]".encode() if c.isalpha() else re.escape(c.encode())) + b"\x00"
            for c in text
        )
    else:
        body = re.escape(text.encode("utf-16-le"))
    tail = rb"(?![0-9]\x00)" if digit_boundary else b""
    return re.compile(body + tail)


@lru_cache(maxsize=256)
def _ascii_pattern(text: str, digit_boundary: bool) -> re.Pattern[bytes]:
    body = _ascii_insensitive(text).encode("utf-8", "surrogateescape")
    tail = rb"(?![0-9])" if digit_boundary else b""
    return re.compile(body + tail)


@lru_cache(maxsize=256)
def _text_pattern(text: str, digit_boundary: bool) -> re.Pattern[str]:
    tail = r"(?![0-9])" if digit_boundary else ""
    return re.compile(re.escape(text) + tail, re.IGNORECASE)


@dataclass
class KeyCandidates:
    """A key that may hold a pattern: in its name, and/or in these values (listing order)."""

    key: Key
    name: bool = False
    values: list[Value] = field(default_factory=list)


@dataclass
class Candidates:
    """Where the needles of some patterns occur in one hive, mapped to keys and values (in the
    order `Hive.walk()` visits them), plus the matches in free cells and cell slack, each with
    the index of its source (a pattern, then the binaries after the patterns)."""

    keys: list[KeyCandidates]
    unused: list[tuple[int, Occurrence]]


def candidates(hive: Hive, patterns: Sequence[TracePattern], binaries: Sequence[bytes] = ()) -> Candidates:
    """Keys and values that may hold one of `patterns` (text) or `binaries` (exact bytes),
    found by one byte search of the hive and its index instead of decoding every value.

    The answer is a superset of what the patterns' own checks find; callers decide each
    candidate with `found_in_text`/`found_in_bytes` as before. A pattern of non-ASCII text is
    matched with Unicode case folding, which bytes cannot express: then every key and value
    is a candidate (the slow, complete walk).
    """
    if any(p.text and not p.text.isascii() for p in patterns):
        return Candidates([KeyCandidates(key, True, key.values()) for key in hive.walk()], [])
    needles: list[Needle] = []
    sources: list[int] = []
    folding: set[int] = set()
    check_all_wide = False
    for source, pattern in enumerate(patterns):
        for needle in pattern.needles():
            needles.append(needle)
            sources.append(source)
        fold = pattern.folding_needle()
        if fold is not None and not fold.data:
            check_all_wide = True
        elif fold is not None:
            folding.add(len(needles))
            needles.append(fold)
            sources.append(source)
    for source, binary in enumerate(binaries, start=len(patterns)):
        if binary:
            needles.append(Needle(binary))
            sources.append(source)
    index = hive.index().build()  # once per hive and run; the edits keep it current
    found = index.find(needles) if needles else []
    by_key: dict[int, KeyCandidates] = {}
    values: dict[int, set[int]] = {}
    unused: list[tuple[int, Occurrence]] = []

    def entry(nk: int) -> KeyCandidates:
        if nk not in by_key:
            by_key[nk] = KeyCandidates(index.key_at(nk))
        return by_key[nk]

    for hit in found:
        if hit.kind in (FREE_CELL, SLACK):
            if hit.needle not in folding:
                unused.append((sources[hit.needle], hit))
            continue
        if hit.needle in folding and (hit.kind == VALUE_DATA or hit.cell not in index.wide_names):
            continue
        if hit.kind == KEY_NAME and hit.key is not None:
            entry(hit.key).name = True
        elif hit.kind in (VALUE_NAME, VALUE_DATA) and hit.key is not None and hit.value is not None:
            entry(hit.key)
            values.setdefault(hit.key, set()).add(hit.value)
    for vk in index.big_values:  # data split over segments: a match may straddle two of them
        owner = index.owner_key(vk)
        if owner is not None:
            entry(owner)
            values.setdefault(owner, set()).add(vk)
    if check_all_wide:
        for key in index.wide_keys():
            entry(key.offset).name = True
        for key, value in index.wide_values():
            entry(key.offset)
            values.setdefault(key.offset, set()).add(value.offset)
    for nk, wanted in values.items():
        by_key[nk].values = [index.value_at(vk) for vk in hive.value_offsets(nk) if vk in wanted]
    ordered = sorted(by_key.values(), key=lambda c: walk_order(c.key.path))
    return Candidates(ordered, unused)
