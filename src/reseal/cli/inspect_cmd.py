"""`reseal inspect TARGET [--json]`: partitions and the operating systems found, read-only."""

from __future__ import annotations

import argparse

from reseal.cli.options import add_allow_backing, allowed_backing
from reseal.formatting import print_json
from reseal.image.target import OpenOptions, open_target
from reseal.inspection import inspect_target, render_text


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "inspect", help="show partitions, file systems and the systems found (read-only)"
    )
    parser.add_argument("target", help="disk image (raw, qcow2, vmdk, vhdx, vhd), device or directory")
    parser.add_argument("--allow-unclean-ntfs", action="store_true",
                        help="open NTFS that is hibernated or was not shut down cleanly (read-only)")
    add_allow_backing(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options = OpenOptions(writable=False, allow_unclean_ntfs=args.allow_unclean_ntfs,
                          allowed_backing=allowed_backing(args))
    with open_target(args.target, options) as target:
        report = inspect_target(target)
    if args.json:
        print_json(report)
    else:
        print(render_text(report))
    return 0
