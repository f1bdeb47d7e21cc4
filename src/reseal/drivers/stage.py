"""Stage driver packages into an offline Windows image, list them, remove them.

What `add` writes, as DISM /Image /Add-Driver leaves it:
- `System32\\DriverStore\\FileRepository\\<store name>\\`: the INF, its catalog and every file
  it copies (at the path they have in the package);
- `<SystemRoot>\\INF\\oemN.inf` (the lowest N that no INF file and no OemInfMap uses);
- Windows 8 and later: the DRIVERS hive's DriverDatabase records (created with an empty
  DRIVERS hive when the image has none), the same records in SYSTEM\\DriverDatabase for
  storage and system classes, SOFTWARE PnpLockdownFiles for files copied to System32\\drivers
  when the INF asks for PnpLockdown;
- boot-critical packages (class SCSIAdapter or HDC, or asked for): the .sys files in
  System32\\drivers, `Services\\<svc>` in every ControlSet00N with Start=0 and `Owners` =
  oemN.inf (how `remove` recognizes them), and on Windows 7 and older
  `Control\\CriticalDeviceDatabase\\<id>` (ClassGUID, Service, DriverPackageId).

Nothing that already exists and is not the package's own is replaced: an existing service
or driver file of the same name is refused, an existing CriticalDeviceDatabase entry is kept
(and reported). Adding a package that is already staged (same INF bytes in an oemN.inf and
its store folder present) changes nothing.

`remove` deletes what `add` wrote: its store folder with every file in it, the database
records, the services whose `Owners` name the package, the
CriticalDeviceDatabase entries whose `DriverPackageId` is its store folder, and a DRIVERS
hive left with no package at all (only `add` makes such a hive). The hives then hold exactly
the keys and values they held before; `reseal.drivers.exact` makes it byte for byte when
nothing else changed them since the add.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from reseal.drivers import records
from reseal.drivers.inf import AddService, InfFile, parse_inf_bytes
from reseal.drivers.package import DIRID_DRIVERS, DriverPackage
from reseal.drivers.select import WindowsVersion, select_models
from reseal.drivers.winver import ARCH_NUMBERS, control_sets, read_windows_version
from reseal.errors import BadInput, CorruptData, Refused
from reseal.image.model import WindowsSystem
from reseal.registry import Hive, RegType
from reseal.windows.hives import HiveSet, LoadedHive

OEM_INF = re.compile(r"^oem(\d{1,5})\.inf$", re.IGNORECASE)
DATABASE = "DriverDatabase"
PNP_LOCKDOWN = "Microsoft\\Windows\\CurrentVersion\\Setup\\PnpLockdownFiles"
DRIVERS_DB_VERSION = 0x0A000000
SPSVCINST_ASSOCSERVICE = 0x2

ChangeRecorder = Callable[[str, str, object], None]  # (where, action, new)


@dataclass
class StagedPackage:
    """A third-party package in the image, as `list` shows it."""

    oem_inf: str
    store_name: str
    original_inf: str
    provider: str
    class_name: str
    version: str
    boot_critical: bool = False
    already_staged: bool = False
    notes: list[str] = field(default_factory=list)


def image_version(hives: HiveSet) -> WindowsVersion:
    system = hives.require("SYSTEM").hive
    software = hives.config("SOFTWARE")
    return read_windows_version(system, software.hive if software else None)


class DriverStore:
    """Staging operations on one Windows system, through its GuestFS and HiveSet."""

    def __init__(self, system: WindowsSystem, hives: HiveSet, target: WindowsVersion,
                 record: ChangeRecorder | None = None) -> None:
        self.system = system
        self.fs = system.fs
        self.hives = hives
        self.target = target
        self.record: ChangeRecorder = record or (lambda where, action, new: None)
        self._allocated: set[int] = set()  # oem numbers handed out in this run (dry runs)

    # ------------------------------------------------------------------ paths
    def _dir(self, relative: str, *, create: bool) -> str:
        path = f"{self.system.system_root}/{relative}"
        found = self.fs.find_path(path)
        if found is not None:
            if not self.fs.is_dir(found) or self.fs.is_symlink(found):
                raise Refused(f"{found}: expected a directory in the image; refusing to write "
                              "through it")
            return found
        if create:
            self.fs.mkdir(path)
        return path

    def inf_dir(self, *, create: bool = False) -> str:
        return self._dir("INF", create=create)

    def repository(self, *, create: bool = False) -> str:
        return self._dir("System32/DriverStore/FileRepository", create=create)

    def drivers_dir(self) -> str:
        return self._dir("System32/drivers", create=True)

    # ------------------------------------------------------------------ hives
    def _database_hives(self, *, create_drivers: bool) -> list[LoadedHive]:
        """DRIVERS (created when missing and asked to) and SYSTEM if it has a DriverDatabase."""
        found: list[LoadedHive] = []
        drivers = self._drivers_hive(create=create_drivers)
        if drivers is not None:
            found.append(drivers)
        system = self.hives.require("SYSTEM")
        if system.hive.key(DATABASE) is not None:
            found.append(system)
        return found

    def _drivers_hive(self, *, create: bool) -> LoadedHive | None:
        if not self.target.has_driver_database:
            return None
        if self.system.hive_path("DRIVERS") is None:
            if not create:
                return None
            config = self.system.fs.find_path(f"{self.system.system_root}/System32/config")
            if config is None:
                raise CorruptData(f"{self.system.system_root}/System32/config: missing; is this "
                                  "a Windows installation?")
            self.hives.forget("DRIVERS")
            fresh = Hive.new()
            database = fresh.create_key(DATABASE)
            database.set_value("Version", RegType.REG_DWORD, DRIVERS_DB_VERSION)
            database.set_value("SchemaVersion", RegType.REG_DWORD, 0x10000)
            database.set_value("Architecture", RegType.REG_DWORD, ARCH_NUMBERS[self.target.arch])
            system_db = self.hives.require("SYSTEM").hive.key(DATABASE)
            system_map = system_db.value("OemInfMap") if system_db is not None else None
            database.set_value("OemInfMap", RegType.REG_BINARY,
                               system_map.raw if system_map is not None
                               else records.oem_map_bytes(set()))
            self.fs.write_bytes(f"{config}/DRIVERS", fresh.to_bytes())
            self.record(f"{config}/DRIVERS", "create", "empty DRIVERS hive")
            if self.fs.dry_run:
                return None
        loaded = self.hives.config("DRIVERS")
        if loaded is not None and loaded.hive.key(DATABASE) is None:
            loaded.hive.create_key(DATABASE)
            self.hives.mark_changed(loaded)
        return loaded

    # ------------------------------------------------------------------ queries
    def oem_infs(self) -> dict[int, str]:
        """oemN.inf files of the image: N -> guest path."""
        inf_dir = self.inf_dir()
        found = {}
        for name in self.fs.listdir(inf_dir):
            match = OEM_INF.match(name)
            if match and self.fs.is_file(f"{inf_dir}/{name}") and \
                    not self.fs.is_symlink(f"{inf_dir}/{name}"):
                found[int(match.group(1))] = f"{inf_dir}/{name}"
        return found

    def _used_oem_numbers(self) -> set[int]:
        used = set(self.oem_infs())
        for loaded in self._database_hives(create_drivers=False):
            key = loaded.hive.key(DATABASE)
            value = key.value("OemInfMap") if key is not None else None
            if value is not None:
                used |= records.oem_map_get(value.raw)
        return used

    def find_staged(self, package: DriverPackage) -> StagedPackage | None:
        for number, path in sorted(self.oem_infs().items()):
            if self.fs.read_bytes(path) != package.inf_bytes:
                continue
            store = self.fs.find_path(f"{self.repository()}/{package.store_name}")
            if store is not None:
                return self._describe(f"oem{number}.inf", package.store_name, package.inf,
                                      already=True)
        return None

    def staged(self) -> list[StagedPackage]:
        """Every oemN.inf with its store folder, provider, class and version."""
        result = []
        for number, path in sorted(self.oem_infs().items()):
            oem = f"oem{number}.inf"
            inf = parse_inf_bytes(self.fs.read_bytes(path), _guest_name(path))
            store = self._store_of(oem) or ""
            staged = self._describe(oem, store, inf)
            staged.boot_critical = bool(self._owned_services(oem))
            result.append(staged)
        return result

    def _describe(self, oem: str, store: str, inf: InfFile, *, already: bool = False
                  ) -> StagedPackage:
        version = inf.version()
        text = ".".join(str(n) for n in version.driver_version) if version.driver_version \
            else ""
        original = store.split(".inf_", 1)[0] + ".inf" if ".inf_" in store else ""
        return StagedPackage(oem, store, original, version.provider, version.class_name, text,
                             already_staged=already)

    def _store_of(self, oem: str) -> str | None:
        """The store folder of oemN.inf: from DriverInfFiles, else by matching INF bytes."""
        for loaded in self._database_hives(create_drivers=False):
            key = loaded.hive.key(f"{DATABASE}\\DriverInfFiles\\{oem}")
            active = key.value("Active") if key is not None else None
            if active is not None and str(active.data):
                return str(active.data)
        repository = self.fs.find_path(f"{self.system.system_root}/System32/DriverStore/"
                                       "FileRepository")
        if repository is None:
            return None
        oem_path = self.oem_infs().get(int(oem[3:-4]))
        wanted = self.fs.read_bytes(oem_path) if oem_path else b""
        for folder in self.fs.listdir(repository):
            if ".inf_" not in folder.lower():
                continue
            candidate = self.fs.find_child(f"{repository}/{folder}",
                                           folder.split(".inf_", 1)[0] + ".inf")
            if candidate and self.fs.read_bytes(candidate) == wanted:
                return folder
        return None

    def _owned_services(self, oem: str) -> list[tuple[LoadedHive, str]]:
        """Services\\<svc> keys (in any control set) whose Owners names `oem`."""
        system = self.hives.require("SYSTEM")
        owned = []
        for control_set in control_sets(system.hive):
            services = system.hive.key(f"{control_set}\\Services")
            if services is None:
                continue
            for service in services.subkeys():
                owners = service.value("Owners")
                if owners is not None and isinstance(owners.data, list) and \
                        oem.lower() in (o.lower() for o in owners.data):
                    owned.append((system, f"{control_set}\\Services\\{service.name}"))
        return owned

    # ------------------------------------------------------------------ add
    def check(self, package: DriverPackage) -> None:
        """Refuse, before anything is written, what `add` would have to overwrite."""
        if package.target != self.target:
            raise BadInput(f"{package.inf.path}: built for another image version")
        if not package.boot_critical:
            return
        system = self.hives.require("SYSTEM").hive
        for service in package.services():
            for control_set in control_sets(system):
                path = f"{control_set}\\Services\\{service.name}"
                if system.key(path) is not None:
                    raise Refused(f"{package.inf.path}: service {service.name} already exists "
                                  f"in the image (SYSTEM\\{path}); reseal will not replace a "
                                  "driver it did not stage (remove that driver first)")
        drivers = self.fs.find_path(f"{self.system.system_root}/System32/drivers")
        for item in package.files:
            if item.dirid == DIRID_DRIVERS and drivers is not None and \
                    self.fs.find_child(drivers, item.destination) is not None:
                raise Refused(f"{package.inf.path}: System32\\drivers\\{item.destination} "
                              "already exists in the image; reseal will not replace it")

    def add(self, package: DriverPackage) -> StagedPackage:
        existing = self.find_staged(package)
        if existing is not None:
            existing.notes.append(f"{package.inf_name} is already staged as {existing.oem_inf};"
                                  " nothing changed")
            return existing
        self.check(package)
        used = self._used_oem_numbers() | self._allocated
        number = next(n for n in range(len(used) + 1) if n not in used)
        self._allocated.add(number)
        oem = f"oem{number}.inf"
        staged = self._describe(oem, package.store_name, package.inf)
        staged.boot_critical = package.boot_critical
        self._write_files(package, oem)
        if self.target.has_driver_database:
            for loaded in self._database_hives(create_drivers=True):
                if loaded.label == "SYSTEM" and not package.in_system_subset:
                    self._set_oem_bit(loaded, number, True)
                    continue
                self._write_database(loaded, package, oem, number)
        software = self.hives.config("SOFTWARE")
        if software is not None and package.inf.version().pnp_lockdown:
            self._write_lockdown(software, package)
        if package.boot_critical:
            staged.notes.extend(self._write_boot_critical(package, oem))
        return staged

    def _write_files(self, package: DriverPackage, oem: str) -> None:
        folder = f"{self.repository(create=True)}/{package.store_name}"
        self.fs.mkdir(folder)
        self._write(f"{folder}/{package.inf.path.name}", package.inf_bytes)
        if package.catalog is not None:
            self._write(f"{folder}/{package.catalog.store_path}", package.catalog.data)
        for item in package.files:
            parts = [p for p in item.store_path.split("\\") if p]
            for depth in range(1, len(parts)):
                self.fs.mkdir(f"{folder}/{'/'.join(parts[:depth])}")
            self._write(f"{folder}/{'/'.join(parts)}", item.data)
        self._write(f"{self.inf_dir(create=True)}/{oem}", package.inf_bytes)

    def _write(self, path: str, data: bytes) -> None:
        self.fs.write_bytes(path, data)
        self.record(path, "create", f"{len(data)} bytes")

    def _set_oem_bit(self, loaded: LoadedHive, number: int, used: bool) -> None:
        database = loaded.hive.key(DATABASE)
        if database is None:
            return
        value = database.value("OemInfMap")
        bits = records.oem_map_get(value.raw) if value is not None else set()
        bits = bits | {number} if used else bits - {number}
        new = records.oem_map_bytes(bits)
        old_raw = value.raw if value is not None else b""
        if len(old_raw) > len(new):
            new = new + bytes(len(old_raw) - len(new))
        if new != old_raw:
            database.set_value("OemInfMap", RegType.REG_BINARY, new)
            self.hives.mark_changed(loaded)
            self.record(loaded.where(DATABASE, "OemInfMap"), "set", new.hex())

    def _write_database(self, loaded: LoadedHive, package: DriverPackage, oem: str,
                        number: int) -> None:
        hive = loaded.hive
        version = package.inf.version()
        store = package.store_name
        base = f"{DATABASE}\\DriverInfFiles\\{oem}"
        inf_files = hive.create_key(base)
        inf_files.set_value("", RegType.REG_MULTI_SZ, [store])
        inf_files.set_value("Active", RegType.REG_SZ, store)
        inf_files.set_value("Configurations", RegType.REG_MULTI_SZ, package.configurations())
        pkg_path = f"{DATABASE}\\DriverPackages\\{store}"
        pkg = hive.create_key(pkg_path)
        pkg.set_value("Version", RegType.REG_BINARY, records.version_blob(
            version.class_guid, version.driver_date, version.driver_version))
        pkg.set_value("Provider", RegType.REG_SZ, version.provider)
        pkg.set_value("InfName", RegType.REG_SZ, package.inf.path.name)
        if package.catalog is not None:
            pkg.set_value("Catalog", RegType.REG_SZ, package.catalog.store_path)
        pkg.set_value("ImportDate", RegType.REG_BINARY, records.filetime(datetime.now(UTC)))
        pkg.set_value("StatusFlags", RegType.REG_DWORD, records.OEM_STATUS_FLAGS)
        pkg.set_value("", RegType.REG_SZ, oem)
        associated = {d.install_section: _associated_service(d.services)
                      for d in package.devices}
        for section, service in associated.items():
            config = hive.create_key(f"{pkg_path}\\Configurations\\{section}")
            if service:
                config.set_value("Service", RegType.REG_SZ, service)
            if self.target.major >= 10:  # Windows 8.1 records no ConfigScope
                config.set_value("ConfigScope", RegType.REG_DWORD, 7)
            config.set_value("ConfigFlags", RegType.REG_DWORD, 0)
        strings: dict[str, str] = {}
        for device in package.devices:
            if not device.model.hardware_id:
                continue
            descriptor = hive.create_key(f"{pkg_path}\\Descriptors\\"
                                         f"{records.device_id_path(device.model.hardware_id)}")
            descriptor.set_value("Configuration", RegType.REG_SZ, device.install_section)
            for name, raw, text in (
                    ("Manufacturer", device.raw_manufacturer, device.manufacturer),
                    ("Description", device.model.raw_description, device.model.description)):
                token = records.string_token(raw)
                if token:
                    strings[token] = text
                descriptor.set_value(name, RegType.REG_SZ, f"%{token}%" if token else text)
        if strings:
            strings_key = hive.create_key(f"{pkg_path}\\Strings")
            for token, text in strings.items():
                strings_key.set_value(token, RegType.REG_SZ, text)
        for rank_id, rank in _device_ids(package):
            key = hive.create_key(f"{DATABASE}\\DeviceIds\\{records.device_id_path(rank_id)}")
            key.set_value(oem, RegType.REG_BINARY, bytes([rank, 0xFF, 0, 0]))
        if version.class_guid:
            key = hive.create_key(f"{DATABASE}\\DeviceIds\\{version.class_guid.lower()}")
            key.set_value(oem, RegType.REG_NONE, b"")
        self.hives.mark_changed(loaded)
        self.record(loaded.where(pkg_path), "create", oem)
        self._set_oem_bit(loaded, number, True)

    def _write_lockdown(self, software: LoadedHive, package: DriverPackage) -> None:
        for item in package.files:
            if item.dirid != DIRID_DRIVERS:
                continue
            path = f"{PNP_LOCKDOWN}\\%SystemRoot%/System32/drivers/{item.destination.lower()}"
            if software.hive.key(path) is not None:
                continue
            key = software.hive.create_key(path)
            key.set_value("Class", RegType.REG_DWORD, 1)
            key.set_value("Source", RegType.REG_SZ,
                          f"%SystemRoot%\\System32\\DriverStore\\FileRepository\\"
                          f"{package.store_name}\\{package.inf.path.name}")
            self.hives.mark_changed(software)
            self.record(software.where(path), "create", package.store_name)

    def _write_boot_critical(self, package: DriverPackage, oem: str) -> list[str]:
        notes: list[str] = []
        drivers = self.drivers_dir()
        copied: dict[str, str] = {}
        for item in package.files:
            if item.dirid == DIRID_DRIVERS or (item.destination.lower().endswith(".sys")
                                              and item.dirid is not None):
                self._write(f"{drivers}/{item.destination}", item.data)
                copied[item.destination.lower()] = item.destination
        system = self.hives.require("SYSTEM")
        windows7 = self.target.uses_critical_device_database
        class_guid = package.inf.version().class_guid
        for service in package.services():
            spec = service.spec
            assert spec is not None
            file_name = spec.service_binary.replace("/", "\\").rsplit("\\", 1)[-1]
            if file_name.lower() not in copied:
                notes.append(f"{service.name}: {spec.service_binary} is not among the files the "
                             "package copies to System32\\drivers")
            image = records.image_path(spec.service_binary, copied.get(file_name.lower(),
                                                                       file_name),
                                       windows7=windows7, store_name=package.store_name)
            for control_set in control_sets(system.hive):
                path = f"{control_set}\\Services\\{service.name}"
                key = system.hive.create_key(path)
                for name, kind, data in records.service_values(spec, image=image, boot=True):
                    key.set_value(name, kind, data)
                key.set_value("Owners", RegType.REG_MULTI_SZ, [oem])
                records.apply_service_add_reg(package.inf, spec.add_reg, system.hive, path)
                self.record(system.where(path), "create", f"Start=0 {image}")
        if windows7:
            notes.extend(self._write_critical_devices(system, package, class_guid))
        self.hives.mark_changed(system)
        return notes

    def _write_critical_devices(self, system: LoadedHive, package: DriverPackage,
                                class_guid: str) -> list[str]:
        notes = []
        for device in package.devices:
            service = _associated_service(device.services)
            if not service:
                continue
            for device_id in (device.model.hardware_id, *device.model.compatible_ids):
                if not device_id:
                    continue
                name = records.critical_device_key(device_id)
                for control_set in control_sets(system.hive):
                    path = f"{control_set}\\Control\\CriticalDeviceDatabase\\{name}"
                    if system.hive.key(path) is not None:
                        owner = system.hive.key(path)
                        assert owner is not None
                        value = owner.value("DriverPackageId")
                        if value is None or str(value.data) != package.store_name:
                            notes.append(f"CriticalDeviceDatabase\\{name} already exists in "
                                         f"{control_set}; kept as it is")
                        continue
                    key = system.hive.create_key(path)
                    key.set_value("ClassGUID", RegType.REG_SZ, class_guid)
                    key.set_value("Service", RegType.REG_SZ, service)
                    key.set_value("DriverPackageId", RegType.REG_SZ, package.store_name)
                    self.record(system.where(path), "create", service)
        return notes

    # ------------------------------------------------------------------ remove
    def remove(self, oem: str) -> StagedPackage:
        match = OEM_INF.match(oem)
        if match is None:
            raise BadInput(f"{oem}: give the published name of a staged package (oemN.inf, "
                           "see `reseal drivers list`)")
        number = int(match.group(1))
        path = self.oem_infs().get(number)
        if path is None:
            raise BadInput(f"{oem}: no such package in the image; `reseal drivers list` shows "
                           "the staged ones")
        inf_bytes = self.fs.read_bytes(path)
        inf = parse_inf_bytes(inf_bytes, _guest_name(path))
        store = self._store_of(f"oem{number}.inf") or ""
        staged = self._describe(f"oem{number}.inf", store, inf)
        oem = f"oem{number}.inf"
        owned = self._owned_services(oem)
        staged.boot_critical = bool(owned)
        # boot files first (while the store copy is there to compare against)
        if owned:
            self._remove_boot_files(inf, store)
        for loaded, key_path in owned:
            loaded.hive.delete_key(key_path)
            self.hives.mark_changed(loaded)
            self.record(loaded.where(key_path), "remove", None)
        if store:
            self._remove_critical_devices(store)
        for loaded in self._database_hives(create_drivers=False):
            self._remove_database(loaded, oem, number, store, inf)
            if loaded.label == "DRIVERS":
                self._drop_if_reseal_made(loaded)
        software = self.hives.config("SOFTWARE")
        if software is not None and store:
            self._remove_lockdown(software, store)
        if store:
            folder = self.fs.find_path(f"{self.repository()}/{store}")
            if folder is not None:
                self.fs.remove_tree(folder)
                self.record(folder, "remove", None)
        self.fs.remove(path)
        self.record(path, "remove", None)
        return staged

    def _remove_boot_files(self, inf: InfFile, store: str) -> None:
        drivers = self.fs.find_path(f"{self.system.system_root}/System32/drivers")
        folder = self.fs.find_path(f"{self.repository()}/{store}") if store else None
        if drivers is None or folder is None:
            return
        selection = select_models(inf, self.target)
        for choice in selection.choices:
            for model in choice.models:
                section = inf.install_section(model.install_section, self.target.arch)
                for entry in section.copy_files:
                    installed = self.fs.find_child(drivers, entry.destination)
                    stored = self._find_in_store(folder, entry.source)
                    if installed and stored and \
                            self.fs.read_bytes(installed) == self.fs.read_bytes(stored):
                        self.fs.remove(installed)
                        self.record(installed, "remove", None)

    def _find_in_store(self, folder: str, name: str) -> str | None:
        for dirpath, _dirs, files in self.fs.walk(folder):
            for file_name in files:
                if file_name.lower() == name.lower():
                    return f"{dirpath}/{file_name}"
        return None

    def _remove_critical_devices(self, store: str) -> None:
        system = self.hives.require("SYSTEM")
        for control_set in control_sets(system.hive):
            base = f"{control_set}\\Control\\CriticalDeviceDatabase"
            database = system.hive.key(base)
            if database is None:
                continue
            for device in database.subkeys():
                value = device.value("DriverPackageId")
                if value is not None and str(value.data).lower() == store.lower():
                    system.hive.delete_key(f"{base}\\{device.name}")
                    self.hives.mark_changed(system)
                    self.record(system.where(f"{base}\\{device.name}"), "remove", None)

    def _remove_database(self, loaded: LoadedHive, oem: str, number: int, store: str,
                         inf: InfFile) -> None:
        hive = loaded.hive
        changed = hive.delete_key(f"{DATABASE}\\DriverInfFiles\\{oem}")
        if store:
            changed |= hive.delete_key(f"{DATABASE}\\DriverPackages\\{store}")
        for device_id in self._device_id_keys(inf):
            changed |= _remove_value_and_prune(hive, f"{DATABASE}\\DeviceIds", device_id, oem)
        for part in ("DeviceIds", "DriverInfFiles", "DriverPackages"):
            # never empty in a hive Windows wrote: empty means `add` created it
            key = hive.key(f"{DATABASE}\\{part}")
            if key is not None and not key.subkeys() and not key.values():
                changed |= hive.delete_key(f"{DATABASE}\\{part}")
        if changed:
            self.hives.mark_changed(loaded)
            self.record(loaded.where(f"{DATABASE}\\DriverInfFiles\\{oem}"), "remove", None)
        self._set_oem_bit(loaded, number, False)

    def _device_id_keys(self, inf: InfFile) -> list[str]:
        """DeviceIds key paths `add` wrote for this INF: its IDs and its class GUID."""
        found: dict[str, str] = {}
        for choice in select_models(inf, self.target).choices:
            for model in choice.models:
                for device_id in (model.hardware_id, *model.compatible_ids):
                    if device_id:
                        path = records.device_id_path(device_id)
                        found.setdefault(path.lower(), path)
        class_guid = inf.version().class_guid
        if class_guid:
            found.setdefault(class_guid.lower(), class_guid.lower())
        return list(found.values())

    def _drop_if_reseal_made(self, loaded: LoadedHive) -> None:
        """A DRIVERS hive with no package left is the empty one `add` created (Windows' own
        always lists its inbox packages): remove the file instead of keeping an empty hive."""
        for part in ("DriverPackages", "DriverInfFiles"):
            key = loaded.hive.key(f"{DATABASE}\\{part}")
            if key is not None and key.subkeys():
                return
        self.fs.remove(loaded.path)
        loaded.changed = False
        self.record(loaded.path, "remove", None)

    def _remove_lockdown(self, software: LoadedHive, store: str) -> None:
        lockdown = software.hive.key(PNP_LOCKDOWN)
        if lockdown is None:
            return
        for entry in lockdown.subkeys():
            source = entry.value("Source")
            if source is not None and f"\\{store.lower()}\\" in str(source.data).lower():
                software.hive.delete_key(f"{PNP_LOCKDOWN}\\{entry.name}")
                self.hives.mark_changed(software)
                self.record(software.where(f"{PNP_LOCKDOWN}\\{entry.name}"), "remove", None)


def _associated_service(services: tuple[AddService, ...]) -> str:
    """The function driver of a device: the AddService line flagged SPSVCINST_ASSOCSERVICE."""
    for service in services:
        if service.flags & SPSVCINST_ASSOCSERVICE:
            return service.name
    return ""


def _device_ids(package: DriverPackage) -> list[tuple[str, int]]:
    """(id, rank byte) for DeviceIds: 1 for hardware IDs, 2.. for compatible IDs."""
    seen: dict[str, tuple[str, int]] = {}
    for device in package.devices:
        ids = [device.model.hardware_id, *device.model.compatible_ids]
        for index, device_id in enumerate(ids):
            if device_id and device_id.lower() not in seen:
                seen[device_id.lower()] = (device_id, index + 1)
    return list(seen.values())


def _remove_value_and_prune(hive: Hive, base: str, relative: str, name: str) -> bool:
    """Delete value `name` of `base\\relative`, then the keys of `relative` left with no
    values and no subkeys (deepest first), never `base` itself."""
    path = f"{base}\\{relative}"
    key = hive.key(path)
    if key is None or key.value(name) is None:
        return False
    key.delete_value(name)
    parts = relative.split("\\")
    while parts:
        here = base + "\\" + "\\".join(parts)
        current = hive.key(here)
        if current is None or current.values() or current.subkeys():
            break
        hive.delete_key(here)
        parts.pop()
    return True


def _guest_name(path: str) -> Path:
    """An INF read from the image is named by its guest path in messages."""
    return Path(path)
