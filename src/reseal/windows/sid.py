"""Windows security identifiers: text and binary forms, machine-SID validation and rewriting.

A machine SID is `S-1-5-21-a-b-c` (three 32-bit parts); every local account SID is the machine
SID plus one RID. Rewriting replaces that prefix wherever a whole SID starts with it, in binary
form (security descriptors, SAM values) and in text form (key names, strings). Because a machine
SID always has four sub-authorities, the binary form never changes size.
"""

from __future__ import annotations

import random
import re
import struct
from dataclasses import dataclass
from functools import lru_cache

from reseal.errors import BadInput, CorruptData

MAX_SUB_AUTHORITIES = 15
_SID_TEXT = re.compile(r"^S-1-(\d+)((?:-\d+)*)$", re.IGNORECASE)
_MACHINE_TEXT = re.compile(r"^S-1-5-21-(\d+)-(\d+)-(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Sid:
    """A SID as revision, 48-bit identifier authority and 32-bit sub-authorities."""

    authority: int
    sub_authorities: tuple[int, ...]
    revision: int = 1

    # ------------------------------------------------------------------ text
    @classmethod
    def parse(cls, text: str) -> Sid:
        match = _SID_TEXT.match(text.strip())
        if not match:
            raise BadInput(f"{text!r}: not a SID; expected the form S-1-5-21-1111-2222-3333")
        authority = int(match.group(1))
        subs = tuple(int(part) for part in match.group(2).split("-")[1:])
        if authority >= 1 << 48 or any(s >= 1 << 32 for s in subs):
            raise BadInput(f"{text!r}: a SID part is too large (authority 48 bits, parts 32 bits)")
        if len(subs) > MAX_SUB_AUTHORITIES:
            raise BadInput(f"{text!r}: more than {MAX_SUB_AUTHORITIES} sub-authorities")
        return cls(authority, subs)

    def __str__(self) -> str:
        auth = str(self.authority) if self.authority < 1 << 32 else hex(self.authority)
        return "-".join(["S", str(self.revision), auth, *map(str, self.sub_authorities)])

    # ---------------------------------------------------------------- binary
    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0, *, where: str = "SID") -> tuple[Sid, int]:
        """Parse the binary SID at `offset`; returns it and its size in bytes."""
        if offset < 0 or offset + 8 > len(data):
            raise CorruptData(f"{where}: SID at offset {offset} runs past the end of {len(data)} bytes")
        revision, count = data[offset], data[offset + 1]
        if revision != 1 or count > MAX_SUB_AUTHORITIES:
            raise CorruptData(
                f"{where}: bytes at offset {offset} are not a SID (revision {revision}, {count} parts)"
            )
        size = 8 + 4 * count
        if offset + size > len(data):
            raise CorruptData(f"{where}: SID at offset {offset} runs past the end of {len(data)} bytes")
        authority = int.from_bytes(data[offset + 2 : offset + 8], "big")
        subs = struct.unpack_from(f"<{count}I", data, offset + 8)
        return cls(authority, tuple(subs), revision), size

    def to_bytes(self) -> bytes:
        return (
            bytes([self.revision, len(self.sub_authorities)])
            + self.authority.to_bytes(6, "big")
            + struct.pack(f"<{len(self.sub_authorities)}I", *self.sub_authorities)
        )

    @property
    def size(self) -> int:
        return 8 + 4 * len(self.sub_authorities)

    # ------------------------------------------------------------ relations
    def starts_with(self, prefix: Sid) -> bool:
        n = len(prefix.sub_authorities)
        return (
            self.authority == prefix.authority
            and len(self.sub_authorities) >= n
            and self.sub_authorities[:n] == prefix.sub_authorities
        )

    def rid(self) -> int:
        return self.sub_authorities[-1]


