"""First-boot settings Windows reads from its hives: registered owner, time zone, locale.

Where each one lives, as Windows Setup's `Microsoft-Windows-Shell-Setup` and
`Microsoft-Windows-International-Core` settings and the control-panel tools write them:

* RegisteredOwner / RegisteredOrganization: SOFTWARE `Microsoft\\Windows NT\\CurrentVersion`
  (and its `WOW6432Node` twin on 64-bit Windows), REG_SZ, what `winver` shows.
* Time zone: SYSTEM `ControlSet00N\\Control\\TimeZoneInformation`, the values `tzutil /s`
  sets (https://learn.microsoft.com/windows/win32/api/timezoneapi/
  ns-timezoneapi-dynamic_time_zone_information): Bias, StandardName, StandardBias,
  StandardStart, DaylightName, DaylightBias, DaylightStart (SYSTEMTIME transition rules),
  TimeZoneKeyName, DynamicDaylightTimeDisabled and ActiveTimeBias (the bias in force now).
  They come from the image's own time-zone database, SOFTWARE `Microsoft\\Windows NT\\
  CurrentVersion\\Time Zones\\<name>`: `TZI` (REG_TZI_FORMAT: Bias, StandardBias,
  DaylightBias, StandardDate, DaylightDate), `MUI_Std`/`MUI_Dlt` (the names as
  `@tzres.dll,-N`, as Windows 7+ stores them; `Std`/`Dlt` before) and `Dynamic DST`
  (per-year TZI), https://learn.microsoft.com/windows/win32/api/timezoneapi/
  ns-timezoneapi-time_zone_information. A name the image does not have is refused.
* Locale: the user locale (formats) in `Control Panel\\International` of DEFAULT (.DEFAULT:
  the logon screen and SYSTEM) and of the default profile (`Users\\Default\\NTUSER.DAT`,
  copied for every new user): `Locale` (LCID, 8 hex digits) and `LocaleName`; the format
  values cached there for the old locale (sShortDate, iCountry...) are removed, so Windows
  takes them from the new locale (they are user overrides of the locale's data). The system
  locale: SYSTEM `Control\\Nls\\Locale` (default) and, for the locales in `SYSTEM_CODE_PAGES`,
  `Control\\Nls\\CodePage` ACP/OEMCP/MACCP (the code pages Windows pairs with that locale,
  from Microsoft's NLS locale tables); the LCID must be one the image lists in
  `Control\\Nls\\Locale` with its language group installed (`Control\\Nls\\Language Groups`).
  The display language is not changed (that needs a language pack).
"""

from __future__ import annotations

import locale as pylocale
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from reseal.errors import BadInput
from reseal.registry import Hive, Key
from reseal.windows.hives import LoadedHive, control_sets

REG_SZ = 1
REG_BINARY = 3
REG_DWORD = 4
CURRENT_VERSION = "Microsoft\\Windows NT\\CurrentVersion"
CURRENT_VERSION_32 = "WOW6432Node\\Microsoft\\Windows NT\\CurrentVersion"
TIME_ZONES = f"{CURRENT_VERSION}\\Time Zones"
TIME_ZONE_INFORMATION = "Control\\TimeZoneInformation"
INTERNATIONAL = "Control Panel\\International"
NLS = "Control\\Nls"
TZI = struct.Struct("<lll8H8H")

Record = Callable[[str, str, "str | None", "str | None"], None]

# Values of Control Panel\International that Windows caches from the user's locale.
LOCALE_DERIVED_VALUES = (
    "s1159", "s2359", "sCurrency", "sDate", "sDecimal", "sGrouping", "sLanguage", "sList",
    "sLongDate", "sMonDecimalSep", "sMonGrouping", "sMonThousandSep", "sNativeDigits",
    "sNegativeSign", "sPositiveSign", "sShortDate", "sThousand", "sTime", "sTimeFormat",
    "sShortTime", "sYearMonth", "iCalendarType", "iCountry", "iCurrDigits", "iCurrency",
    "iDate", "iDigits", "NumShape", "iFirstDayOfWeek", "iFirstWeekOfYear", "iLZero",
    "iMeasure", "iNegCurr", "iNegNumber", "iPaperSize", "iTime", "iTimePrefix", "iTLZero",
    "sCountry", "sAbbrevLangName", "iDayLzero", "iMonLzero",
)

