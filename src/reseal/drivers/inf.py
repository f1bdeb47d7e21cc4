"""INF files: a tolerant-but-strict parser and a typed model of what driver staging needs.

The grammar follows Microsoft's "General Syntax Rules for INF Files": `[Section]` headers,
`key = value` lines, `;` comments outside quotes, `\\` at the end of a line continues it,
`%strkey%` is replaced from `[Strings]` (or a localized `[Strings.LLLL]`), `%%` is a literal
`%`, and section/key names are case-insensitive. Anything the grammar cannot make sense of
raises `CorruptData` naming the file and line, so a broken INF never reaches the image.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from reseal.errors import CorruptData

MAX_INF_BYTES = 16 << 20  # larger than any real INF; refuses to read junk into memory
TEMPLATE_TOKEN = re.compile(r"\$[A-Z_]+\$|_INX_[A-Z_]+|\bINX_[A-Z_]+")
_SUBSTITUTION = re.compile(r"%([^%]*)%")


@dataclass(frozen=True)
class InfLine:
    """One logical line of a section: `key = f1, f2` or a bare `f1, f2` (key None)."""

    lineno: int
    key: str | None  # raw key (unsubstituted), None for lines without `=`
    fields: tuple[str, ...]  # raw fields with quotes removed, not yet substituted


@dataclass
class InfSection:
    name: str
    lineno: int
    lines: list[InfLine] = field(default_factory=list)


@dataclass(frozen=True)
class ModelEntry:
    """A device a Models section installs: description, install section, IDs."""

    description: str
    install_section: str
    hardware_id: str
    compatible_ids: tuple[str, ...]
    lineno: int
    raw_description: str = ""  # as written, e.g. "%VioStorScsi.DeviceDesc%"


@dataclass(frozen=True)
class ManufacturerEntry:
    """`%Mfg% = Models, NTamd64, NTamd64.10.0...16299`: base section and its decorations."""

    name: str
    models_section: str
    decorations: tuple[str, ...]
    lineno: int
    raw_name: str = ""  # as written, e.g. "%VENDOR%"


@dataclass(frozen=True)
class ServiceSpec:
    """A service install section ([xxx_Service_Inst])."""

    section: str
    service_type: int | None
    start_type: int | None
    error_control: int | None
    service_binary: str
    load_order_group: str
    display_name: str
    add_reg: tuple[str, ...]


@dataclass(frozen=True)
class AddService:
    """`AddService = name, flags, service-install-section[, event-log-install-section]`."""

    name: str
    flags: int
    spec: ServiceSpec | None
    lineno: int


@dataclass(frozen=True)
class CopyFileEntry:
    """One file of a CopyFiles section (or a `CopyFiles = @file` shortcut)."""

    destination: str
    source: str
    flags: int
    section: str  # the CopyFiles section ("" for @file), which picks the DestinationDirs entry
    lineno: int


@dataclass(frozen=True)
class SourceFile:
    """A `[SourceDisksFiles]` entry: where the file lives in the package (subdir)."""

    name: str
    disk_id: str
    subdir: str
    lineno: int


@dataclass(frozen=True)
class InstallSection:
    """An install section of a model and what the staging and boot-critical steps need."""

    name: str
    copy_files: tuple[CopyFileEntry, ...]
    add_reg: tuple[str, ...]
    services: tuple[AddService, ...]
    hw_add_reg: tuple[str, ...]


@dataclass(frozen=True)
class InfVersion:
    signature: str
    class_name: str
    class_guid: str
    provider: str
    driver_date: date | None
    driver_version: tuple[int, int, int, int] | None
    catalog_files: dict[str, str]  # "" for CatalogFile, "ntamd64" for CatalogFile.NTamd64
    pnp_lockdown: bool


class InfFile:
    """A parsed INF: raw sections plus typed accessors; string keys are substituted."""

    def __init__(self, path: Path, sections: dict[str, InfSection], encoding: str,
                 locale: str = "0409") -> None:
        self.path = path
        self.sections = sections
        self.encoding = encoding
        self.strings = self._collect_strings(locale)

    # ------------------------------------------------------------------ raw access
    @property
    def name(self) -> str:
        return self.path.name

    def section(self, name: str) -> InfSection | None:
        return self.sections.get(name.lower())

    def has_section(self, name: str) -> bool:
        return name.lower() in self.sections

    def where(self, lineno: int) -> str:
        return f"{self.path}:{lineno}"

    def expand(self, text: str, lineno: int = 0) -> str:
        """Substitute `%strkey%` from [Strings]; `%%` is `%`; unknown keys (dirids) stay."""

        def replace(match: re.Match[str]) -> str:
            key = match.group(1)
            if key == "":
                return "%"
            found = self.strings.get(key.lower())
            return found if found is not None else match.group(0)

        return _SUBSTITUTION.sub(replace, text)

    def entries(self, section: str) -> list[tuple[str | None, list[str], int]]:
        """(key, expanded fields, line) of every line of `section` (empty when absent)."""
        found = self.section(section)
        if found is None:
            return []
        return [
            (None if line.key is None else self.expand(line.key, line.lineno),
             [self.expand(f, line.lineno) for f in line.fields], line.lineno)
            for line in found.lines
        ]

    def values(self, section: str, key: str) -> list[tuple[list[str], int]]:
        """Every `key = ...` line of `section` (keys compared case-insensitively)."""
        lowered = key.lower()
        return [(fields, n) for k, fields, n in self.entries(section)
                if k is not None and k.lower() == lowered]

    def value(self, section: str, key: str) -> str:
        """First field of the first `key =` line, or "" when absent."""
        found = self.values(section, key)
        return found[0][0][0] if found and found[0][0] else ""

    # ------------------------------------------------------------------ typed model
    @property
    def is_template(self) -> bool:
        """An .inx (or an un-stamped .inf): placeholders the build tools would replace."""
        if self.path.suffix.lower() == ".inx":
            return True
        return any(TEMPLATE_TOKEN.search(m.models_section + "".join(m.decorations))
                   for m in self.manufacturers())

    def version(self) -> InfVersion:
        catalogs: dict[str, str] = {}
        for key, fields, _n in self.entries("Version"):
            if key is None:
                continue
            lowered = key.lower()
            if lowered == "catalogfile" or lowered.startswith("catalogfile."):
                catalogs[lowered.partition(".")[2]] = fields[0] if fields else ""
        driver_date, driver_version = self._driver_ver()
        return InfVersion(
            signature=self.value("Version", "Signature"),
            class_name=self.value("Version", "Class"),
            class_guid=self.value("Version", "ClassGUID").upper(),
            provider=self.value("Version", "Provider"),
            driver_date=driver_date,
            driver_version=driver_version,
            catalog_files=catalogs,
            pnp_lockdown=self.value("Version", "PnpLockdown").strip() == "1",
        )

    def _driver_ver(self) -> tuple[date | None, tuple[int, int, int, int] | None]:
        found = self.values("Version", "DriverVer")
        if not found:
            return None, None
        fields, lineno = found[0]
        when: date | None = None
        version: tuple[int, int, int, int] | None = None
        if fields and fields[0] and not TEMPLATE_TOKEN.search(fields[0]):
            match = re.fullmatch(r"\s*(\d{1,2})[/-](\d{1,2})[/-](\d{4})\s*", fields[0])
            if match is None:
                raise CorruptData(f"{self.where(lineno)}: DriverVer date {fields[0]!r} is not "
                                  "mm/dd/yyyy; fix the INF")
            try:
                when = date(int(match.group(3)), int(match.group(1)), int(match.group(2)))
            except ValueError as exc:
                raise CorruptData(f"{self.where(lineno)}: DriverVer date {fields[0]!r}: "
                                  f"{exc}; fix the INF") from exc
        if len(fields) > 1 and fields[1].strip():
            parts = fields[1].strip().split(".")
            if len(parts) > 4 or not all(p.isdigit() and int(p) < 65536 for p in parts):
                raise CorruptData(f"{self.where(lineno)}: DriverVer version {fields[1]!r} is "
                                  "not w.x.y.z with numbers below 65536; fix the INF")
            nums = [int(p) for p in parts] + [0] * (4 - len(parts))
            version = (nums[0], nums[1], nums[2], nums[3])
        return when, version

    def raw_keys(self, section: str) -> dict[int, str]:
        """line number -> key as written (before %strkey% substitution)."""
        found = self.section(section)
        return {line.lineno: line.key.strip() for line in found.lines
                if line.key is not None} if found is not None else {}

    def manufacturers(self) -> list[ManufacturerEntry]:
        result = []
        raw = self.raw_keys("Manufacturer")
        for key, fields, lineno in self.entries("Manufacturer"):
            if not fields or not fields[0]:
                raise CorruptData(f"{self.where(lineno)}: [Manufacturer] line names no Models "
                                  "section; fix the INF")
            name = key if key is not None else fields[0]
            result.append(ManufacturerEntry(
                name=name,
                models_section=fields[0].strip(),
                decorations=tuple(f.strip() for f in fields[1:] if f.strip()),
                lineno=lineno,
                raw_name=raw.get(lineno, name),
            ))
        return result

    def models(self, section: str) -> list[ModelEntry]:
        result = []
        raw = self.raw_keys(section)
        for key, fields, lineno in self.entries(section):
            if key is None or not fields or not fields[0]:
                raise CorruptData(f"{self.where(lineno)}: Models line in [{section}] needs "
                                  "`description = install-section, hw-id[, compatible-ids]`")
            ids = [f.strip() for f in fields[1:] if f.strip()]
            result.append(ModelEntry(
                description=key,
                install_section=fields[0].strip(),
                hardware_id=ids[0] if ids else "",
                compatible_ids=tuple(ids[1:]),
                lineno=lineno,
                raw_description=raw.get(lineno, key),
            ))
        return result

    def install_section(self, name: str, arch: str = "") -> InstallSection:
        """The install section `name` (or its `.NT<arch>`/`.NT` decorated form, as Windows
        picks it) with CopyFiles entries, AddReg names and the `.Services` AddService lines."""
        real = self.decorated_section(name, arch)
        copies: list[CopyFileEntry] = []
        for fields, lineno in self.values(real, "CopyFiles"):
            for item in (f.strip() for f in fields):
                if not item:
                    continue
                if item.startswith("@"):
                    file_name = item[1:].strip()
                    copies.append(CopyFileEntry(file_name, file_name, 0, "", lineno))
                else:
                    copies.extend(self.copy_files_section(item))
        add_reg = tuple(f.strip() for fields, _ in self.values(real, "AddReg") for f in fields
                        if f.strip())
        hw_add_reg = tuple(f.strip() for fields, _ in self.values(real + ".HW", "AddReg")
                           for f in fields if f.strip())
        services = []
        for fields, lineno in self.values(real + ".Services", "AddService"):
            if not fields or not fields[0].strip():
                raise CorruptData(f"{self.where(lineno)}: AddService needs a service name")
            flags = parse_int(fields[1], self.where(lineno)) if len(fields) > 1 and \
                fields[1].strip() else 0
            spec_name = fields[2].strip() if len(fields) > 2 else ""
            spec = self.service_spec(spec_name) if spec_name else None
            services.append(AddService(fields[0].strip(), flags, spec, lineno))
        return InstallSection(real, tuple(copies), add_reg, tuple(services), hw_add_reg)

    def decorated_section(self, name: str, arch: str = "") -> str:
        """`name.NT<arch>` if present, else `name.NT`, else `name` (install sections)."""
        for candidate in ((f"{name}.NT{arch}",) if arch else ()) + (f"{name}.NT", name):
            if self.has_section(candidate):
                found = self.section(candidate)
                assert found is not None
                return found.name
        return name

    def copy_files_section(self, section: str) -> list[CopyFileEntry]:
        if not self.has_section(section):
            raise CorruptData(f"{self.path}: CopyFiles names section [{section}], which the INF "
                              "does not have; fix the INF")
        result = []
        for key, fields, lineno in self.entries(section):
            if key is not None:
                raise CorruptData(f"{self.where(lineno)}: [{section}] is a CopyFiles section; "
                                  f"`{key} = ...` does not belong in it")
            destination = fields[0].strip() if fields else ""
            if not destination:
                continue
            source = fields[1].strip() if len(fields) > 1 and fields[1].strip() else destination
            flags = parse_int(fields[3], self.where(lineno)) if len(fields) > 3 and \
                fields[3].strip() else 0
            result.append(CopyFileEntry(destination, source, flags, section, lineno))
        return result

    def service_spec(self, section: str) -> ServiceSpec:
        if not self.has_section(section):
            raise CorruptData(f"{self.path}: AddService names section [{section}], which the INF "
                              "does not have; fix the INF")

        def number(key: str) -> int | None:
            found = self.values(section, key)
            if not found or not found[0][0]:
                return None
            return parse_int(found[0][0][0], self.where(found[0][1]))

        return ServiceSpec(
            section=section,
            service_type=number("ServiceType"),
            start_type=number("StartType"),
            error_control=number("ErrorControl"),
            service_binary=self.value(section, "ServiceBinary"),
            load_order_group=self.value(section, "LoadOrderGroup"),
            display_name=self.value(section, "DisplayName"),
            add_reg=tuple(f.strip() for fields, _ in self.values(section, "AddReg")
                          for f in fields if f.strip()),
        )

    def destination_dir(self, copy_section: str) -> tuple[int, str] | None:
        """(dirid, subdir) for a CopyFiles section, falling back to DefaultDestDir."""
        for key in (copy_section, "DefaultDestDir"):
            found = self.values("DestinationDirs", key) if key else []
            if found and found[0][0]:
                fields, lineno = found[0]
                dirid = parse_int(fields[0], self.where(lineno))
                return dirid, fields[1].strip() if len(fields) > 1 else ""
        return None

    def source_files(self, arch: str = "") -> dict[str, SourceFile]:
        """`[SourceDisksFiles]` merged with `[SourceDisksFiles.<arch>]` (lower-case names)."""
        result: dict[str, SourceFile] = {}
        sections = ["SourceDisksFiles"] + ([f"SourceDisksFiles.{arch}"] if arch else [])
        for section in sections:
            for key, fields, lineno in self.entries(section):
                name = (key if key is not None else (fields[0] if fields else "")).strip()
                if not name:
                    continue
                values = fields if key is not None else fields[1:]
                disk_id = values[0].strip() if values else ""
                subdir = values[1].strip() if len(values) > 1 else ""
                result[name.lower()] = SourceFile(name, disk_id, subdir, lineno)
        return result

    def source_disk_paths(self, arch: str = "") -> dict[str, tuple[str, int]]:
        """disk id -> (path inside the package, line) from `[SourceDisksNames(.<arch>)]`."""
        result: dict[str, tuple[str, int]] = {}
        sections = ["SourceDisksNames"] + ([f"SourceDisksNames.{arch}"] if arch else [])
        for section in sections:
            for key, fields, lineno in self.entries(section):
                if key is None:
                    continue
                path = fields[3].strip() if len(fields) > 3 else ""
                result[key.strip()] = (path, lineno)
        return result

    # ------------------------------------------------------------------ strings
    def _collect_strings(self, locale: str) -> dict[str, str]:
        strings: dict[str, str] = {}
        for section_name in ("strings", f"strings.{locale.lower()}"):
            section = self.sections.get(section_name)
            if section is None:
                continue
            for line in section.lines:
                if line.key is None:
                    continue
                strings[line.key.strip().lower()] = ",".join(line.fields)
        if not strings:  # a localized-only INF: take the first [Strings.xxxx]
            for name, section in self.sections.items():
                if name.startswith("strings."):
                    for line in section.lines:
                        if line.key is not None:
                            strings.setdefault(line.key.strip().lower(), ",".join(line.fields))
                    break
        # a string value is itself substituted once (`%%` -> `%` is left for expand())
        return strings


def parse_int(text: str, where: str) -> int:
    """INF numbers: decimal or 0x hex."""
    cleaned = text.strip()
    try:
        return int(cleaned, 16) if cleaned.lower().startswith("0x") else int(cleaned, 10)
    except ValueError as exc:
        raise CorruptData(f"{where}: {cleaned!r} is not a number; fix the INF") from exc


def decode_inf(data: bytes, path: Path) -> tuple[str, str]:
    """Text of an INF and the encoding used: UTF-16 with BOM, UTF-8 (BOM optional), ANSI."""
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise CorruptData(f"{path}: UTF-16 INF with invalid text at byte {exc.start}; "
                              "re-save it as UTF-16LE or UTF-8") from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if b"\x00" in data:
        raise CorruptData(f"{path}: binary data (NUL bytes) in an INF without a UTF-16 BOM; "
                          "this is not an INF file")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "cp1252"


def parse_inf_text(text: str, path: Path, *, locale: str = "0409") -> InfFile:
    """Parse INF text; `path` is only used in messages and as `InfFile.path`."""
    sections: dict[str, InfSection] = {}
    current: InfSection | None = None
    physical = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    index = 0
    while index < len(physical):
        start = index + 1
        logical, index = _logical_line(physical, index, path)
        stripped = logical.strip()
        if not stripped:
            continue
        if stripped.startswith("["):
            end = stripped.find("]")
            if end < 0:
                raise CorruptData(f"{path}:{start}: section header {stripped[:40]!r} has no "
                                  "closing ']'; fix the INF")
            if stripped[end + 1:].strip():
                raise CorruptData(f"{path}:{start}: text after the section header "
                                  f"{stripped[:end + 1]!r}; fix the INF")
            name = stripped[1:end].strip()
            if name.startswith('"') and name.endswith('"') and len(name) >= 2:
                name = name[1:-1]
            if not name:
                raise CorruptData(f"{path}:{start}: empty section name; fix the INF")
            existing = sections.get(name.lower())
            if existing is None:  # repeated sections are merged, as Windows does
                existing = InfSection(name, start)
                sections[name.lower()] = existing
            current = existing
            continue
        if current is None:
            raise CorruptData(f"{path}:{start}: text before the first [section]: "
                              f"{stripped[:40]!r}; fix the INF")
        key, fields = _split_line(stripped, path, start)
        current.lines.append(InfLine(start, key, tuple(fields)))
    return InfFile(path, sections, "", locale)


def parse_inf_bytes(data: bytes, path: Path, *, locale: str = "0409") -> InfFile:
    text, encoding = decode_inf(data, path)
    if text.startswith("\ufeff"):
        text = text[1:]
    inf = parse_inf_text(text, path, locale=locale)
    inf.encoding = encoding
    return inf


def load_inf(path: Path, *, locale: str = "0409") -> InfFile:
    """Read and parse an INF (or .inx template) from the host."""
    try:
        size = path.stat().st_size
        if size > MAX_INF_BYTES:
            raise CorruptData(f"{path}: {size} bytes is too large for an INF file")
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptData(f"{path}: cannot read the INF: {exc.strerror}") from exc
    return parse_inf_bytes(data, path, locale=locale)


def _logical_line(lines: list[str], index: int, path: Path) -> tuple[str, int]:
    """Join continuation lines (a `\\` ending the non-comment part) and drop comments."""
    parts: list[str] = []
    while True:
        if index >= len(lines):
            break
        content = _strip_comment(lines[index], path, index + 1)
        index += 1
        trimmed = content.rstrip()
        if trimmed.endswith("\\") and index < len(lines):
            parts.append(trimmed[:-1])
            continue
        parts.append(content)
        break
    return "".join(parts), index


def _strip_comment(line: str, path: Path, lineno: int) -> str:
    in_quotes = False
    for pos, char in enumerate(line):
        if char == '"':
            in_quotes = not in_quotes
        elif char == ";" and not in_quotes:
            return line[:pos]
    if in_quotes:
        raise CorruptData(f"{path}:{lineno}: unterminated quoted string; fix the INF")
    return line


def _split_line(line: str, path: Path, lineno: int) -> tuple[str | None, list[str]]:
    """`key = a, "b, c", d` -> ("key", ["a", "b, c", "d"]); quotes removed, `""` is `"`."""
    key: str | None = None
    fields: list[str] = []
    buffer: list[str] = []
    in_quotes = False
    quoted_field = False
    pos = 0
    while pos < len(line):
        char = line[pos]
        if char == '"':
            if in_quotes and pos + 1 < len(line) and line[pos + 1] == '"':
                buffer.append('"')
                pos += 2
                continue
            in_quotes = not in_quotes
            quoted_field = True
        elif char == "=" and not in_quotes and key is None and not fields:
            key = "".join(buffer).strip()
            if not key:
                raise CorruptData(f"{path}:{lineno}: line starts with '=' (no key); fix the INF")
            buffer = []
            quoted_field = False
        elif char == "," and not in_quotes:
            fields.append(_finish_field(buffer, quoted_field))
            buffer = []
            quoted_field = False
        else:
            buffer.append(char)
        pos += 1
    fields.append(_finish_field(buffer, quoted_field))
    return key, fields


def _finish_field(buffer: list[str], quoted: bool) -> str:
    """A field without its surrounding blanks (quoted text keeps what was inside quotes
    except for blanks at its ends, which Windows also trims)."""
    del quoted
    return "".join(buffer).strip()
