"""What the hygiene operations share (logs, shell histories, temporary files, package caches,
crash data, login records): plan first, then remove, every file journaled.

A plan is made before anything changes, walking without ever following a link (a link is
removed as a link, never read through) and bounded in files and bytes: when a sweep is larger
than its bound the operation changes nothing and says how to raise it, so an undo journal
never grows past what was allowed. Special files (FIFOs, sockets, device nodes) are left
where they are: the journal could not put them back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from reseal.errors import ResealError, UnsafePath
from reseal.image.guestfs import GuestFS
from reseal.operations._linux_support import preflight
from reseal.operations.base import OperationContext

DEFAULT_MAX_FILES = 50_000
DEFAULT_MAX_BYTES = 1 << 30


@dataclass
class HygieneOptions:
    max_files: int = DEFAULT_MAX_FILES  # more files than this: the operation changes nothing
    max_bytes: int = DEFAULT_MAX_BYTES  # more bytes (the undo journal keeps them all): same


class TooLarge(Exception):
    pass


@dataclass
class Sweep:
    """Files to remove, files to empty and directories to remove once emptied."""

    fs: GuestFS
    limits: HygieneOptions
    remove: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    rmdirs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # special files, paths leaving the image
    bytes: int = 0

    def _count(self, size: int) -> None:
        self.bytes += size
        if len(self.remove) + len(self.empty) > self.limits.max_files:
            raise TooLarge(f"more than {self.limits.max_files} files")
        if self.bytes > self.limits.max_bytes:
            raise TooLarge(f"more than {self.limits.max_bytes} bytes")

    def _kind(self, path: str) -> tuple[str, int]:
        """("file" | "link" | "special" | "dir" | "", size) of a guest path, never following
        the last component."""
        try:
            st = os.lstat(self.fs.resolve(path, follow_last=False))
        except (FileNotFoundError, NotADirectoryError):
            return "", 0
        except UnsafePath:
            self.skipped.append(path)  # a link on the way climbs out of the image
            return "", 0
        if stat.S_ISLNK(st.st_mode):
            return "link", 0
        if stat.S_ISDIR(st.st_mode):
            return "dir", 0
        if stat.S_ISREG(st.st_mode):
            return "file", st.st_size
        return "special", 0

    def file(self, path: str) -> None:
        """Remove one file (or link) if it is there."""
        kind, size = self._kind(path)
        if kind in ("file", "link") and path not in self.remove:
            self.remove.append(path)
            self._count(size)
        elif kind == "special":
            self.skipped.append(path)

    def emptied(self, path: str) -> None:
        """Keep the file (mode, owner), drop its content."""
        kind, size = self._kind(path)
        if kind == "file" and size and path not in self.empty:
            self.empty.append(path)
            self._count(size)

    def tree(self, top: str, *, keep: Callable[[str], bool] = lambda _p: False,
             remove_dirs: Callable[[str], bool] = lambda _p: False) -> None:
        """Every file below `top` (not `top` itself), except those `keep` names; directories
        for which `remove_dirs` holds are removed too once empty."""
        if self._kind(top)[0] != "dir":
            return
        for dirpath, dirnames, filenames in self.fs.walk(top):
            base = dirpath.rstrip("/")
            for name in sorted(dirnames):
                path = f"{base}/{name}"
                if self._kind(path)[0] == "link":
                    self.file(path)  # a link to a directory: the link goes, its target stays
                elif remove_dirs(path):
                    self.rmdirs.append(path)
            for name in sorted(filenames):
                path = f"{base}/{name}"
                if not keep(path):
                    self.file(path)


def run_sweep(ctx: OperationContext, what: str,
              build: Callable[[Sweep], None], options: HygieneOptions | None = None) -> None:
    """Plan with `build`, then remove and empty; one change line per file."""
    preflight(ctx)
    limits = options if isinstance(options, HygieneOptions) else HygieneOptions()
    sweep = Sweep(ctx.system.fs, limits)
    try:
        build(sweep)
    except TooLarge as exc:
        ctx.warn(f"{what}: {exc} to remove; nothing removed (raise max_files / max_bytes in "
                 "the answer file's options for this operation to allow it)")
        return
    fs = sweep.fs
    for path in sweep.remove:
        try:
            fs.remove(path)
        except ResealError as exc:
            ctx.warn(f"{path}: not removed: {exc}")
            continue
        ctx.change(path, "remove")
    for path in sweep.empty:
        fs.write_bytes(path, b"")
        ctx.change(path, "set", "(login records)", "(empty)")
    for path in sorted(sweep.rmdirs, key=lambda p: -p.count("/")):
        if (ctx.dry_run or not fs.listdir(path)) and fs.rmdir(path):
            ctx.change(path + "/", "remove")
    if sweep.skipped:
        ctx.note(f"{what}: {len(sweep.skipped)} special files (FIFOs, sockets, device nodes) "
                 f"or paths through links leaving the image left in place, e.g. "
                 f"{sweep.skipped[0]}")
    if not (sweep.remove or sweep.empty or sweep.rmdirs):
        ctx.note(f"{what}: nothing to remove")
    else:
        ctx.note(f"{what}: {len(sweep.remove)} files removed, {len(sweep.empty)} emptied, "
                 f"{sweep.bytes} bytes (kept in the undo journal)")
