"""A driver package on the host: its INF, catalog and every file the INF copies, checked.

Everything is validated before the image is opened for writing: templates, architecture,
signature (a CatalogFile), missing files, and file names that would climb out of the package
or out of their destination directory (`..\\..\\x.sys`, `C:\\x.sys`, `\\x.sys`).

The driver store folder name is `<inf>_<arch>_<16 hex>` (Windows 7: `<inf>_<arch>_neutral_
<16 hex>`). Windows derives the hex part from the signed catalog; reseal uses the first 16 hex
digits of SHA-256 over the INF bytes, a NUL, and the catalog bytes (nothing when unsigned),
so the same package always gets the same folder and a changed package a new one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from reseal.drivers.inf import AddService, InfFile, ModelEntry, load_inf
from reseal.drivers.select import ModelsChoice, Selection, WindowsVersion, select_models
from reseal.errors import BadInput, Refused, UnsafePath

MAX_PACKAGE_FILE = 256 << 20
BOOT_CLASSES = frozenset({"scsiadapter", "hdc"})
# classes whose packages also go into SYSTEM\DriverDatabase (the boot-relevant subset)
SYSTEM_SUBSET_CLASSES = frozenset({"scsiadapter", "hdc", "system", "diskdrive", "volume",
                                   "volumesnapshot", "scmdisk", "scmvolume", "firmware"})
DIRID_DRIVERS = 12
DIRID_DRIVER_STORE = 13


@dataclass(frozen=True)
class PackageFile:
    """One file of the package: where it is on the host and where it goes."""

    store_path: str  # path inside the driver store folder ("viostor.sys", "amd64\\x.sys")
    host_path: Path
    destination: str  # name it is copied under (CopyFiles), "" for the INF and catalog
    dirid: int | None  # DestinationDirs dirid for copied files
    data: bytes


@dataclass(frozen=True)
class Device:
    """A device the package installs, with the install section Windows would use."""

    model: ModelEntry
    manufacturer: str
    raw_manufacturer: str  # "%VENDOR%" as written, for DriverPackages Descriptors
    install_section: str
    services: tuple[AddService, ...]


@dataclass
class DriverPackage:
    inf: InfFile
    inf_bytes: bytes
    catalog: PackageFile | None
    files: list[PackageFile]
    selection: Selection
    target: WindowsVersion
    boot_critical: bool
    devices: list[Device] = field(default_factory=list)

    @property
    def inf_name(self) -> str:
        return self.inf.path.name.lower()

    @property
    def class_name(self) -> str:
        return self.inf.version().class_name

    @property
    def store_name(self) -> str:
        digest = hashlib.sha256(self.inf_bytes + b"\0" +
                                (self.catalog.data if self.catalog else b"")).hexdigest()[:16]
        middle = "_neutral" if self.target.uses_critical_device_database else ""
        return f"{self.inf_name}_{self.target.arch}{middle}_{digest}"

    @property
    def in_system_subset(self) -> bool:
        return self.boot_critical or self.class_name.lower() in SYSTEM_SUBSET_CLASSES

    def services(self) -> list[AddService]:
        """Each service once, with the install line that names its service section."""
        seen: dict[str, AddService] = {}
        for device in self.devices:
            for service in device.services:
                if service.spec is not None:
                    seen.setdefault(service.name.lower(), service)
        return list(seen.values())

    def configurations(self) -> list[str]:
        return list(dict.fromkeys(d.install_section for d in self.devices))


def find_infs(paths: list[Path]) -> list[Path]:
    """INF files named or found below the directories given (sorted, deduplicated)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.suffix.lower() == ".inf"
                         and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise BadInput(f"{path}: no such driver package file or directory")
    return list(dict.fromkeys(found))


def build_package(inf_path: Path, target: WindowsVersion, *, allow_unsigned: bool = False,
                  boot_critical: bool = False) -> DriverPackage:
    """Read and check one package; raises BadInput/Refused/UnsafePath with one line."""
    if inf_path.suffix.lower() == ".inx":
        raise BadInput(f"{inf_path}: an .inx is an INF template; build the package (stampinf) "
                       "and give the resulting .inf")
    inf = load_inf(inf_path)
    selection = select_models(inf, target)
    if not selection.applies:
        raise BadInput(f"{inf_path}: not for this image: {selection.skipped_reason}")
    inf_bytes = inf_path.read_bytes()
    package_dir = inf_path.parent
    arch = target.arch
    _check_source_names(inf, arch)
    catalog = _catalog(inf, package_dir, arch, allow_unsigned)
    devices = _devices(inf, selection.choices, arch)
    files = _copied_files(inf, package_dir, arch, devices)
    version = inf.version()
    critical = boot_critical or version.class_name.lower() in BOOT_CLASSES
    return DriverPackage(inf, inf_bytes, catalog, files, selection, target, critical, devices)


