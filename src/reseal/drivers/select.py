"""Which driver packages, and which decorated Models section, apply to a Windows image.

Decorations follow Microsoft's INF Manufacturer section rules:
`NT[Architecture][.[OSMajor][.[OSMinor][.[ProductType][.[SuiteMask][.[BuildNumber]]]]]]`.
A decoration applies when its architecture is the image's (a decoration without one applies
to x86 only, as x64 and ARM Windows ignore undecorated Models sections), its OS version and
build are at most the image's, its product type (1 workstation, 2 domain controller, 3 server)
is the image's, and its suite mask bits are all set in the image's. Among the decorations that
apply, Windows takes the most specific: highest version, then build, then the one naming
more fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reseal.drivers.inf import InfFile, ModelEntry, parse_int
from reseal.errors import CorruptData

ARCHITECTURES = ("x86", "amd64", "arm", "arm64", "ia64")


@dataclass(frozen=True)
class WindowsVersion:
    """What selection needs to know about the image."""

    major: int
    minor: int
    build: int
    arch: str  # one of ARCHITECTURES
    product_type: int = 1  # 1 workstation, 2 domain controller, 3 server
    suite_mask: int = 0
    source: str = ""  # where the facts came from (hive and value), for reports

    @property
    def has_driver_database(self) -> bool:
        """Windows 8 (6.2) and later keep the DriverDatabase (DRIVERS hive)."""
        return (self.major, self.minor) >= (6, 2)

    @property
    def uses_critical_device_database(self) -> bool:
        """Windows 7 and older find boot storage through CriticalDeviceDatabase."""
        return not self.has_driver_database

    def label(self) -> str:
        return f"Windows NT {self.major}.{self.minor} build {self.build} {self.arch}"


@dataclass(frozen=True)
class Decoration:
    text: str
    arch: str  # "" when none given
    major: int | None
    minor: int | None
    product_type: int | None
    suite_mask: int | None
    build: int | None

    def fields_given(self) -> int:
        return sum(x is not None for x in (self.major, self.minor, self.product_type,
                                           self.suite_mask, self.build)) + bool(self.arch)


@dataclass(frozen=True)
class ModelsChoice:
    """The Models section chosen for one [Manufacturer] line and its devices."""

    manufacturer: str
    raw_manufacturer: str  # as written ("%VENDOR%")
    section: str  # real section name, e.g. "VioStor.NTamd64.6.3"
    decoration: str  # "" for an undecorated section
    models: tuple[ModelEntry, ...]


@dataclass
class Selection:
    """The outcome for one INF: what applies, or why nothing does."""

    inf: InfFile
    choices: list[ModelsChoice] = field(default_factory=list)
    skipped_reason: str = ""

    @property
    def applies(self) -> bool:
        return not self.skipped_reason and any(c.models for c in self.choices)


def parse_decoration(text: str, where: str = "") -> Decoration:
    """`NTamd64.10.0...16299` -> Decoration(arch="amd64", major=10, minor=0, build=16299)."""
    cleaned = text.strip()
    if not cleaned.lower().startswith("nt"):
        raise CorruptData(f"{where}: Models decoration {text!r} does not start with NT; "
                          "fix the INF [Manufacturer] section")
    head, *rest = cleaned[2:].split(".")
    arch = head.lower()
    if arch and arch not in ARCHITECTURES:
        raise CorruptData(f"{where}: Models decoration {text!r}: unknown architecture "
                          f"{head!r}; expected one of {', '.join(ARCHITECTURES)}")
    numbers: list[int | None] = []
    for part in rest[:5]:
        numbers.append(parse_int(part, where) if part.strip() else None)
    numbers += [None] * (5 - len(numbers))
    if len(rest) > 5:
        raise CorruptData(f"{where}: Models decoration {text!r} has more than six fields")
    return Decoration(cleaned, arch, numbers[0], numbers[1], numbers[2], numbers[3], numbers[4])


def decoration_applies(decoration: Decoration, target: WindowsVersion) -> str:
    """"" when it applies, else the reason it does not (for the skip message)."""
    wanted_arch = decoration.arch or "x86"
    if wanted_arch != target.arch:
        return f"{decoration.text} is for {wanted_arch}, the image is {target.arch}"
    version = (decoration.major or 0, decoration.minor or 0)
    if decoration.major is not None and version > (target.major, target.minor):
        return f"{decoration.text} needs Windows NT {version[0]}.{version[1]} or later"
    if decoration.build is not None and decoration.build > target.build:
        return f"{decoration.text} needs build {decoration.build} or later"
    if decoration.product_type not in (None, 0) and decoration.product_type != target.product_type:
        return f"{decoration.text} is for product type {decoration.product_type}"
    if decoration.suite_mask and decoration.suite_mask & target.suite_mask != \
            decoration.suite_mask:
        return f"{decoration.text} needs suite mask 0x{decoration.suite_mask:x}"
    return ""


def _rank(decoration: Decoration) -> tuple[int, int, int, int]:
    return (decoration.major or 0, decoration.minor or 0, decoration.build or 0,
            decoration.fields_given())


def select_models(inf: InfFile, target: WindowsVersion) -> Selection:
    """The Models sections of `inf` that Windows would use on `target`, or why none."""
    selection = Selection(inf)
    if inf.is_template:
        selection.skipped_reason = (
            f"{inf.name} is an INF template (placeholders such as $ARCH$); build the "
            "package with stampinf/the vendor build and use the resulting .inf")
        return selection
    reasons: list[str] = []
    for manufacturer in inf.manufacturers():
        where = inf.where(manufacturer.lineno)
        best: Decoration | None = None
        for text in manufacturer.decorations:
            decoration = parse_decoration(text, where)
            why_not = decoration_applies(decoration, target)
            if why_not:
                reasons.append(why_not)
                continue
            if best is None or _rank(decoration) > _rank(best):
                best = decoration
        if best is not None:
            name = f"{manufacturer.models_section}.{best.text}"
        elif target.arch == "x86" and inf.has_section(manufacturer.models_section):
            name = manufacturer.models_section  # undecorated: x86 only
        else:
            if not manufacturer.decorations:
                reasons.append(f"[{manufacturer.models_section}] is undecorated, which only "
                               "x86 Windows uses")
            continue
        section = inf.section(name)
        if section is None:
            raise CorruptData(f"{where}: [Manufacturer] names Models section [{name}], which "
                              "the INF does not have; fix the INF")
        selection.choices.append(ModelsChoice(manufacturer.name, manufacturer.raw_name,
                                              section.name,
                                              best.text if best else "",
                                              tuple(inf.models(section.name))))
    if not selection.choices:
        detail = "; ".join(dict.fromkeys(reasons)) or "no [Manufacturer] entries"
        selection.skipped_reason = f"{inf.name}: no Models section for {target.label()} ({detail})"
    elif not any(c.models for c in selection.choices):
        selection.skipped_reason = f"{inf.name}: the Models section for {target.label()} " \
                                   "lists no devices"
    return selection
