"""Rewriting references in guest text files: read (bounded), replace, write (journaled), and
one change line per replaced reference. Used by the operations that renew disk-level ids."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reseal.errors import ResealError
from reseal.image.guestfs import GuestFS
from reseal.operations.base import OperationContext

MAX_TEXT = 8 << 20
Replace = Callable[[str], tuple[str, list[tuple[str, str]]]]


def rewrite_references(ctx: OperationContext, files: Sequence[tuple[GuestFS, str, str]],
                       replace: Replace, what: str) -> list[str]:
    """Apply `replace` to each (fs, guest path, label) file; returns the paths changed."""
    changed = []
    for fs, path, label in files:
        try:
            text = fs.read_bytes(path, limit=MAX_TEXT).decode("utf-8", "surrogateescape")
        except (ResealError, OSError) as exc:
            ctx.warn(f"{label}: not read ({exc}); {what} in it not followed")
            continue
        new_text, done = replace(text)
        if new_text == text:
            continue
        fs.write_text(path, new_text)
        for old, new in done:
            ctx.change(label, "set", old, new)
        changed.append(path)
    return changed