def _catalog(inf: InfFile, package_dir: Path, arch: str, allow_unsigned: bool
             ) -> PackageFile | None:
    catalogs = inf.version().catalog_files
    name = catalogs.get(f"nt{arch}") or catalogs.get("nt") or catalogs.get("")
    if not name:
        if allow_unsigned:
            return None
        raise Refused(f"{inf.path}: unsigned package ([Version] has no CatalogFile); pass "
                      "--allow-unsigned to stage it anyway")
    _check_plain_name(name, inf, "CatalogFile")
    host = _find_in(package_dir, name)
    if host is None:
        raise BadInput(f"{inf.path}: catalog {name} named by CatalogFile is missing from "
                       f"{package_dir}; copy the whole package")
    return PackageFile(host.name, host, "", None, _read(host, package_dir))


def _devices(inf: InfFile, choices: list[ModelsChoice], arch: str) -> list[Device]:
    devices = []
    for choice in choices:
        for model in choice.models:
            section = inf.install_section(model.install_section, arch)
            devices.append(Device(model, choice.manufacturer, choice.raw_manufacturer,
                                  section.name, section.services))
    return devices


def _copied_files(inf: InfFile, package_dir: Path, arch: str,
                  devices: list[Device]) -> list[PackageFile]:
    sources = inf.source_files(arch)
    disks = inf.source_disk_paths(arch)
    files: dict[str, PackageFile] = {}
    for device in devices:
        section = inf.install_section(device.install_section, arch)
        for entry in section.copy_files:
            where = inf.where(entry.lineno)
            _check_plain_name(entry.destination, inf, "CopyFiles", entry.lineno)
            _check_relative(entry.source, where, "CopyFiles source")
            source = sources.get(entry.source.lower())
            subdir = ""
            if source is not None:
                disk_path = disks.get(source.disk_id, ("", 0))[0]
                subdir = "\\".join(p for p in (disk_path.strip("\\"), source.subdir.strip("\\"))
                                   if p)
            relative = f"{subdir}\\{entry.source}" if subdir else entry.source
            host = _find_in(package_dir, relative)
            if host is None:
                raise BadInput(f"{where}: {relative} (CopyFiles in [{entry.section or 'install'}]"
                               f") is missing from {package_dir}; copy the whole package")
            destination = inf.destination_dir(entry.section) if entry.section else None
            key = relative.lower()
            if key not in files:
                files[key] = PackageFile(relative, host, entry.destination,
                                         destination[0] if destination else None,
                                         _read(host, package_dir))
    return list(files.values())


def _check_source_names(inf: InfFile, arch: str) -> None:
    """Every SourceDisksFiles/SourceDisksNames path stays inside the package."""
    for source in inf.source_files(arch).values():
        where = inf.where(source.lineno)
        _check_relative(source.name, where, "SourceDisksFiles name")
        if "\\" in source.name or "/" in source.name:
            raise UnsafePath(f"{where}: SourceDisksFiles name {source.name!r} must be a plain "
                             "file name; fix the INF")
        _check_relative(source.subdir, where, "SourceDisksFiles subdirectory")
    for path, lineno in inf.source_disk_paths(arch).values():
        _check_relative(path, inf.where(lineno), "SourceDisksNames path")


def _check_relative(text: str, where: str, what: str) -> None:
    if not text:
        return
    windows = PureWindowsPath(text.replace("/", "\\"))
    if windows.drive or text.startswith(("\\\\", "/")) or (
            text.startswith("\\") and what != "SourceDisksNames path"):
        raise UnsafePath(f"{where}: {what} {text!r} is an absolute path; a package may only "
                         "name files inside itself")
    if ".." in windows.parts:
        raise UnsafePath(f"{where}: {what} {text!r} climbs out of the package with '..'; "
                         "refusing it")


def _check_plain_name(name: str, inf: InfFile, what: str, lineno: int = 0) -> None:
    where = inf.where(lineno) if lineno else str(inf.path)
    if not name or any(c in name for c in "\\/:") or name in (".", ".."):
        raise UnsafePath(f"{where}: {what} file name {name!r} must be a plain file name (no "
                         "directories, drive or '..'); fix the INF")


def _find_in(package_dir: Path, relative: str) -> Path | None:
    """Case-insensitive lookup of a Windows relative path inside the package directory;
    a symlink leading out of the package is refused."""
    current = package_dir
    for part in PureWindowsPath(relative.replace("/", "\\")).parts:
        if part in ("\\", ""):
            continue
        try:
            entries = {entry.lower(): entry for entry in os.listdir(current)}
        except OSError:
            return None
        found = entries.get(part.lower())
        if found is None:
            return None
        current = current / found
    real_root = os.path.realpath(package_dir)
    real = os.path.realpath(current)
    if os.path.commonpath([real_root, real]) != real_root:
        raise UnsafePath(f"{current}: a link that leaves the driver package {package_dir}; "
                         "refusing to follow it")
    return current if current.is_file() else None


def _read(path: Path, package_dir: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_PACKAGE_FILE:
        raise BadInput(f"{path}: {size} bytes is larger than reseal copies from a package")
    return path.read_bytes()
