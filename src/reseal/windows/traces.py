"""Finding an identity string in registry data, in the forms Windows stores it.

A computer name, SID or GUID may sit in a value as UTF-16LE (REG_SZ and most binary blobs) or as
ASCII/ANSI (older binary structures). Matching is case-insensitive on ASCII letters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

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
