"""`reseal operations`: list the operations, like virt-sysprep --list-operations."""

from __future__ import annotations

import argparse
import dataclasses

from reseal.formatting import format_table, print_json
from reseal.operations import all_operations


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("operations", help="list the operations and their defaults")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    operations = all_operations()
    if args.json:
        print_json([
            {
                "name": op.name,
                "description": op.description,
                "os": op.os.value,
                "default": op.default_enabled,
                "options": [f.name for f in dataclasses.fields(op.options_type)]
                if op.options_type is not None else [],
            }
            for op in operations
        ])
        return 0
    rows = [(op.name, op.os.value, "yes" if op.default_enabled else "no", op.description)
            for op in operations]
    print(format_table(("OPERATION", "OS", "DEFAULT", "DESCRIPTION"), rows))
    return 0
