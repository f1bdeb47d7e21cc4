"""`reseal audit lan TARGETS` and `reseal audit images IMAGE...`: find machines that share an
identity they should not. Exit codes: 0 no collision, 3 collisions found, 1 the audit failed,
2 bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

from reseal.cli.options import add_allow_backing, allowed_backing
from reseal.errors import BadInput

SEVERITIES = ("high", "medium", "low")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "audit", help="find identity collisions on a LAN or across disk images (read-only)")
    kinds = parser.add_subparsers(dest="audit_scope", metavar="SCOPE", required=True)

    lan = kinds.add_parser("lan", help="probe the given addresses and compare what they show")
    lan.add_argument("targets", nargs="+",
                     help="addresses: 10.0.0.5, 10.0.0.0/24, 10.0.0.10-40, a,b,c or @FILE")
    lan.add_argument("--exclude", action="append", default=[], metavar="TARGETS",
                     help="addresses to leave out (same forms; may be repeated)")
    lan.add_argument("--credentials", type=Path, metavar="FILE",
                     help="YAML with smb: and/or ssh: logins for the authenticated probes "
                          "(mode 0600; see README)")
    lan.add_argument("--concurrency", type=int, default=64, metavar="N",
                     help="probes at once (default 64)")
    lan.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS",
                     help="per probe: a host that does not answer costs at most this "
                          "(default 3)")
    lan.add_argument("--max-time", type=float, default=600.0, metavar="SECONDS",
                     help="hard cap on the whole audit; probes not started by then are "
                          "reported as not probed (default 600)")
    _common(lan)
    lan.set_defaults(handler=run_lan)

    images = kinds.add_parser("images", help="compare the identities disk images carry "
                                             "(read-only)")
    images.add_argument("images", nargs="+",
                        help="raw/qcow2/vmdk/vhdx/vhd images, block devices or mounted roots")
    add_allow_backing(images)
    images.add_argument("--allow-unclean-ntfs", action="store_true",
                        help="read NTFS that is hibernated or was not shut down cleanly")
    _common(images)
    images.set_defaults(handler=run_images)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the report as JSON (schema: docs/audit-report.md)")
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="also write a self-contained HTML report to FILE")
    parser.add_argument("--fail-on", choices=SEVERITIES, default="medium",
                        help="lowest severity that makes the exit code 3 (default medium)")


def _finish(report: object, args: argparse.Namespace) -> int:
    from reseal.audit.collisions import exit_code
    from reseal.audit.model import AuditReport
    from reseal.audit.render import render_text
    from reseal.formatting import print_json

    assert isinstance(report, AuditReport)
    if args.html is not None:
        from reseal.audit.html import write_html

        write_html(report, args.html)
    if args.json:
        print_json(report)
    else:
        print(render_text(report))
        if args.html is not None:
            print(f"HTML report: {args.html.resolve()}")
    code = exit_code(report, args.fail_on)
    below = [f for f in report.findings if f.scored]
    if code == 0 and below and not args.json:
        print(f"No collision at {args.fail_on} severity or above (--fail-on {args.fail_on}); "
              f"{len(below)} below it, listed above.")
    if code == 0 and any(m.status == "error" for m in report.machines):
        return 1
    return code


def _check_html_target(path: Path | None) -> None:
    if path is not None and not path.parent.resolve().is_dir():
        raise BadInput(f"--html {path}: the directory {path.parent} does not exist")


def run_lan(args: argparse.Namespace) -> int:
    from reseal.audit.credentials import Credentials, load_credentials
    from reseal.audit.lan import LanOptions, audit_lan
    from reseal.audit.progress import Progress
    from reseal.audit.targets import select

    if args.concurrency < 1 or args.concurrency > 1024:
        raise BadInput(f"--concurrency {args.concurrency}: give 1 to 1024")
    if not 0.1 <= args.timeout <= 120:
        raise BadInput(f"--timeout {args.timeout:g}: give 0.1 to 120 seconds")
    if not 1 <= args.max_time <= 86400:
        raise BadInput(f"--max-time {args.max_time:g}: give 1 to 86400 seconds")
    _check_html_target(args.html)
    addresses = select(args.targets, args.exclude)
    credentials = load_credentials(args.credentials) if args.credentials else Credentials()
    options = LanOptions(concurrency=args.concurrency, timeout=args.timeout,
                         max_time=args.max_time, credentials=credentials)
    progress = Progress(len(addresses), "probes")
    report = audit_lan(addresses, options, given=list(args.targets), progress=progress)
    return _finish(report, args)


def run_images(args: argparse.Namespace) -> int:
    from reseal.audit.images import audit_images, check_paths
    from reseal.audit.progress import Progress

    check_paths(args.images)
    _check_html_target(args.html)
    progress = Progress(len(args.images), "images")
    report = audit_images(args.images, allow_unclean_ntfs=args.allow_unclean_ntfs,
                          allowed_backing=allowed_backing(args), progress=progress)
    return _finish(report, args)
