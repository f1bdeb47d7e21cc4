"""Commands a Windows clone runs once, as SYSTEM, at its first boot before anyone logs on.

Two mechanisms, chosen by the image's state (`setup_pending`):

* **A Sysprep'd image** (Windows Setup still to run: `ImageState` in SOFTWARE
  `Microsoft\\Windows\\CurrentVersion\\Setup\\State` or `Windows\\Setup\\State\\State.ini` is
  IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE or IMAGE_STATE_SPECIALIZE_RESEAL_TO_OOBE,
  https://learn.microsoft.com/windows-hardware/manufacture/desktop/windows-setup-states; or
  SYSTEM `Setup` SystemSetupInProgress = 1 with `oobe\\windeploy.exe` as its CmdLine):
  `%WINDIR%\\Setup\\Scripts\\SetupComplete.cmd`, which Setup runs as local system "after
  Windows is installed but before the logon screen appears"
  (https://learn.microsoft.com/windows-hardware/manufacture/desktop/
  add-a-custom-script-to-windows-setup; Windows 8+ skips it when an OEM product key is used,
  except on Enterprise and Server editions). An existing SetupComplete.cmd keeps its content;
  reseal appends one `call` line.
* **Any other image** (the usual clone of a running machine: Setup never runs again, and
  RunOnce waits for a logon): a machine startup script of the local Group Policy object,
  which runs as SYSTEM at every boot. Offline that takes the two halves Group Policy has:
  - the GPO: `%SystemRoot%\\System32\\GroupPolicy\\Machine\\Scripts\\scripts.ini`, UTF-16LE
    with BOM, section `[Startup]`, keys `<n>CmdLine` / `<n>Parameters` ([MS-GPSCR] 2.2.2,
    https://learn.microsoft.com/openspecs/windows_protocols/ms-gpscr/
    ff1fd13e-1e18-4160-9b50-0263e108e5e1), the script beside it in `Scripts\\Startup`, and
    `GroupPolicy\\gpt.ini` naming the Scripts client-side extension and its snap-in
    ({42B5FAAE-6536-11D2-AE5A-0000F87571E3}{40B6664F-4972-11D1-A7CA-0000F87571E3}) in
    `gPCMachineExtensionNames` with `Version` raised ([MS-GPSCR] 3.1.5: every change of
    scripts.ini is followed by a Group Policy Extension Update, [MS-GPOL] 3.3.4.4), so the
    engine reprocesses it;
  - what the Scripts extension would have written, because it is the registry, not the
    GPO, that the startup-script runner reads ("The Two Sides of Group Policy Script
    Extension Processing", https://technet.microsoft.com/library/ff404236.aspx): SOFTWARE
    `Microsoft\\Windows\\CurrentVersion\\Group Policy\\Scripts\\Startup\\<gpo>\\<n>` and its
    mirror under `...\\Group Policy\\State\\Machine\\Scripts\\Startup`, the GPO key with
    GPO-ID LocalGPO, SOM-ID Local, FileSysPath, DisplayName, GPOName, PSScriptOrder, the
    script key with Script, Parameters, IsPowershell and ExecTime;
  - `SyncForegroundPolicy` = 1 (SOFTWARE `Policies\\Microsoft\\Windows NT\\CurrentVersion\\
    Winlogon`, "Always wait for the network at computer startup and logon") while the hook
    is registered, unless the image already sets it: with Fast Logon Optimization (the
    default on client Windows) startup processing is asynchronous and the logon screen could
    come first (https://learn.microsoft.com/previous-versions/windows/desktop/Policy/
    logon-optimization).
  Existing startup scripts stay: reseal's entry is appended after them, in scripts.ini and in
  the registry.

Either way the hook (`reseal-firstboot.cmd`) runs each command in its own `cmd /d /q /c`
(so `exit 3` ends that command, not the hook), appends the command, its output and its exit
code to `%SystemRoot%\\Temp\\reseal-firstboot.log`, then removes its own registration (restores
scripts.ini, gpt.ini with a newer version, or SetupComplete.cmd, as they were before, deletes
its registry entries and the SyncForegroundPolicy value it added), its files and itself. A
`done` marker keeps the commands from running twice if the clean-up was interrupted. Nothing
in the image is executed by reseal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reseal.errors import BadInput
from reseal.registry import Hive, Key

REG_SZ = 1
REG_DWORD = 4
REG_QWORD = 11
SCRIPT_NAME = "reseal-firstboot.cmd"
WORK_DIR = "reseal-firstboot"
LOG_NAME = "reseal-firstboot.log"
SCRIPTS_CSE = "{42B5FAAE-6536-11D2-AE5A-0000F87571E3}"
SCRIPTS_TOOL = "{40B6664F-4972-11D1-A7CA-0000F87571E3}"
GP_SCRIPTS = "Microsoft\\Windows\\CurrentVersion\\Group Policy\\Scripts\\Startup"
GP_STATE = "Microsoft\\Windows\\CurrentVersion\\Group Policy\\State\\Machine\\Scripts\\Startup"
WINLOGON_POLICY = "Policies\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon"
SYNC_FOREGROUND = "SyncForegroundPolicy"
SETUP_STATE = "Microsoft\\Windows\\CurrentVersion\\Setup\\State"
PENDING_SETUP_STATES = ("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE",
                        "IMAGE_STATE_SPECIALIZE_RESEAL_TO_OOBE")
LOCAL_GPO_NAME = "Local Group Policy"
MAX_COMMANDS = 200
MAX_COMMAND_BYTES = 32 * 1024
SETUP_COMPLETE = "SetupComplete.cmd"
CRLF = "\r\n"


# ------------------------------------------------------------------ which mechanism
def setup_pending(software: Hive | None, system: Hive | None,
                  state_ini: str | None) -> str | None:
    """Why the image is a Sysprep'd one whose Setup (and SetupComplete.cmd) still runs, or
    None for an image that boots straight to the logon screen."""
    if software is not None:
        key = software.key(SETUP_STATE)
        value = key.value("ImageState") if key is not None else None
        if value is not None and isinstance(value.data, str):
            state = value.data.strip("\0")
            return f"ImageState {state}" if state in PENDING_SETUP_STATES else None
    if state_ini:
        match = re.search(r"^\s*ImageState\s*=\s*(\S+)", state_ini, re.MULTILINE | re.IGNORECASE)
        if match:
            state = match.group(1)
            return f"State.ini ImageState {state}" if state in PENDING_SETUP_STATES else None
    if system is not None:
        key = system.key("Setup")
        in_progress = key.value("SystemSetupInProgress") if key is not None else None
        cmdline = key.value("CmdLine") if key is not None else None
        if in_progress is not None and in_progress.data == 1 and cmdline is not None \
                and "windeploy" in str(cmdline.data).lower():
            return f"SYSTEM Setup SystemSetupInProgress 1, CmdLine {cmdline.data!s}"
    return None


# ------------------------------------------------------------------ the hook's files
def check_commands(commands: tuple[str, ...] | list[str]) -> None:
    if len(commands) > MAX_COMMANDS:
        raise BadInput(f"firstboot.commands: {len(commands)} commands, at most {MAX_COMMANDS}")
    for index, command in enumerate(commands):
        where = f"firstboot.commands[{index}]"
        if not command.strip():
            raise BadInput(f"{where}: empty command")
        if "\0" in command:
            raise BadInput(f"{where}: contains a NUL character")
        if len(command.encode("utf-8")) > MAX_COMMAND_BYTES:
            raise BadInput(f"{where}: longer than {MAX_COMMAND_BYTES} bytes")


def command_file(command: str) -> bytes:
    """One command as a batch file of its own (run with `cmd /d /q /c`). Non-ASCII text is
    written as UTF-8 with the console switched to code page 65001 first."""
    text = CRLF.join(command.replace("\r\n", "\n").replace("\r", "\n").split("\n")) + CRLF
    if text.isascii():
        return text.encode("ascii")
    return ("chcp 65001 >nul" + CRLF + text).encode("utf-8")


@dataclass(frozen=True)
class Cleanup:
    """What the hook puts back when it is done (batch lines, run from its own folder)."""

    lines: list[str] = field(default_factory=list)


def hook_script(count: int, how: str, cleanup: Cleanup) -> bytes:
    """The hook: run command-1..N once, log each, then undo its registration and go."""
    log = f"%SystemRoot%\\Temp\\{LOG_NAME}"
    lines = [
        "@echo off",
        f"rem reseal first-boot hook ({how}): runs the answer file's firstboot.commands",
        "rem once as SYSTEM, logs each with its exit code, then removes its registration.",
        "setlocal EnableExtensions DisableDelayedExpansion",
        f'set "RESEAL_HOOK=%~dp0{WORK_DIR}"',
        f'set "RESEAL_LOG={log}"',
        'if exist "%RESEAL_HOOK%\\done" goto cleanup',
        f'>>"%RESEAL_LOG%" echo [%DATE% %TIME%] reseal first boot of %COMPUTERNAME%: '
        f"{count} command(s)",
    ]
    for number in range(1, count + 1):
        command = f'"%RESEAL_HOOK%\\command-{number}.cmd"'
        lines += [
            f'>>"%RESEAL_LOG%" echo [%DATE% %TIME%] command {number}:',
            f'>>"%RESEAL_LOG%" type {command}',
            f'"%ComSpec%" /d /q /c "{command}" >>"%RESEAL_LOG%" 2>&1',
            f'>>"%RESEAL_LOG%" echo [%DATE% %TIME%] command {number} exit code %ERRORLEVEL%',
        ]
    lines += [
        '>"%RESEAL_HOOK%\\done" echo done',
        ":cleanup",
        *cleanup.lines,
        '>>"%RESEAL_LOG%" echo [%DATE% %TIME%] reseal first-boot hook removed',
        'rd /s /q "%RESEAL_HOOK%"',
        '(goto) 2>nul & del "%~f0"',
    ]
    return (CRLF.join(lines) + CRLF).encode("ascii")


def gpo_cleanup(scripts_ini_existed: bool, added_sync_policy: bool) -> Cleanup:
    """Batch lines that take the Group Policy registration back (run from Scripts\\Startup)."""
    ini = '"%~dp0..\\scripts.ini"'
    gpt = '"%SystemRoot%\\System32\\GroupPolicy\\gpt.ini"'
    lines = [f"attrib -h -s -r {ini} >nul 2>&1", f"attrib -h -s -r {gpt} >nul 2>&1"]
    if scripts_ini_existed:
        lines.append(f'copy /y "%RESEAL_HOOK%\\scripts.ini.after" {ini} >nul')
    else:
        lines.append(f"del /f /q {ini} >nul 2>&1")
    lines.append(f'copy /y "%RESEAL_HOOK%\\gpt.ini.after" {gpt} >nul')
    for base in (GP_SCRIPTS, GP_STATE):
        lines.append(
            f'for /f "delims=" %%R in (\'reg query "HKLM\\SOFTWARE\\{base}" /s /f '
            f'"{SCRIPT_NAME}" /d /e 2^>nul ^| findstr /b /i "HKEY_"\') do '
            f'reg delete "%%R" /f >nul 2>&1')
    if added_sync_policy:
        lines.append(f'reg delete "HKLM\\SOFTWARE\\{WINLOGON_POLICY}" /v {SYNC_FOREGROUND} '
                     "/f >nul 2>&1")
    return Cleanup(lines)


def setup_complete_cleanup(existed: bool) -> Cleanup:
    target = f'"%~dp0{SETUP_COMPLETE}"'
    if existed:
        return Cleanup([f'copy /y "%RESEAL_HOOK%\\{SETUP_COMPLETE}.before" {target} >nul'])
    return Cleanup([f"del /f /q {target} >nul 2>&1"])


def setup_complete_with_hook(existing: bytes | None) -> bytes:
    """SetupComplete.cmd with one line that calls the hook appended (content kept)."""
    call = f'call "%~dp0{SCRIPT_NAME}"'.encode("ascii")
    if existing is None:
        return b"@echo off" + CRLF.encode() + call + CRLF.encode()
    body = existing
    if body and not body.endswith((b"\n", b"\r")):
        body += CRLF.encode()
    return body + call + CRLF.encode()


# ------------------------------------------------------------------ scripts.ini, gpt.ini
def decode_ini(data: bytes) -> str:
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    return data.decode("latin-1")


def scripts_ini_with(existing: bytes | None, cmdline: str) -> tuple[bytes, int]:
    """scripts.ini with `cmdline` appended to its [Startup] scripts; (content, its index).
    Every other line stays as it was; the result is UTF-16LE with BOM ([MS-GPSCR] 2.2.2)."""
    text = decode_ini(existing) if existing else ""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    start = next((i for i, line in enumerate(lines)
                  if line.strip().lower() == "[startup]"), None)
    used: list[int] = []
    end = len(lines)
    if start is not None:
        for i in range(start + 1, len(lines)):
            stripped = lines[i].strip()
            if stripped.startswith("["):
                end = i
                break
            match = re.match(r"(\d+)cmdline\s*=", stripped, re.IGNORECASE)
            if match:
                used.append(int(match.group(1)))
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
    index = max(used) + 1 if used else 0
    entry = [f"{index}CmdLine={cmdline}", f"{index}Parameters="]
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["[Startup]", *entry]
    else:
        lines[end:end] = entry
    out = CRLF.join(lines) + CRLF
    return b"\xff\xfe" + out.encode("utf-16-le"), index


class _GptIni:
    """gpt.ini as lines, edited in its [General] section; everything else kept."""

    def __init__(self, existing: bytes | None) -> None:
        text = existing.decode("latin-1") if existing else ""
        self.lines = text.replace("\r\n", "\n").split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        general = [i for i, line in enumerate(self.lines)
                   if line.strip().lower() == "[general]"]
        if not general:
            self.lines[0:0] = ["[General]"]
            general = [0]
        self.general = general[0]

    def _find(self, name: str) -> int | None:
        for i in range(self.general + 1, len(self.lines)):
            stripped = self.lines[i].strip()
            if stripped.startswith("["):
                break
            key, sep, _value = stripped.partition("=")
            if sep and key.strip().lower() == name.lower():
                return i
        return None

    def get(self, name: str) -> str | None:
        index = self._find(name)
        return self.lines[index].partition("=")[2].strip() if index is not None else None

    def set(self, name: str, value: str) -> None:
        index = self._find(name)
        if index is None:
            self.lines.insert(self.general + 1, f"{name}={value}")
        else:
            self.lines[index] = f"{self.lines[index].partition('=')[0]}={value}"

    def to_bytes(self) -> bytes:
        return (CRLF.join(self.lines) + CRLF).encode("latin-1")


def _with_scripts_extension(current: str | None) -> str:
    pair = f"[{SCRIPTS_CSE}{SCRIPTS_TOOL}]"
    if current and SCRIPTS_CSE.lower() in current.lower():
        return current
    groups = re.findall(r"\[[^\]]*\]", current or "") + [pair]
    groups.sort(key=lambda g: g[1:39].upper())  # the engine expects them sorted by CSE GUID
    return "".join(groups)


def _next_machine_version(version: int) -> int:
    """Version holds the user part in the high word, the machine part in the low word."""
    user, machine = version >> 16, version & 0xFFFF
    return (user << 16) | ((machine + 1) & 0xFFFF or 1)


def gpt_ini_with_scripts(existing: bytes | None) -> tuple[bytes, bytes]:
    """(gpt.ini naming the Scripts extension, one version up; gpt.ini for after the hook:
    the original content, one more version up, so the engine reprocesses it again)."""
    now = _GptIni(existing)
    held = now.get("Version")
    version = _next_machine_version(int(held) if held and held.isdigit() else 0)
    now.set("gPCMachineExtensionNames",
            _with_scripts_extension(now.get("gPCMachineExtensionNames")))
    now.set("Version", str(version))
    after = _GptIni(existing)
    after.set("Version", str(_next_machine_version(version)))
    return now.to_bytes(), after.to_bytes()


# ------------------------------------------------------------------ the registry half
def _numbered(key: Key) -> list[int]:
    return sorted(int(k.name) for k in key.subkeys() if k.name.isdigit())


def _local_gpo(hive: Hive, base: str) -> tuple[str, bool]:
    """The path of the local GPO's entry under `base` (created when absent), and whether it
    was created."""
    key = hive.key(base) or hive.create_key(base)
    for number in _numbered(key):
        entry = key.subkey(str(number))
        gpo = entry.value("GPO-ID") if entry is not None else None
        if gpo is not None and str(gpo.data).strip("\0").lower() == "localgpo":
            return f"{base}\\{number}", False
    numbers = _numbered(key)
    return f"{base}\\{numbers[-1] + 1 if numbers else 0}", True


def register_startup_script(software: Hive, file_sys_path: str) -> list[str]:
    """Add the hook to the local GPO's startup scripts in the registry (Scripts and
    State mirrors); returns the key paths written."""
    written = []
    for base in (GP_SCRIPTS, GP_STATE):
        gpo_path, created = _local_gpo(software, base)
        gpo = software.key(gpo_path) or software.create_key(gpo_path)
        if created:
            gpo.set_value("GPO-ID", REG_SZ, "LocalGPO")
            gpo.set_value("SOM-ID", REG_SZ, "Local")
            gpo.set_value("FileSysPath", REG_SZ, file_sys_path)
            gpo.set_value("DisplayName", REG_SZ, LOCAL_GPO_NAME)
            gpo.set_value("GPOName", REG_SZ, LOCAL_GPO_NAME)
            gpo.set_value("PSScriptOrder", REG_DWORD, 1)
        numbers = _numbered(gpo)
        script_path = f"{gpo_path}\\{numbers[-1] + 1 if numbers else 0}"
        script = software.create_key(script_path)
        script.set_value("Script", REG_SZ, SCRIPT_NAME)
        script.set_value("Parameters", REG_SZ, "")
        script.set_value("IsPowershell", REG_DWORD, 0)
        script.set_value("ExecTime", REG_QWORD, bytes(16))  # not run yet (a zero SYSTEMTIME)
        written.append(script_path)
    return written


def add_sync_foreground_policy(software: Hive) -> bool:
    """Set SyncForegroundPolicy = 1 unless the image sets it already; True when added."""
    key = software.key(WINLOGON_POLICY)
    if key is not None and key.value(SYNC_FOREGROUND) is not None:
        return False
    key = key or software.create_key(WINLOGON_POLICY)
    key.set_value(SYNC_FOREGROUND, REG_DWORD, 1)
    return True
