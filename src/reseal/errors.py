"""Error types. Each carries the exit code the CLI uses and a one-line message.

Messages say what is wrong, where, and how to fix it; the CLI prints them as one line.
"""

from __future__ import annotations


class ResealError(Exception):
    """The work failed (exit 1)."""

    exit_code = 1


class BadInput(ResealError):
    """Bad usage or bad input; nothing was touched (exit 2)."""

    exit_code = 2


class Refused(BadInput):
    """The target is in a state reseal will not touch (hibernated, mounted elsewhere, ...)."""


class UnsafePath(BadInput):
    """A path inside the image would leave the image root."""


class CorruptData(BadInput):
    """Structures read from the image are inconsistent (hive, partition table, ...)."""
