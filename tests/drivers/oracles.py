"""Read what reseal wrote with three independent readers: regipy, python-registry, hivexget."""

from __future__ import annotations

import subprocess
from pathlib import Path

from regipy.registry import RegistryHive
from Registry import Registry

# python-registry type names -> numbers
_PYREG_TYPES = {"RegSZ": 1, "RegExpandSZ": 2, "RegBin": 3, "RegDWord": 4, "RegMultiSZ": 7,
                "RegNone": 0, "RegQWord": 11}
_REGIPY_TYPES = {"REG_SZ": 1, "REG_EXPAND_SZ": 2, "REG_BINARY": 3, "REG_DWORD": 4,
                 "REG_MULTI_SZ": 7, "REG_NONE": 0, "REG_QWORD": 11}


def pyreg_values(hive: Path, key: str) -> dict[str, tuple[int, object]]:
    """name -> (type, data) of a key, per python-registry ("" is the default value)."""
    reg = Registry.Registry(str(hive))
    found = reg.open(key)
    out: dict[str, tuple[int, object]] = {}
    for value in found.values():
        name = "" if value.name() in ("(default)", "") else value.name()
        out[name] = (_PYREG_TYPES.get(value.value_type_str(), -1), value.value())
    return out


def pyreg_subkeys(hive: Path, key: str) -> list[str]:
    return sorted(k.name() for k in Registry.Registry(str(hive)).open(key).subkeys())


def regipy_values(hive: Path, key: str) -> dict[str, tuple[int, object]]:
    reg = RegistryHive(str(hive))
    out: dict[str, tuple[int, object]] = {}
    for value in reg.get_key("\\" + key).iter_values():
        name = "" if value.name == "(default)" else value.name
        out[name] = (_REGIPY_TYPES.get(value.value_type, -1), value.value)
    return out


def hivexget(hive: Path, key: str, value: str | None = None) -> str:
    args = ["hivexget", str(hive), key] + ([value or "@"] if value is not None else [])
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout.strip()


def pyreg_tree(hive: Path) -> dict[str, list[tuple[str, str, bytes]]]:
    """Every key path -> sorted (name, type, raw data): the logical content of a hive."""
    reg = Registry.Registry(str(hive))
    out: dict[str, list[tuple[str, str, bytes]]] = {}
    stack = [reg.root()]
    while stack:
        key = stack.pop()
        out[key.path().lower()] = sorted((v.name(), v.value_type_str(), v.raw_data())
                                         for v in key.values())
        stack.extend(key.subkeys())
    return out
