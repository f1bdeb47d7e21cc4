"""Command-line options that several subcommands share."""

from __future__ import annotations

import argparse
from pathlib import Path

from reseal.image.vdisk_header import allowed_backing_files


def add_allow_backing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-backing", action="append", default=[], metavar="PATH", type=Path,
        help="a backing file the qcow2/vmdk image may use (opened read-only); repeat for a "
             "chain. Without it, an image that names any other file is refused")


def allowed_backing(args: argparse.Namespace) -> tuple[Path, ...]:
    """The checked, resolved --allow-backing paths."""
    return allowed_backing_files(getattr(args, "allow_backing", []) or [])