# (ANSI, OEM, Mac) code pages of a system locale: Microsoft's NLS locale data (GetLocaleInfo
# LOCALE_IDEFAULTANSICODEPAGE / OEMCODEPAGE / MACCODEPAGE). Locales not listed keep the
# image's system locale (the user locale still changes).
SYSTEM_CODE_PAGES: dict[str, tuple[int, int, int]] = {
    "en-US": (1252, 437, 10000), "en-GB": (1252, 850, 10000), "en-CA": (1252, 850, 10000),
    "en-AU": (1252, 850, 10000), "en-NZ": (1252, 850, 10000), "en-IE": (1252, 850, 10000),
    "de-DE": (1252, 850, 10000), "de-AT": (1252, 850, 10000), "de-CH": (1252, 850, 10000),
    "fr-FR": (1252, 850, 10000), "fr-BE": (1252, 850, 10000), "fr-CH": (1252, 850, 10000),
    "fr-CA": (1252, 863, 10000), "it-IT": (1252, 850, 10000), "es-ES": (1252, 850, 10000),
    "es-MX": (1252, 850, 10000), "nl-NL": (1252, 850, 10000), "nl-BE": (1252, 850, 10000),
    "pt-BR": (1252, 850, 10000), "pt-PT": (1252, 860, 10000), "sv-SE": (1252, 850, 10000),
    "da-DK": (1252, 850, 10000), "nb-NO": (1252, 850, 10000), "fi-FI": (1252, 850, 10000),
    "pl-PL": (1250, 852, 10029), "cs-CZ": (1250, 852, 10029), "sk-SK": (1250, 852, 10029),
    "hu-HU": (1250, 852, 10029), "sl-SI": (1250, 852, 10029), "ru-RU": (1251, 866, 10007),
    "uk-UA": (1251, 866, 10017), "bg-BG": (1251, 866, 10007), "el-GR": (1253, 737, 10006),
    "tr-TR": (1254, 857, 10081), "he-IL": (1255, 862, 10005), "ja-JP": (932, 932, 10001),
    "ko-KR": (949, 949, 10003), "zh-CN": (936, 936, 10008), "zh-TW": (950, 950, 10002),
}


# ----------------------------------------------------------------- registered owner
def write_registered(software: LoadedHive, owner: str | None, organization: str | None,
                     record: Record) -> bool:
    changed = False
    for path in (CURRENT_VERSION, CURRENT_VERSION_32):
        key = software.key(path)
        if key is None:
            continue
        for name, text in (("RegisteredOwner", owner), ("RegisteredOrganization", organization)):
            if text is None:
                continue
            held = key.value(name)
            old = None if held is None else str(held.data)
            if old == text:
                continue
            key.set_value(name, REG_SZ, text)
            record(software.where(path, name), "set", old, text)
            changed = True
    return changed


# ----------------------------------------------------------------------- time zone
@dataclass(frozen=True)
class Tzi:
    """REG_TZI_FORMAT: biases in minutes, transition dates as SYSTEMTIME word tuples."""

    bias: int
    standard_bias: int
    daylight_bias: int
    standard_date: tuple[int, ...]
    daylight_date: tuple[int, ...]

    @classmethod
    def parse(cls, raw: bytes, *, where: str) -> Tzi:
        if len(raw) != TZI.size:
            raise BadInput(f"{where}: TZI is {len(raw)} bytes, not {TZI.size}; the image's "
                           "time-zone database is damaged")
        values = TZI.unpack(raw)
        return cls(values[0], values[1], values[2], tuple(values[3:11]), tuple(values[11:19]))

    @staticmethod
    def systemtime(words: tuple[int, ...]) -> bytes:
        return struct.pack("<8H", *words)

    @property
    def has_daylight(self) -> bool:
        return self.daylight_date[1] != 0 and self.standard_date[1] != 0


@dataclass(frozen=True)
class TimeZone:
    key_name: str  # as the image spells it, e.g. "W. Europe Standard Time"
    standard_name: str
    daylight_name: str
    tzi: Tzi
    per_year: dict[int, Tzi] = field(default_factory=dict)  # "Dynamic DST"

    def rule(self, year: int) -> Tzi:
        if not self.per_year:
            return self.tzi
        earlier = [y for y in self.per_year if y <= year]
        # an entry holds from its year until the next entry; before the first, the first
        return self.per_year[max(earlier) if earlier else min(self.per_year)]


def time_zone_names(software: Hive) -> list[str]:
    key = software.key(TIME_ZONES)
    return sorted(k.name for k in key.subkeys()) if key is not None else []


def _text(key: Key, *names: str) -> str | None:
    for name in names:
        value = key.value(name)
        if value is not None and isinstance(value.data, str) and value.data.strip("\0"):
            return value.data.strip("\0")
    return None


