"""`reseal undo TARGET JOURNAL`: restore every file a run changed, byte for byte."""

from __future__ import annotations

import argparse
from pathlib import Path

from reseal.cli.options import add_allow_backing, allowed_backing
from reseal.formatting import print_json
from reseal.pipeline.undo import undo_run


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("undo", help="restore the files a run changed")
    parser.add_argument("target", help="the image, device or directory the run changed")
    parser.add_argument("journal", type=Path,
                        help="the run's journal directory (see the report's 'journal')")
    parser.add_argument("--allow-unclean-ntfs", action="store_true")
    add_allow_backing(parser)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    result = undo_run(args.target, args.journal, allow_unclean_ntfs=args.allow_unclean_ntfs,
                      allowed_backing=allowed_backing(args))
    if args.json:
        print_json(result)
    else:
        print(f"restored {result.restored} files, removed {result.removed} files the run "
              f"created, removed {result.directories_removed} directories"
              + (f", set {result.uuids_restored} file-system UUIDs back"
                 if result.uuids_restored else "")
              + (f", restored {result.attributes_restored} file ACLs"
                 if result.attributes_restored else "")
              + (f", restored {result.disk_regions_restored} disk regions (LVM metadata, "
                 "partition table)" if result.disk_regions_restored else ""))
    return 0