def parse_machine_sid(text: str) -> Sid:
    """Validate a machine SID given by the user: S-1-5-21-a-b-c with 32-bit parts."""
    match = _MACHINE_TEXT.match(text.strip())
    if not match:
        raise BadInput(
            f"machine SID {text!r}: expected S-1-5-21-a-b-c (three decimal parts) or 'random'"
        )
    parts = tuple(int(match.group(i)) for i in (1, 2, 3))
    for part in parts:
        if part >= 1 << 32:
            raise BadInput(
                f"machine SID {text!r}: part {part} does not fit in 32 bits (max 4294967295)"
            )
    return Sid(5, (21, *parts))


def is_machine_sid(sid: Sid) -> bool:
    return sid.authority == 5 and len(sid.sub_authorities) == 4 and sid.sub_authorities[0] == 21


def random_machine_sid(rng: random.Random, like: Sid | None = None) -> Sid:
    """A new machine SID; with `like`, each part has the same number of decimal digits, so the
    text form keeps its length wherever it is embedded in a fixed-size structure."""
    parts: list[int] = []
    for i in range(3):
        if like is not None:
            digits = len(str(like.sub_authorities[i + 1]))
            low = 10 ** (digits - 1) if digits > 1 else 0
            high = min(10**digits - 1, (1 << 32) - 1)
        else:
            low, high = 1 << 29, (1 << 32) - 1
        value = rng.randint(low, high)
        while like is not None and value == like.sub_authorities[i + 1] and high > low:
            value = rng.randint(low, high)
        parts.append(value)
    return Sid(5, (21, *parts))


@dataclass(frozen=True)
class SidRewriter:
    """Replace machine SID `old` by `new` in every SID that starts with it (accounts included)."""

    old: Sid
    new: Sid

    def __post_init__(self) -> None:
        if len(self.old.sub_authorities) != len(self.new.sub_authorities):
            raise BadInput(f"{self.new}: a machine SID must have as many parts as {self.old}")

    def map_sid(self, sid: Sid) -> Sid | None:
        """The rewritten SID, or None when `sid` is not under the old machine SID."""
        if not sid.starts_with(self.old):
            return None
        n = len(self.old.sub_authorities)
        return Sid(sid.authority, self.new.sub_authorities + sid.sub_authorities[n:], sid.revision)

    # binary: a whole SID whose first parts are the machine SID (count byte 4 or more)
    def _binary_pattern(self, sid: Sid) -> re.Pattern[bytes]:
        return _binary_sid_pattern(sid.to_bytes()[2:])

    def rewrite_binary(self, data: bytes) -> tuple[bytes, int]:
        """Replace every embedded binary SID under the old machine SID; size is unchanged."""
        new_tail = self.new.to_bytes()[2:]
        pattern = self._binary_pattern(self.old)
        count = 0
        out = bytearray(data)
        for match in pattern.finditer(data):
            parts = match.group(1)[0]
            if match.start() + 8 + 4 * parts > len(data):
                continue
            out[match.start() + 2 : match.end()] = new_tail
            count += 1
        return bytes(out), count

    def contains_binary(self, data: bytes) -> bool:
        return self._binary_pattern(self.old).search(data) is not None

    # text: S-1-5-21-a-b-c not followed by another digit
    def text_pattern(self) -> re.Pattern[str]:
        return re.compile(re.escape(str(self.old)) + r"(?![0-9])", re.IGNORECASE)

    def rewrite_text(self, text: str) -> tuple[str, int]:
        return self.text_pattern().subn(str(self.new), text)


def sid_text_pattern(sid: Sid) -> re.Pattern[str]:
    return re.compile(re.escape(str(sid)) + r"(?![0-9])", re.IGNORECASE)


@lru_cache(maxsize=64)
def _binary_sid_pattern(tail: bytes) -> re.Pattern[bytes]:
    """A whole binary SID (revision 1, 4 to 15 parts) whose authority and first parts are `tail`."""
    return re.compile(b"\x01([\x04-\x0f])" + re.escape(tail), re.DOTALL)
