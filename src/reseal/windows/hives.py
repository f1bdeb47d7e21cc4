"""The hives of one Windows installation, loaded once per run and committed once at its end.

Operations share one `HiveSet` through `ctx.shared` (key `SHARED_KEY`), so SYSTEM is parsed
once even when four operations edit it. A hive is read with its transaction logs (a dirty hive
is recovered first); at commit every changed hive is written through `GuestFS.write_bytes`
(journaled, atomic, a no-op in a dry run), and its .LOG/.LOG1/.LOG2 files are emptied so that
Windows has nothing stale to replay over the new hive at boot. Before a hive is written, its
free cells and the slack of its cells are zero-filled (`reseal.registry.scrub`), so no old name
or SID survives where no reader looks.

Each hive also carries its index (`Hive.index()`, built on first use, kept current by every
edit): operations and the leftover scan find identities through it instead of walking every
value again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from reseal.errors import CorruptData, ResealError
from reseal.image.model import WindowsSystem
from reseal.registry import Hive, Key
from reseal.registry.scrub import ScrubReport, scrub

SHARED_KEY = "reseal.windows.hives"
EXPLAINED_KEY = "reseal.windows.explained"  # (hive label, key path, value name) left on purpose
CONFIG_HIVES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT", "DRIVERS")
LOG_SUFFIXES = (".LOG", ".LOG1", ".LOG2")
# User hives: relative to the volume root or to the system root ("%SystemRoot%")
_USER_HIVE_GLOBS = (
    ("/Users", "NTUSER.DAT"),
    ("/Users", "AppData/Local/Microsoft/Windows/UsrClass.dat"),
    ("/Documents and Settings", "NTUSER.DAT"),
    ("%SystemRoot%/ServiceProfiles", "NTUSER.DAT"),
    ("%SystemRoot%/ServiceProfiles", "AppData/Local/Microsoft/Windows/UsrClass.dat"),
)
_SINGLE_USER_HIVES = ("%SystemRoot%/System32/config/systemprofile/NTUSER.DAT",)


@dataclass
class LoadedHive:
    """One hive of the image: where it lives, its parsed form, and whether a run changed it."""

    label: str  # "SYSTEM", "SAM", or the guest path of a user hive
    path: str  # guest path
    hive: Hive
    log_paths: list[str]
    changed: bool = False
    scrubbed: ScrubReport | None = None  # what the last commit zero-filled

    def key(self, path: str) -> Key | None:
        return self.hive.key(path)

    def where(self, key_path: str, value: str | None = None) -> str:
        """How the report names a key or value: HIVE\\Key\\Path[:Value]."""
        text = f"{self.label}\\{key_path}" if key_path else self.label
        return text if value is None else f"{text} [{value or '(default)'}]"


@dataclass
class HiveSet:
    """Every hive of one Windows installation that operations asked for, loaded lazily."""

    system: WindowsSystem
    warn: Callable[[str], None] = lambda message: None
    _loaded: dict[str, LoadedHive | None] = field(default_factory=dict)
    _user_paths: list[str] | None = None
    committed: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- loading
    def config(self, name: str) -> LoadedHive | None:
        """SYSTEM, SOFTWARE, SAM, SECURITY, DEFAULT or DRIVERS; None when the image has none."""
        name = name.upper()
        if name not in self._loaded:
            path = self.system.hive_path(name)
            self._loaded[name] = self._load(name, path) if path else None
        return self._loaded[name]

    def forget(self, name: str) -> None:
        """Drop what is cached for a config hive, e.g. after creating its file in the image."""
        self._loaded.pop(name.upper(), None)

    def require(self, name: str) -> LoadedHive:
        loaded = self.config(name)
        if loaded is None:
            raise ResealError(
                f"{self.system.system_root}/System32/config/{name}: hive not found in the image; "
                "is this a complete Windows installation?"
            )
        return loaded

    def user_hive_paths(self) -> list[str]:
        """Guest paths of user hives (NTUSER.DAT, UsrClass.dat) present in the image."""
        if self._user_paths is None:
            fs = self.system.fs
            found: list[str] = []
            for base, tail in _USER_HIVE_GLOBS:
                base_path = fs.find_path(base.replace("%SystemRoot%", self.system.system_root))
                if base_path is None or not fs.is_dir(base_path):
                    continue
                for profile in fs.listdir(base_path):
                    candidate = fs.find_path(f"{base_path}/{profile}/{tail}")
                    if candidate and fs.is_file(candidate) and not fs.is_symlink(candidate):
                        found.append(candidate)
            for single in _SINGLE_USER_HIVES:
                candidate = fs.find_path(single.replace("%SystemRoot%", self.system.system_root))
                if candidate and fs.is_file(candidate) and not fs.is_symlink(candidate):
                    found.append(candidate)
            self._user_paths = sorted(set(found))
        return self._user_paths

    def user(self, path: str) -> LoadedHive | None:
        if path not in self._loaded:
            self._loaded[path] = self._load(path, path)
        return self._loaded[path]

    def every_hive(self) -> Iterator[LoadedHive]:
        """Config hives then user hives, loading each on first use."""
        for name in CONFIG_HIVES:
            loaded = self.config(name)
            if loaded is not None:
                yield loaded
        for path in self.user_hive_paths():
            loaded = self.user(path)
            if loaded is not None:
                yield loaded

    def _load(self, label: str, path: str) -> LoadedHive:
        fs = self.system.fs
        data = bytearray(fs.read_bytes(path))  # the file's bytes object is freed at once
        directory, _, base = path.rpartition("/")
        log_paths: list[str] = []
        logs: list[bytes] = []
        for suffix in LOG_SUFFIXES:
            log = fs.find_child(directory or "/", base + suffix)
            if log and fs.is_file(log) and not fs.is_symlink(log):
                log_paths.append(log)
                logs.append(fs.read_bytes(log))
        try:
            hive = Hive.from_buffer(data, logs=[b for b in logs if b], name=label)
        except CorruptData as exc:
            raise CorruptData(f"{path}: {exc}") from exc
        for message in hive.warnings:
            self.warn(f"{path}: {message}")
        return LoadedHive(label, path, hive, log_paths)

    # ------------------------------------------------------------------ commit
    def mark_changed(self, loaded: LoadedHive) -> None:
        loaded.changed = True

    def commit(self) -> list[str]:
        """Write every changed hive (journaled) and empty its logs; returns the paths written."""
        fs = self.system.fs
        written: list[str] = []
        for loaded in self._loaded.values():
            if loaded is None or not loaded.changed:
                continue
            loaded.scrubbed = scrub(loaded.hive)
            path = loaded.path

            def write(data: memoryview, path: str = path) -> None:
                fs.write_bytes(path, data)

            loaded.hive.write_to(write)
            written.append(loaded.path)
            for log in loaded.log_paths:
                if fs.stat(log).st_size:
                    fs.write_bytes(log, b"")
            loaded.changed = False
        self.committed.extend(written)
        return written


def hive_set(ctx: Any) -> HiveSet:
    """The run's HiveSet for ctx.system, created on first use and kept in `ctx.shared`."""
    existing = ctx.shared.get(SHARED_KEY)
    if isinstance(existing, HiveSet) and existing.system is ctx.system:
        return existing
    created = HiveSet(ctx.system, warn=ctx.warn)
    ctx.shared[SHARED_KEY] = created
    return created


