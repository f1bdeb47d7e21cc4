"""windows-firstboot: the answer file's `firstboot:` settings, written offline where Windows
reads them at boot: registered owner and organization, time zone, locale, and commands run
once as SYSTEM at the clone's first boot before anyone logs on.

Where each setting goes, and the sources, are in `reseal.windows.firstboot` (owner, time
zone, locale) and `reseal.windows.startup` (the commands: SetupComplete.cmd on a Sysprep'd
image, otherwise a startup script of the local Group Policy object that removes itself).
Every refusal (a time zone the image does not have, a locale it does not support, a
malformed command, a hook of an earlier run still waiting) happens before anything is
written, and early (ORDER 6), before the operations that write files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reseal.domain.settings import FirstBootSettings
from reseal.errors import BadInput
from reseal.image.guestfs import TEXT_LIMIT, GuestFS
from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.windows import firstboot, startup
from reseal.windows.hives import HiveSet, LoadedHive, hive_set

ORDER = 6  # after windows-domain-join's checks, before any operation writes a file
CURRENT_VERSION = "Microsoft\\Windows NT\\CurrentVersion"


def validate(request: IdentityRequest, options: Any) -> None:
    settings = request.firstboot
    if settings is None:
        return
    if settings.locale is not None:
        firstboot.find_locale(settings.locale)
    startup.check_commands(settings.commands)
    for name, text in (("registered_owner", settings.registered_owner),
                       ("registered_organization", settings.registered_organization)):
        if text is not None and ("\0" in text or len(text) > 256):
            raise BadInput(f"firstboot.{name}: at most 256 characters, no NUL")


def _wanted(settings: FirstBootSettings | None) -> bool:
    return settings is not None and any((
        settings.registered_owner is not None, settings.registered_organization is not None,
        settings.timezone is not None, settings.locale is not None, settings.commands))


def _child(fs: GuestFS, parent: str, name: str) -> str:
    """`parent/name` as the image spells it (case-insensitive), or as given when absent."""
    return fs.find_child(parent, name) or f"{parent.rstrip('/')}/{name}"


def _path(fs: GuestFS, base: str, *names: str) -> str:
    current = base
    for name in names:
        current = _child(fs, current, name) if fs.is_dir(current) else f"{current}/{name}"
    return current


def _mkdirs(fs: GuestFS, path: str) -> None:
    if not fs.is_dir(path):
        fs.mkdir(path)


@dataclass
class _Hook:
    """Where the hook goes and what it replaces (read before anything is written)."""

    mode: str  # "setupcomplete" or "gpo"
    why: str
    folder: str  # the folder holding reseal-firstboot.cmd
    work: str
    existing: dict[str, bytes | None]  # guest path -> old content (None: absent)


def _plan_hook(ctx: OperationContext, hives: HiveSet) -> _Hook:
    windows = ctx.system
    assert isinstance(windows, WindowsSystem)
    fs, root = windows.fs, windows.system_root
    software, system = hives.config("SOFTWARE"), hives.config("SYSTEM")
    state_path = fs.find_path(f"{root}/Setup/State/State.ini")
    state_ini = startup.decode_ini(fs.read_bytes(state_path, limit=TEXT_LIMIT)) \
        if state_path and fs.is_file(state_path) else None
    why = startup.setup_pending(software.hive if software else None,
                                system.hive if system else None, state_ini)
    if why is not None:
        folder = _path(fs, root, "Setup", "Scripts")
        watched = [f"{folder}/{startup.SETUP_COMPLETE}"]
        mode = "setupcomplete"
    else:
        if software is None:
            raise BadInput(f"{root}/System32/config/SOFTWARE: missing; the startup script "
                           "that runs firstboot.commands is registered there")
        policy = _path(fs, root, "System32", "GroupPolicy")
        scripts = _path(fs, policy, "Machine", "Scripts")
        folder = _child(fs, scripts, "Startup") if fs.is_dir(scripts) else f"{scripts}/Startup"
        watched = [_child(fs, scripts, "scripts.ini") if fs.is_dir(scripts)
                   else f"{scripts}/scripts.ini",
                   _child(fs, policy, "gpt.ini") if fs.is_dir(policy) else f"{policy}/gpt.ini"]
        mode, why = "gpo", "no Windows Setup pending: local Group Policy startup script"
    hook = _child(fs, folder, startup.SCRIPT_NAME) if fs.is_dir(folder) else \
        f"{folder}/{startup.SCRIPT_NAME}"
    if fs.exists(hook):
        raise BadInput(f"{hook}: the image already holds a reseal first-boot hook that has "
                       "not run yet; undo that run first (reseal undo) or boot the clone once")
    existing = {path: fs.read_bytes(path, limit=TEXT_LIMIT) if fs.is_file(path) else None
                for path in watched}
    return _Hook(mode, why, folder, f"{folder}/{startup.WORK_DIR}", existing)


def _install_hook(ctx: OperationContext, hives: HiveSet, hook: _Hook,
                  commands: tuple[str, ...]) -> None:
    fs = ctx.system.fs
    for path in (hook.folder, hook.work):
        _mkdirs(fs, path)
    for number, command in enumerate(commands, start=1):
        fs.write_bytes(f"{hook.work}/command-{number}.cmd", startup.command_file(command))
    written = [f"{hook.work}/command-{n}.cmd" for n in range(1, len(commands) + 1)]
    if hook.mode == "setupcomplete":
        target = next(iter(hook.existing))
        old = hook.existing[target]
        if old is not None:
            fs.write_bytes(f"{hook.work}/{startup.SETUP_COMPLETE}.before", old)
            written.append(f"{hook.work}/{startup.SETUP_COMPLETE}.before")
        cleanup = startup.setup_complete_cleanup(old is not None)
        fs.write_bytes(f"{hook.folder}/{startup.SCRIPT_NAME}",
                       startup.hook_script(len(commands), "SetupComplete.cmd", cleanup))
        fs.write_bytes(target, startup.setup_complete_with_hook(old))
        ctx.change(target, "write" if old is not None else "create",
                   None if old is None else f"{len(old)} bytes", "calls reseal-firstboot.cmd")
    else:
        scripts_ini, gpt_ini = hook.existing
        software = hives.require("SOFTWARE")
        new_ini, index = startup.scripts_ini_with(hook.existing[scripts_ini],
                                                  startup.SCRIPT_NAME)
        gpt_now, gpt_after = startup.gpt_ini_with_scripts(hook.existing[gpt_ini])
        if hook.existing[scripts_ini] is not None:
            fs.write_bytes(f"{hook.work}/scripts.ini.after", hook.existing[scripts_ini] or b"")
            written.append(f"{hook.work}/scripts.ini.after")
        fs.write_bytes(f"{hook.work}/gpt.ini.after", gpt_after)
        written.append(f"{hook.work}/gpt.ini.after")
        added = startup.add_sync_foreground_policy(software.hive)
        cleanup = startup.gpo_cleanup(hook.existing[scripts_ini] is not None, added)
        fs.write_bytes(f"{hook.folder}/{startup.SCRIPT_NAME}",
                       startup.hook_script(len(commands), "local Group Policy startup script",
                                           cleanup))
        fs.write_bytes(scripts_ini, new_ini)
        ctx.change(scripts_ini, "write" if hook.existing[scripts_ini] is not None else "create",
                   None, f"[Startup] {index}CmdLine={startup.SCRIPT_NAME}")
        fs.write_bytes(gpt_ini, gpt_now)
        ctx.change(gpt_ini, "write" if hook.existing[gpt_ini] is not None else "create",
                   None, "Scripts extension, version raised")
        for path in startup.register_startup_script(software.hive, _file_sys_path(software)):
            ctx.change(software.where(path), "create", None, startup.SCRIPT_NAME)
        if added:
            ctx.change(software.where(startup.WINLOGON_POLICY, startup.SYNC_FOREGROUND), "set",
                       None, "1 (until the hook has run)")
        hives.mark_changed(software)
    ctx.change(f"{hook.folder}/{startup.SCRIPT_NAME}", "create", None,
               f"first-boot hook, {len(commands)} command(s)")
    for path in written:
        ctx.change(path, "create")
    ctx.note(f"first boot runs {len(commands)} command(s) as SYSTEM before the logon screen "
             f"({hook.why}); output and exit codes go to %SystemRoot%\\Temp\\"
             f"{startup.LOG_NAME}, and the hook removes itself")


def _file_sys_path(software: LoadedHive) -> str:
    key = software.key(CURRENT_VERSION)
    value = key.value("SystemRoot") if key is not None else None
    root = str(value.data).strip("\0") if value is not None and value.data else "C:\\Windows"
    return f"{root}\\System32\\GroupPolicy\\Machine"


def _default_profile(hives: HiveSet) -> LoadedHive | None:
    for path in hives.user_hive_paths():
        parts = path.lower().split("/")
        if parts[-1] == "ntuser.dat" and len(parts) >= 2 and parts[-2] == "default":
            return hives.user(path)
    return None


def apply(ctx: OperationContext) -> None:
    settings = ctx.request.firstboot
    if not _wanted(settings):
        ctx.note("no first-boot settings requested")
        return
    assert settings is not None
    hives = hive_set(ctx)
    software, system = hives.config("SOFTWARE"), hives.config("SYSTEM")
    # --- every refusal first
    zone = None
    if settings.timezone is not None:
        if software is None:
            raise BadInput("firstboot.timezone: the image has no SOFTWARE hive, so no "
                           "time-zone database to check the name against")
        zone = firstboot.find_time_zone(software.hive, settings.timezone)
    wanted_locale = firstboot.find_locale(settings.locale) if settings.locale else None
    if wanted_locale is not None and system is not None:
        firstboot.check_locale_installed(system, wanted_locale)
    hook = _plan_hook(ctx, hives) if settings.commands else None
    if (settings.registered_owner or settings.registered_organization) and software is None:
        raise BadInput("firstboot.registered_owner: the image has no SOFTWARE hive")
    # --- then the writes
    record = ctx.change
    if software is not None and firstboot.write_registered(
            software, settings.registered_owner, settings.registered_organization, record):
        hives.mark_changed(software)
    if zone is not None and system is not None:
        if firstboot.write_time_zone(system, zone, datetime.now(UTC), record):
            hives.mark_changed(system)
        ctx.note(f"time zone {zone.key_name}; Windows reads the hardware clock as local time "
                 "unless RealTimeIsUniversal is set, so check the clock after the first boot")
    if wanted_locale is not None:
        for loaded in (hives.config("DEFAULT"), _default_profile(hives)):
            if loaded is not None and firstboot.write_user_locale(loaded, wanted_locale, record):
                hives.mark_changed(loaded)
        if system is not None:
            for note in firstboot.write_system_locale(system, wanted_locale, record):
                ctx.note(note)
            hives.mark_changed(system)
    if hook is not None:
        _install_hook(ctx, hives, hook, tuple(settings.commands))


OPERATION = Operation(
    name="windows-firstboot",
    description="the answer file's firstboot: registered owner and organization, time zone, "
    "locale, and commands run once as SYSTEM at first boot (SetupComplete.cmd on a Sysprep'd "
    "image, else a self-removing local Group Policy startup script), logged to Windows\\Temp",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
)
