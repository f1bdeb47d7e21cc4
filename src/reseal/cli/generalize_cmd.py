"""`reseal generalize TARGET`: give the target a new identity (or show the plan with --dry-run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from reseal.cli.domain_cmd import add_join_arguments, domain_from_args
from reseal.cli.options import add_allow_backing, allowed_backing
from reseal.cli.output import print_report
from reseal.errors import BadInput
from reseal.formatting import print_json
from reseal.operations.base import IdentityRequest
from reseal.pipeline.runner import RunSettings, run_generalize


def _seed(text: str) -> int:
    from reseal.pipeline.answerrules import parse_seed

    try:
        return parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("generalize", help="give a cloned image a new identity")
    parser.add_argument("target", help="disk image, block device or mounted root directory")
    parser.add_argument("--hostname", help="new computer name / hostname")
    parser.add_argument("--machine-sid", metavar="SID|random",
                        help="new Windows machine SID (S-1-5-21-a-b-c) or 'random'")
    parser.add_argument("--machine-id", help="Linux: write this machine-id instead of emptying it")
    parser.add_argument("--operations", type=_names, metavar="A,B",
                        help="run exactly these operations")
    parser.add_argument("--enable", type=_names, default=[], metavar="A,B",
                        help="also run these (off by default) operations")
    parser.add_argument("--disable", type=_names, default=[], metavar="A,B",
                        help="skip these operations")
    parser.add_argument("--answer-file", type=Path, help="YAML answer file (see docs/answer-files.md)")
    parser.add_argument("--machine", help="which machine of the answer file this target becomes")
    parser.add_argument("--seed", type=_seed, help="seed for generated identities (reproducible runs)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    parser.add_argument("--run-dir", type=Path,
                        help="where to keep the report and undo journal "
                             "(default: $RESEAL_STATE_DIR or /var/lib/reseal, runs/<id>)")
    parser.add_argument("--allow-unclean-ntfs", action="store_true",
                        help="open an NTFS volume that Windows did not shut down cleanly")
    parser.add_argument("--running-system", action="store_true",
                        help="the target is the root of the system reseal runs on (first boot "
                             "of a clone); refused without this flag")
    add_allow_backing(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_join_arguments(parser)
    parser.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace) -> RunSettings:
    if args.answer_file is not None:
        from reseal.pipeline.answerfile import settings_for_machine

        settings = settings_for_machine(args.answer_file, args.machine)
    else:
        if args.machine:
            raise BadInput("--machine needs --answer-file")
        settings = RunSettings(machine=args.hostname or "")
    request = settings.request
    settings.request = IdentityRequest(
        hostname=args.hostname or request.hostname,
        machine_sid=args.machine_sid or request.machine_sid,
        machine_id=args.machine_id or request.machine_id,
        seed=args.seed if args.seed is not None else request.seed,
        domain=domain_from_args(args, request.domain),
        firstboot=request.firstboot,
    )
    if args.operations is not None:
        settings.only = args.operations
    settings.enable = [*settings.enable, *args.enable]
    settings.disable = [*settings.disable, *args.disable]
    settings.allow_unclean_ntfs = settings.allow_unclean_ntfs or args.allow_unclean_ntfs
    settings.allow_running_system = args.running_system
    settings.allowed_backing = (*settings.allowed_backing, *allowed_backing(args))
    return settings


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    result = run_generalize(args.target, settings, dry_run=args.dry_run, run_dir=args.run_dir)
    if args.json:
        print_json(result.report)
    else:
        print_report(result.report)
        if result.report_path is not None:
            print(f"\nreport: {result.report_path}")
            print(f"undo:   reseal undo {args.target} {result.journal_dir}")
    return 0 if result.ok else 1
