"""`reseal verify TARGET --report RUN.json [--deep]`: scan for traces of the old identity."""

from __future__ import annotations

import argparse
from pathlib import Path

from reseal.cli.options import add_allow_backing, allowed_backing
from reseal.formatting import format_table, print_json
from reseal.image.target import OpenOptions, open_target
from reseal.pipeline.report import RunReport
from reseal.pipeline.verify import LeftoverHit, scan_leftovers


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("verify", help="find traces of the old identity after a run")
    parser.add_argument("target")
    parser.add_argument("--report", type=Path, required=True, help="the run's report.json")
    parser.add_argument("--deep", action="store_true",
                        help="also scan every byte of the disk (freed clusters, NTFS history)")
    parser.add_argument("--allow-unclean-ntfs", action="store_true")
    add_allow_backing(parser)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=run)


def _status(hit: LeftoverHit) -> str:
    if hit.beyond_files:
        return "beyond files"
    if hit.explained:
        return "explained (report notes)" if hit.system != "disk" else "inside a file"
    return "UNEXPLAINED"


def run(args: argparse.Namespace) -> int:
    report = RunReport.load(args.report)
    options = OpenOptions(allow_unclean_ntfs=args.allow_unclean_ntfs,
                          allowed_backing=allowed_backing(args))
    with open_target(args.target, options) as target:
        hits = scan_leftovers(target, report, deep=args.deep)
    unexplained = [h for h in hits if not h.explained and not h.beyond_files]
    beyond = sum(h.count for h in hits if h.beyond_files)
    explained = [h for h in hits if h.explained and h.system != "disk"]
    if args.json:
        print_json({"hits": hits, "unexplained": len(unexplained), "explained": len(explained),
                    "beyond_files": beyond})
    else:
        if hits:
            print(format_table(("SYSTEM", "WHERE", "WHAT", "MATCH", "COUNT", "STATUS", "REMOVED BY"),
                               [(h.system, h.where, h.what, h.match, str(h.count), _status(h),
                                 h.remedy or "-") for h in hits]))
        print(f"{len(unexplained)} unexplained trace(s) of the old identity, "
              f"{len(explained)} explained by the report"
              + (f", {beyond} byte occurrence(s) beyond the reach of file-level tools "
                 "(freed clusters, NTFS metadata history)" if args.deep else ""))
    return 1 if unexplained else 0