def find_time_zone(software: Hive, name: str) -> TimeZone:
    """The image's time zone `name` (case-insensitive); BadInput when it has none such."""
    zones = software.key(TIME_ZONES)
    if zones is None:
        raise BadInput(f"firstboot.timezone {name!r}: the image's SOFTWARE has no time-zone "
                       f"database ({TIME_ZONES}); the zone cannot be set offline")
    key = zones.subkey(name)
    if key is None:
        known = time_zone_names(software)
        import difflib

        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BadInput(f"firstboot.timezone {name!r}: not a time zone of this Windows image"
                       f"{hint}; use a key name of {TIME_ZONES}, as `tzutil /l` lists them")
    where = f"SOFTWARE\\{TIME_ZONES}\\{key.name}"
    raw = key.value("TZI")
    if raw is None:
        raise BadInput(f"{where}: no TZI value; the image's time-zone database is damaged")
    per_year: dict[int, Tzi] = {}
    dynamic = key.subkey("Dynamic DST")
    if dynamic is not None:
        for value in dynamic.values():
            if value.name.isdigit() and len(value.raw) == TZI.size:
                per_year[int(value.name)] = Tzi.parse(value.raw, where=f"{where}\\Dynamic DST")
    return TimeZone(key.name, _text(key, "MUI_Std", "Std") or key.name,
                    _text(key, "MUI_Dlt", "Dlt") or key.name,
                    Tzi.parse(raw.raw, where=where), per_year)


def _transition(words: tuple[int, ...], year: int) -> datetime:
    """A SYSTEMTIME rule (wYear 0: the wDay-th wDayOfWeek of wMonth, 5 = last) in `year`."""
    w_year, month, weekday, day, hour, minute, second, _ms = words
    if w_year:  # an absolute date
        return datetime(w_year, month, day, hour, minute, second)
    first = datetime(year, month, 1)
    # Windows counts weekdays from Sunday (0); Python from Monday (0)
    offset = (weekday - (first.weekday() + 1) % 7) % 7
    candidate = first + timedelta(days=offset + 7 * (day - 1))
    while candidate.month != month:
        candidate -= timedelta(days=7)
    return candidate.replace(hour=hour % 24, minute=minute, second=second)


def active_bias(zone: TimeZone, when: datetime) -> int:
    """The bias (UTC = local + bias, minutes) in force at `when` (UTC)."""
    utc = when.astimezone(UTC).replace(tzinfo=None)
    rule = zone.rule(utc.year)
    if not rule.has_daylight:
        return rule.bias + rule.standard_bias
    year = (utc - timedelta(minutes=rule.bias)).year
    starts = _transition(rule.daylight_date, year) + timedelta(
        minutes=rule.bias + rule.standard_bias)
    ends = _transition(rule.standard_date, year) + timedelta(
        minutes=rule.bias + rule.daylight_bias)
    daylight = starts <= utc < ends if starts < ends else (utc >= starts or utc < ends)
    return rule.bias + (rule.daylight_bias if daylight else rule.standard_bias)


def _dword(value: int) -> int:
    return value & 0xFFFFFFFF


def time_zone_values(zone: TimeZone, when: datetime) -> list[tuple[str, int, object]]:
    rule = zone.rule(when.astimezone(UTC).year)
    return [
        ("Bias", REG_DWORD, _dword(rule.bias)),
        ("StandardName", REG_SZ, zone.standard_name),
        ("StandardBias", REG_DWORD, _dword(rule.standard_bias)),
        ("StandardStart", REG_BINARY, Tzi.systemtime(rule.standard_date)),
        ("DaylightName", REG_SZ, zone.daylight_name),
        ("DaylightBias", REG_DWORD, _dword(rule.daylight_bias)),
        ("DaylightStart", REG_BINARY, Tzi.systemtime(rule.daylight_date)),
        ("TimeZoneKeyName", REG_SZ, zone.key_name),
        ("DynamicDaylightTimeDisabled", REG_DWORD, 0),
        ("ActiveTimeBias", REG_DWORD, _dword(active_bias(zone, when))),
    ]


def write_time_zone(system: LoadedHive, zone: TimeZone, when: datetime, record: Record) -> bool:
    changed = False
    for cs in control_sets(system):
        path = f"{cs}\\{TIME_ZONE_INFORMATION}"
        key = system.key(path)
        if key is None:
            if system.key(f"{cs}\\Control") is None:
                continue
            key = system.hive.create_key(path)
        before = _text(key, "TimeZoneKeyName")
        for name, kind, data in time_zone_values(zone, when):
            held = key.value(name)
            if held is not None and held.type == kind and held.data == data:
                continue
            key.set_value(name, kind, data)  # type: ignore[arg-type]
            changed = True
        if before != zone.key_name:
            record(system.where(path), "set", before, zone.key_name)
    return changed


