"""Building Windows directory targets from real hives, and reading hives with the three peers."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from regipy.registry import RegistryHive
from Registry import Registry
from tests.conftest import copy_maybe_xz

REPO = Path(__file__).resolve().parents[2]
RATHBUN = "dfir-artifact-museum/Win10-RathbunVM"
RATHBUN_SID = "S-1-5-21-2290304894-658537038-505560459"
RATHBUN_NAME = "DESKTOP-GNCCVRK"
REAL_SYSTEM = "dissect.regf/SYSTEM.xz"
REAL_SYSTEM_NAME = "DESKTOP-M3OSHQU"
CONFIG = "Windows/System32/config"


def load_builder() -> ModuleType:
    """scripts/build_fixture_hives.py as a module (it is a script, not a package)."""
    name = "reseal_build_fixture_hives"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "build_fixture_hives.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def copy_hive(src: Path, dst: Path) -> None:
    """Copy one hive or log (decompressing .xz) to `dst`."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    copy_maybe_xz(src, dst)


def copy_with_logs(src_dir: Path, base: str, dst: Path) -> None:
    """Copy hive `base` from src_dir and every log of it, named after `dst`."""
    for entry in sorted(src_dir.iterdir()):
        plain = entry.name[:-3] if entry.name.endswith(".xz") else entry.name
        if plain.lower() == base.lower():
            copy_hive(entry, dst)
        for suffix in (".LOG", ".LOG1", ".LOG2"):
            if plain.lower() == (base + suffix).lower():
                copy_hive(entry, dst.with_name(dst.name + suffix))


def build_real_tree(shared: Path, root: Path, system: str | None = None) -> Path:
    """A Windows directory target: RathbunVM SAM/SECURITY/DEFAULT/NTUSER (with logs), the
    dissect SYSTEM, and a project-built SOFTWARE for the same machine SID and name."""
    hives = shared / "hives"
    config = root / CONFIG
    config.mkdir(parents=True)
    system_src = hives / (system or REAL_SYSTEM)
    copy_with_logs(system_src.parent, system_src.name.removesuffix(".xz"), config / "SYSTEM")
    for name in ("SAM", "SECURITY", "DEFAULT"):
        copy_with_logs(hives / RATHBUN, name, config / name)
    copy_with_logs(hives / RATHBUN, "NTUSER.DAT", root / "Users/AndrewRathbun/NTUSER.DAT")
    copy_with_logs(hives / RATHBUN / "Users-Default", "NTUSER.DAT", root / "Users/Default/NTUSER.DAT")
    builder = load_builder()
    machine = builder.Machine(sid=builder.Sid.parse(RATHBUN_SID), name=RATHBUN_NAME)
    (config / "SOFTWARE").write_bytes(builder.build_software(machine).to_bytes())
    return root


def build_fixture_tree(root: Path) -> Path:
    """A Windows directory target holding the project's own fixture hives (built fresh)."""
    config = root / CONFIG
    config.mkdir(parents=True)
    builder = load_builder()
    for name, data in builder.build_all().items():
        (config / name).write_bytes(data)
    for relative, data in builder.build_user_hives(builder.Machine()).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    (root / "Windows" / "SMSCFG.INI").write_text(
        "[Configuration - Client Properties]\r\n"
        "SMS Unique Identifier=GUID:6F1B2C3D-4E5F-4A6B-8C7D-000000000001\r\n")
    return root


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file below root (hives, logs)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ three readers
def pyreg_value(hive: Path, key: str, value: str) -> bytes | str | int:
    reg = Registry.Registry(str(hive))
    found = reg.open(key).value(value or "(default)")
    return found.raw_data() if found.value_type() in (0, 3) else found.value()


def regipy_value(hive: Path, key: str, value: str) -> object:
    reg = RegistryHive(str(hive))
    return reg.get_key("\\" + key).get_value(value or "(default)")


def hivexget(hive: Path, key: str, value: str | None = None) -> bytes:
    args = ["hivexget", str(hive), key] + ([value or "@"] if value is not None else [])
    return subprocess.run(args, check=True, capture_output=True).stdout


def hivex_keys(hive: Path, key: str) -> list[str]:
    script = f"cd {key}\nls\n"
    out = subprocess.run(["hivexsh", str(hive)], input=script.encode(), check=True,
                         capture_output=True).stdout
    return out.decode().split("\n")[:-1]


def impacket_sam_dump(config: Path) -> list[str]:
    """SAM users as impacket's offline reader sees them (name:rid:lm:nt, with the Admin flag),
    decrypted with the boot key of the SYSTEM hive beside it."""
    from impacket.examples.secretsdump import LocalOperations, SAMHashes

    boot_key = LocalOperations(str(config / "SYSTEM")).getBootKey()
    lines: list[str] = []
    sam = SAMHashes(str(config / "SAM"), boot_key, isRemote=False, perSecretCallback=lines.append,
                    printUserStatus=True)
    sam.dump()
    sam.finish()
    return lines

