"""`reseal hive`: read, edit, export, import and check an offline registry hive file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reseal.errors import BadInput
from reseal.registry import Hive, RegType
from reseal.registry.nodes import Key, Value
from reseal.registry.types import ValueData, parse_type

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (10 ms at start-up)
if TYPE_CHECKING:
    from typing import Any

# `hive set` of one value should cost little more than reading and writing the file: modules
# only some actions need (JSON output, .reg text, the structural check) are imported there.


def terminal_safe(value: object) -> str:
    """`reseal.formatting.terminal_safe`, imported when first needed (formatting pulls in
    dataclasses, json and typing: a tenth of `hive set`'s start-up)."""
    from reseal.formatting import terminal_safe as safe

    return safe(value)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("hive", help="read, edit, export, import or check a registry hive file")
    sub = parser.add_subparsers(dest="hive_command", metavar="ACTION", required=True)

    get = sub.add_parser("get", help="show a key (subkeys and values) or one value")
    get.add_argument("hive", type=Path)
    get.add_argument("key", help="key path without the root's name, e.g. 'ControlSet001\\Control'")
    get.add_argument("value", nargs="?", help="value name ('' for the default value)")
    get.add_argument("--json", action="store_true", help="machine-readable output")
    get.set_defaults(handler=_get)

    put = sub.add_parser("set", help="set a value (creating the key if needed) and save")
    put.add_argument("hive", type=Path)
    put.add_argument("key")
    put.add_argument("value", help="value name ('' for the default value)")
    put.add_argument("--type", required=True, help="REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD, REG_QWORD, REG_BINARY, ... or a number")
    put.add_argument("--data", action="append", default=[], help="data: text, a number, or hex for binary types; repeat for REG_MULTI_SZ")
    put.set_defaults(handler=_set)

    delete = sub.add_parser("delete", help="delete a key tree, or one value, and save")
    delete.add_argument("hive", type=Path)
    delete.add_argument("key")
    delete.add_argument("value", nargs="?")
    delete.set_defaults(handler=_delete)

    exp = sub.add_parser("export", help="print a key tree as regedit version 5 text")
    exp.add_argument("hive", type=Path)
    exp.add_argument("key", nargs="?", default="")
    exp.set_defaults(handler=_export)

    imp = sub.add_parser("import", help="merge a .reg file (as written by `hive export`) and save")
    imp.add_argument("hive", type=Path)
    imp.add_argument("regfile", type=Path)
    imp.set_defaults(handler=_import)

    chk = sub.add_parser("check", help="structural check: exit 1 and the first fault found")
    chk.add_argument("hive", type=Path)
    chk.set_defaults(handler=_check)


def _open(path: Path) -> Hive:
    if not path.is_file():
        raise BadInput(f"hive file not found: {path}")
    hive = Hive.open(path)
    for warning in hive.warnings:
        print(f"reseal: warning: {terminal_safe(warning)}", file=sys.stderr)
    return hive


def _key(hive: Hive, path: str) -> Key:
    key = hive.key(path)
    if key is None:
        raise BadInput(f"key not found in {hive.name}: {path!r} (paths are given without the root key's name)")
    return key


def _value_record(value: Value) -> dict[str, Any]:
    data = value.data
    return {"name": value.name, "type": value.type_name, "data": data.hex() if isinstance(data, bytes) else data}


def _get(args: argparse.Namespace) -> int:
    hive = _open(args.hive)
    key = _key(hive, args.key)
    if args.value is not None:
        value = key.value(args.value)
        if value is None:
            raise BadInput(f"value {args.value!r} not found under {args.key!r}")
        record = _value_record(value)
        if args.json:
            from reseal.formatting import print_json

            print_json(record)
        else:
            data = record["data"]
            print("\n".join(terminal_safe(item) for item in data) if isinstance(data, list)
                  else terminal_safe(data))
        return 0
    subkeys = [k.name for k in key.subkeys()]
    values = [_value_record(v) for v in key.values()]
    written = key.last_written.isoformat()
    if args.json:
        from reseal.formatting import print_json

        print_json({"path": key.path, "class_name": key.class_name, "last_written": written, "subkeys": subkeys, "values": values})
    else:
        print(f"[{terminal_safe(key.path) or '<root>'}]  written {written}")
        for name in subkeys:
            print(f"  {terminal_safe(name)}\\")
        for record in values:
            print(f"  {terminal_safe(record['name']) or '@'} ({record['type']}) = "
                  f"{terminal_safe(record['data'])}")
    return 0


def _parse_data(value_type: int, items: list[str]) -> ValueData:
    if value_type == RegType.REG_MULTI_SZ:
        return items
    if len(items) != 1:
        raise BadInput(f"--data must be given exactly once for type {value_type} (repeat it only for REG_MULTI_SZ)")
    text = items[0]
    if value_type in (RegType.REG_SZ, RegType.REG_EXPAND_SZ, RegType.REG_LINK):
        return text
    if value_type in (RegType.REG_DWORD, RegType.REG_DWORD_BIG_ENDIAN, RegType.REG_QWORD):
        try:
            number = int(text, 0)
        except ValueError:
            raise BadInput(f"--data {text!r} is not a number (decimal or 0x hex)") from None
        limit = 2**64 if value_type == RegType.REG_QWORD else 2**32
        if not 0 <= number < limit:
            raise BadInput(f"--data {text!r} does not fit the type")
        return number
    try:
        return bytes.fromhex(text.replace(",", "").replace(" ", ""))
    except ValueError:
        raise BadInput(f"--data {text!r} is not hex bytes (e.g. 01ab or 01,ab)") from None


def _set(args: argparse.Namespace) -> int:
    value_type = parse_type(args.type)
    data = _parse_data(value_type, args.data)
    hive = _open(args.hive)
    key = hive.key(args.key) or hive.create_key(args.key)
    key.set_value(args.value, value_type, data)
    hive.save(args.hive)
    return 0


def _delete(args: argparse.Namespace) -> int:
    hive = _open(args.hive)
    if args.value is not None:
        if not _key(hive, args.key).delete_value(args.value):
            raise BadInput(f"value {args.value!r} not found under {args.key!r}")
    elif not hive.delete_key(args.key):
        raise BadInput(f"key not found in {hive.name}: {args.key!r}")
    hive.save(args.hive)
    return 0


def _export(args: argparse.Namespace) -> int:
    from reseal.registry.regfile import export

    hive = _open(args.hive)
    sys.stdout.write(export(hive, _key(hive, args.key)))
    return 0


def _import(args: argparse.Namespace) -> int:
    from reseal.registry.regfile import import_text

    try:
        raw = args.regfile.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {args.regfile}: {exc.strerror}") from None
    text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8", "replace")
    hive = _open(args.hive)
    import_text(hive, text, str(args.regfile))
    hive.save(args.hive)
    return 0


def _check(args: argparse.Namespace) -> int:
    from reseal.registry.check import check_hive

    if not args.hive.is_file():
        raise BadInput(f"hive file not found: {args.hive}")
    try:
        hive = Hive.open(args.hive)
    except BadInput as exc:
        print(f"fault: {terminal_safe(exc)}")
        return 1
    fault = check_hive(hive)
    if fault is not None:
        print(f"fault: {terminal_safe(fault)}")
        return 1
    for warning in hive.warnings:
        print(f"warning: {terminal_safe(warning)}")
    print(f"ok: {hive.name}")
    return 0