# -------------------------------------------------------------------------- locale
@dataclass(frozen=True)
class Locale:
    name: str  # BCP-47 as Windows spells it, e.g. "de-DE"
    lcid: int

    @property
    def hex8(self) -> str:
        return f"{self.lcid:08X}"


def find_locale(name: str) -> Locale:
    """A Windows locale name (de-DE, de_DE, case-insensitive) and its LCID."""
    wanted = name.replace("_", "-").lower()
    for lcid, known in sorted(pylocale.windows_locale.items()):
        if known.replace("_", "-").lower() == wanted:
            language, _, region = known.partition("_")
            spelled = language.lower() + (f"-{region}" if region else "")
            return Locale(spelled, lcid)
    raise BadInput(f"firstboot.locale {name!r}: not a Windows locale name; use a name such as "
                   "en-US, de-DE or fr-CA")


def check_locale_installed(system: LoadedHive, wanted: Locale) -> None:
    for cs in control_sets(system)[:1]:
        locales = system.key(f"{cs}\\{NLS}\\Locale")
        groups = system.key(f"{cs}\\{NLS}\\Language Groups")
        if locales is None:
            return
        listed = locales.value(wanted.hex8)
        group = str(listed.data) if listed is not None and listed.data else None
        if group is None:
            raise BadInput(f"firstboot.locale {wanted.name}: this Windows does not list LCID "
                           f"{wanted.hex8} in {NLS}\\Locale; choose a locale it supports")
        installed = groups.value(group) if groups is not None else None
        if groups is not None and (installed is None or str(installed.data) != "1"):
            raise BadInput(f"firstboot.locale {wanted.name}: its language group {group} is not "
                           "installed in this Windows; install it in the master first")


def write_user_locale(hive: LoadedHive, wanted: Locale, record: Record) -> bool:
    key = hive.key(INTERNATIONAL)
    if key is None:
        key = hive.hive.create_key(INTERNATIONAL)
    old = _text(key, "LocaleName") or _text(key, "Locale")
    changed = False
    for name, text in (("Locale", wanted.hex8), ("LocaleName", wanted.name)):
        held = key.value(name)
        if held is None or held.data != text:
            key.set_value(name, REG_SZ, text)
            changed = True
    removed = [n for n in LOCALE_DERIVED_VALUES if key.delete_value(n)]
    if changed or removed:
        record(hive.where(INTERNATIONAL), "set", old,
               f"{wanted.name} ({len(removed)} cached format values of the old locale removed)")
    return changed or bool(removed)


def write_system_locale(system: LoadedHive, wanted: Locale, record: Record) -> list[str]:
    """Nls\\Locale default and, where known, the code pages; returns notes."""
    notes: list[str] = []
    pages = SYSTEM_CODE_PAGES.get(wanted.name)
    for cs in control_sets(system):
        nls = f"{cs}\\{NLS}"
        locales = system.key(f"{nls}\\Locale")
        if locales is None:
            continue
        code_pages = system.key(f"{nls}\\CodePage")
        if pages is None:
            notes.append(f"{system.where(nls)}: no code page data for {wanted.name}; the "
                         "system locale (non-Unicode programs) is kept")
            continue
        missing = [str(page) for page in pages[:2] if not _installed_page(code_pages, page)]
        if missing:
            notes.append(f"{system.where(nls)}\\CodePage: code pages {', '.join(missing)} are "
                         "not installed; the system locale is kept")
            continue
        held = locales.value("")
        old = str(held.data) if held is not None else None
        if old != wanted.hex8:
            locales.set_value("", REG_SZ, wanted.hex8)
            record(system.where(locales.path, ""), "set", old, wanted.hex8)
        assert code_pages is not None
        for name, page in zip(("ACP", "OEMCP", "MACCP"), pages, strict=True):
            current = code_pages.value(name)
            before = None if current is None else str(current.data)
            if before != str(page):
                code_pages.set_value(name, REG_SZ, str(page))
                record(system.where(code_pages.path, name), "set", before, str(page))
    return notes


def _installed_page(code_pages: Key | None, page: int) -> bool:
    """A code page is installed when CodePage\\<page> names its .nls file."""
    value = code_pages.value(str(page)) if code_pages is not None else None
    return value is not None and isinstance(value.data, str) and bool(value.data.strip("\0"))