def commit_hives(shared: dict[str, Any]) -> list[str]:
    """Commit the run's hives, if any were opened; the runner calls this after all operations."""
    existing = shared.get(SHARED_KEY)
    return existing.commit() if isinstance(existing, HiveSet) else []


def explain(ctx: Any, loaded: LoadedHive, key_path: str, value: str | None, reason: str) -> None:
    """Record a trace left on purpose, so the leftover scan reports it as explained."""
    ctx.shared.setdefault(EXPLAINED_KEY, set()).add((loaded.label, key_path, value))
    ctx.note(f"{loaded.where(key_path, value)}: {reason}")


def walk_keys(key: Key, path: str = "") -> Iterator[tuple[str, Key]]:
    """Every key below `key` (itself first) with its path relative to the hive root."""
    stack: list[tuple[str, Key]] = [(path, key)]
    while stack:
        current_path, current = stack.pop()
        yield current_path, current
        children = current.subkeys()
        for child in reversed(children):
            child_path = f"{current_path}\\{child.name}" if current_path else child.name
            stack.append((child_path, child))


def control_sets(system_hive: LoadedHive) -> list[str]:
    """ControlSet00N keys present, plus the ones Select points at (Current, Default)."""
    names = {k.name for k in system_hive.hive.root.subkeys() if k.name.lower().startswith("controlset")}
    return sorted(names, key=str.lower)
