"""windows-computer-name: write a new computer name everywhere Windows keeps it.

In every ControlSet00N of SYSTEM (so Select\\Current and Select\\Default are both covered):
ComputerName (upper case) and ActiveComputerName, Tcpip `Hostname`/`NV Hostname` (the spellings
the hive already has), EventLog `LastComputerName`, the DNS registration cache (removed), the
computer's own device-container name, the mobile-hotspot profile derived from the old name
(removed; Windows makes a new one). SECURITY `PolAcDmN`; SOFTWARE Winlogon `DefaultDomainName` /
`AltDefaultDomainName` when they held the old name.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from reseal.image.model import OSFamily
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.registry import Key
from reseal.windows.hives import HiveSet, LoadedHive, control_sets, explain, hive_set
from reseal.windows.names import random_computer_name, validate_computer_name
from reseal.windows.sam import decode_policy_name, encode_policy_name
from reseal.windows.traces import STRING_TYPES, TracePattern, candidates

ORDER = 30
REG_SZ = 1
DEVPROP_TYPE_STRING = 0x12  # device property values store the type as 0xFFFF0000 | devprop type
COMPUTER_CONTAINER = "{00000000-0000-0000-FFFF-FFFFFFFFFFFF}"
WINLOGON = "Microsoft\\Windows NT\\CurrentVersion\\Winlogon"


@dataclass
class ComputerNameOptions:
    remove_hotspot_profile: bool = True
    sweep_all_hives: bool = True  # also replace the old name in other string values of every hive


def validate(request: IdentityRequest, options: ComputerNameOptions | None) -> None:
    if request.hostname is not None:
        validate_computer_name(request.hostname)


def old_computer_names(system: LoadedHive | None, security: LoadedHive | None) -> list[str]:
    """Every name the hives hold for this computer (first: the current control set's)."""
    names: list[str] = []
    if system is not None:
        for cs in control_sets(system):
            for path, value in (
                (f"{cs}\\Control\\ComputerName\\ComputerName", "ComputerName"),
                (f"{cs}\\Control\\ComputerName\\ActiveComputerName", "ComputerName"),
                (f"{cs}\\Services\\Tcpip\\Parameters", "Hostname"),
                (f"{cs}\\Services\\Tcpip\\Parameters", "NV Hostname"),
                (f"{cs}\\Services\\EventLog\\State", "LastComputerName"),
            ):
                text = _string(system.key(path), value)
                if text and text.upper() not in {n.upper() for n in names}:
                    names.append(text)
    if security is not None:
        key = security.key("Policy\\PolAcDmN")
        stored = key.value("") if key is not None else None
        if stored is not None and stored.raw:
            text = decode_policy_name(stored.raw, where=f"{security.path} Policy\\PolAcDmN")
            if text and text.upper() not in {n.upper() for n in names}:
                names.append(text)
    return names


def _string(key: Key | None, name: str) -> str | None:
    value = key.value(name) if key is not None else None
    if value is None or value.type not in (1, 2):
        return None
    data = value.data
    return data if isinstance(data, str) else None


def apply(ctx: OperationContext) -> None:
    hives = hive_set(ctx)
    options: ComputerNameOptions = ctx.options or ComputerNameOptions()
    system = hives.require("SYSTEM")
    security = hives.config("SECURITY")
    old_names = old_computer_names(system, security)
    new = ctx.request.hostname
    if new is None:
        rng = random.Random(ctx.request.seed) if ctx.request.seed is not None else random.SystemRandom()
        new = random_computer_name(rng)
    validate_computer_name(new)
    ctx.identity("computer-name", old_names[0] if old_names else None, new)
    for index, extra in enumerate(old_names[1:], start=2):
        ctx.identity(f"computer-name-{index}", extra, new)
    upper = new.upper()
    old_names = [n for n in old_names if n.upper() != upper]  # already the new name: leave it
    old_upper = {n.upper() for n in old_names}
    changed = False
    for cs in control_sets(system):
        for path, value, text in (
            (f"{cs}\\Control\\ComputerName\\ComputerName", "ComputerName", upper),
            (f"{cs}\\Control\\ComputerName\\ActiveComputerName", "ComputerName", upper),
            (f"{cs}\\Services\\EventLog\\State", "LastComputerName", upper),
        ):
            changed |= _set_existing(ctx, system, path, value, text, create_key=value == "ComputerName"
                                     and path.endswith("\\ComputerName\\ComputerName"))
        tcpip = f"{cs}\\Services\\Tcpip\\Parameters"
        for value in ("Hostname", "NV Hostname"):
            changed |= _set_existing(ctx, system, tcpip, value, new)
        dns_cache = f"{tcpip}\\DNSRegisteredAdapters"
        if system.hive.key(dns_cache) is not None:
            system.hive.delete_key(dns_cache)
            ctx.change(system.where(dns_cache), "remove")
            changed = True
        container = f"{cs}\\Control\\DeviceContainers\\{COMPUTER_CONTAINER}\\Properties"
        changed |= _rewrite_device_strings(ctx, system, container, old_upper, upper)
        if options.remove_hotspot_profile:
            changed |= _remove_hotspot(ctx, system, cs, old_names)
    if changed:
        hives.mark_changed(system)
    if security is not None:
        key = security.key("Policy\\PolAcDmN")
        stored = key.value("") if key is not None else None
        if key is not None and stored is not None:
            old_text = decode_policy_name(stored.raw, where=security.where(key.path)) if stored.raw else ""
            if old_text != upper:
                key.set_value("", stored.type, encode_policy_name(upper))
                ctx.change(security.where("Policy\\PolAcDmN"), "set", old_text, upper)
                hives.mark_changed(security)
    software = hives.config("SOFTWARE")
    if software is not None:
        winlogon = software.key(WINLOGON)
        touched = False
        for value in ("DefaultDomainName", "AltDefaultDomainName"):
            held = _string(winlogon, value)
            if winlogon is not None and held and held.upper() in old_upper:
                winlogon.set_value(value, REG_SZ, upper)
                ctx.change(software.where(WINLOGON, value), "set", held, upper)
                touched = True
        if touched:
            hives.mark_changed(software)
    if options.sweep_all_hives:
        _sweep(ctx, hives, old_names, new)


def _sweep(ctx: OperationContext, hives: HiveSet, old_names: list[str], new: str) -> None:
    """The old name elsewhere: replaced in string values (as a whole word) and in NUL-padded
    ASCII fields of binary values (shell-link tracker blocks); any other binary occurrence is
    left and explained, since its surrounding layout is unknown."""
    patterns = [TracePattern(name) for name in old_names if len(name) >= 2]
    if not patterns:
        return
    words = [re.compile(r"(?<![A-Za-z0-9-])" + re.escape(name) + r"(?![A-Za-z0-9-])", re.IGNORECASE)
             for name in old_names]
    any_word = re.compile("|".join(w.pattern for w in words), re.IGNORECASE)
    for loaded in hives.every_hive():
        changed = False
        found = candidates(loaded.hive, patterns)  # only where an old name's bytes occur
        for candidate in found.keys:
            key = candidate.key
            values = candidate.values
            named = [v.name for v in values if any_word.search(v.name)]
            for value in values:
                raw = value.raw
                if not any(p.found_in_bytes(raw) for p in patterns):
                    continue
                if value.type in STRING_TYPES:
                    text = raw.decode("utf-16-le", errors="surrogatepass") if len(raw) % 2 == 0 else None
                    if text is None:
                        continue
                    new_text = text
                    for word in words:
                        new_text = word.sub(lambda m: new.upper() if m.group(0).isupper() else new,
                                            new_text)
                    new_raw = new_text.encode("utf-16-le", errors="surrogatepass")
                else:
                    new_raw = raw
                    for name in old_names:
                        new_raw = _replace_padded_ascii(new_raw, name, new)
                if new_raw != raw:
                    key.set_value(value.name, value.type, new_raw)
                    ctx.change(loaded.where(key.path, value.name), "set", "old computer name", new)
                    changed = True
                if any(p.found_in_bytes(new_raw) for p in patterns):
                    explain(ctx, loaded, key.path, value.name,
                            "string value holds the old computer name inside a longer word "
                            "(not the name itself); left as it is" if value.type in STRING_TYPES
                            else "binary data holds the old computer name in a structure of "
                            "unknown layout; left as it is")
            if named:
                changed |= _rename_value_names(ctx, loaded, key, named, words, new)
        if changed:
            hives.mark_changed(loaded)


def _rename_value_names(ctx: OperationContext, loaded: LoadedHive, key: Key, names: list[str],
                        words: list[re.Pattern[str]], new: str) -> bool:
    """Value names that hold the old name as a word (printer connections `\\\\OLD\\printer`)."""
    renamed = False
    for name in names:
        value = key.value(name)
        if value is None:
            continue
        new_name = value.name
        for word in words:
            new_name = word.sub(lambda m: new.upper() if m.group(0).isupper() else new, new_name)
        if new_name == value.name or key.value(new_name) is not None:
            continue
        value_type, raw = value.type, value.raw
        key.delete_value(value.name)
        key.set_value(new_name, value_type, raw)
        ctx.change(loaded.where(key.path, value.name), "rename", value.name, new_name)
        renamed = True
    return renamed


def _replace_padded_ascii(raw: bytes, old: str, new: str) -> bytes:
    """Replace `old` where it is a NUL-terminated ASCII string in a fixed, NUL-padded field."""
    pattern = re.compile(re.escape(old.encode()) + rb"(\x00+)", re.IGNORECASE)

    def fit(match: re.Match[bytes]) -> bytes:
        width = len(match.group(0))
        if len(new) >= width:
            return match.group(0)
        replacement = (new.upper() if match.group(0)[: len(old)].isupper() else new).encode()
        return replacement + b"\x00" * (width - len(replacement))

    return pattern.sub(fit, raw)


def _set_existing(ctx: OperationContext, hive: LoadedHive, path: str, value: str, text: str,
                  *, create_key: bool = False) -> bool:
    key = hive.key(path)
    if key is None:
        if not create_key:
            return False
        key = hive.hive.create_key(path)
    current = key.value(value)
    if current is None and not create_key:
        return False
    old = current.data if current is not None else None
    if old == text:
        return False
    key.set_value(value, current.type if current is not None and current.type in (1, 2) else REG_SZ, text)
    ctx.change(hive.where(path, value), "set", old, text)
    return True


def _rewrite_device_strings(ctx: OperationContext, hive: LoadedHive, path: str,
                            old_upper: set[str], new: str) -> bool:
    """Device-container string properties (friendly name, model) that hold the old name."""
    root = hive.key(path)
    if root is None:
        return False
    changed = False
    for key in hive.hive.walk(root):
        for value in key.values():
            if value.type & 0xFFFF != DEVPROP_TYPE_STRING:
                continue
            text = value.raw.decode("utf-16-le", errors="replace").split("\0", 1)[0]
            if text.upper() in old_upper:
                key.set_value(value.name, value.type, (new + "\0").encode("utf-16-le"))
                ctx.change(hive.where(key.path, value.name), "set", text, new)
                changed = True
    return changed


def _remove_hotspot(ctx: OperationContext, hive: LoadedHive, cs: str, old_names: list[str]) -> bool:
    """The mobile-hotspot SSID defaults to the computer name; Windows makes a new profile."""
    changed = False
    for path, value in ((f"{cs}\\Services\\icssvc\\Settings", "PrivateConnectionSettings"),
                        (f"{cs}\\Services\\icssvc\\Roaming\\Profile", "SSID")):
        key = hive.key(path)
        current = key.value(value) if key is not None else None
        if key is None or current is None:
            continue
        raw = current.raw.upper()
        if any(name.upper().encode("utf-16-le") in raw or name.upper().encode() in raw
               for name in old_names):
            key.delete_value(value)
            ctx.change(hive.where(path, value), "remove", "hotspot profile named after the old name")
            changed = True
    return changed


OPERATION = Operation(
    name="windows-computer-name",
    description="Set a new Windows computer name (SYSTEM control sets, LSA, Winlogon)",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=ComputerNameOptions,
)
