"""`reseal drivers add|list|remove`: the offline driver store of a Windows image.

`add` runs the windows-drivers operation through the normal pipeline (report, undo journal,
dry run); `remove` keeps an undo journal the same way; `list` only reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reseal.drivers.exact import find_exact_restore, write_add_record
from reseal.drivers.stage import OEM_INF, DriverStore, StagedPackage, image_version
from reseal.errors import BadInput, ResealError
from reseal.fileio import private_dirs
from reseal.formatting import format_table, print_json, terminal_safe
from reseal.image.target import OpenOptions, Target, open_target
from reseal.journal import Journal
from reseal.operations.windows_drivers import DriversOptions
from reseal.pipeline.runner import RunSettings, new_run_dir, run_generalize, state_dir
from reseal.windows.hives import CONFIG_HIVES, HiveSet


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("drivers", help="add, list or remove driver packages offline")
    verbs = parser.add_subparsers(dest="drivers_verb", metavar="VERB")

    add = verbs.add_parser("add", help="stage driver packages (INF files or folders)")
    add.add_argument("target", help="disk image, block device or mounted root directory")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                     help="an .inf file or a folder searched for .inf files")
    add.add_argument("--allow-unsigned", action="store_true",
                     help="stage packages whose INF names no CatalogFile")
    add.add_argument("--boot-critical", action="store_true",
                     help="register every package as boot-critical storage (Start=0)")
    add.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    add.add_argument("--run-dir", type=Path, help="where to keep the report and undo journal")
    add.add_argument("--allow-unclean-ntfs", action="store_true")
    add.add_argument("--json", action="store_true", help="print the report as JSON")
    add.set_defaults(handler=run_add)

    listing = verbs.add_parser("list", help="show the staged third-party packages")
    listing.add_argument("target")
    listing.add_argument("--allow-unclean-ntfs", action="store_true")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run_list)

    remove = verbs.add_parser("remove", help="remove a staged package (oemN.inf)")
    remove.add_argument("target")
    remove.add_argument("oem_inf", metavar="oemN.inf")
    remove.add_argument("--run-dir", type=Path, help="where to keep the undo journal")
    remove.add_argument("--allow-unclean-ntfs", action="store_true")
    remove.add_argument("--json", action="store_true")
    remove.set_defaults(handler=run_remove)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_add(args: argparse.Namespace) -> int:
    for path in args.paths:
        if not path.exists():
            raise BadInput(f"{path}: no such driver package file or directory")
    options = DriversOptions(paths=[str(p) for p in args.paths],
                             allow_unsigned=args.allow_unsigned,
                             boot_critical=args.boot_critical)
    settings = RunSettings(machine="drivers", only=["windows-drivers"],
                           options={"windows-drivers": options},
                           allow_unclean_ntfs=args.allow_unclean_ntfs)
    result = run_generalize(args.target, settings, dry_run=args.dry_run, run_dir=args.run_dir)
    report = result.report
    published = [c.where.rsplit("/", 1)[-1].lower() for c in report.changes
                 if c.action == "create" and "/inf/" in c.where.lower()
                 and OEM_INF.match(c.where.rsplit("/", 1)[-1])]
    if result.ok and result.journal_dir is not None and published:
        with open_target(args.target, OpenOptions(
                allow_unclean_ntfs=args.allow_unclean_ntfs)) as target:
            write_add_record(result.journal_dir.parent, result.journal_dir, target, published)
    if args.json:
        print_json(report, sys.stdout)
        return 0 if result.ok else 1
    rows = [(c.action, c.where, c.new or "") for c in report.changes]
    if rows:
        print(format_table(("ACTION", "WHERE", "DETAIL"), rows))
    for note in report.notes:
        print(f"note: {terminal_safe(note)}")
    for warning in report.warnings:
        print(f"warning: {terminal_safe(warning)}")
    if result.journal_dir is not None:
        print(f"undo:   reseal undo {args.target} {result.journal_dir}")
    return 0 if result.ok else 1


def _windows(target: Target) -> HiveSet:
    systems = target.windows
    if not systems:
        raise ResealError(f"{target.source}: no Windows installation found; check "
                          "`reseal inspect`")
    return HiveSet(systems[0])


def run_list(args: argparse.Namespace) -> int:
    options = OpenOptions(writable=False, allow_unclean_ntfs=args.allow_unclean_ntfs)
    with open_target(args.target, options) as target:
        hives = _windows(target)
        version = image_version(hives)
        staged = DriverStore(hives.system, hives, version).staged()
    if args.json:
        print_json({"windows": version, "packages": staged}, sys.stdout)
        return 0
    print(terminal_safe(f"{version.label()} ({version.source})"))
    print(format_table(("PUBLISHED", "ORIGINAL", "PROVIDER", "CLASS", "VERSION", "BOOT",
                        "STORE FOLDER"),
                       [_row(s) for s in staged]) if staged else "no third-party packages")
    return 0


def _row(staged: StagedPackage) -> tuple[str, ...]:
    return (staged.oem_inf, staged.original_inf, staged.provider, staged.class_name,
            staged.version, "yes" if staged.boot_critical else "no", staged.store_name)


def run_remove(args: argparse.Namespace) -> int:
    run_dir = args.run_dir or new_run_dir("drivers-remove")
    private_dirs(run_dir)
    journal_dir = run_dir / "journal"
    options = OpenOptions(writable=True, allow_unclean_ntfs=args.allow_unclean_ntfs,
                          journal=Journal(journal_dir))
    changes: list[tuple[str, str]] = []
    with open_target(args.target, options) as target:
        hives = _windows(target)
        exact = find_exact_restore(state_dir() / "runs", target, args.oem_inf)
        store = DriverStore(hives.system, hives, image_version(hives),
                            record=lambda where, action, new: changes.append((action, where)))
        removed = store.remove(args.oem_inf)
        if exact is not None:
            exact_paths = {(item.volume, item.path) for item in exact}
            for name in CONFIG_HIVES:
                loaded = hives.config(name) if hives.system.hive_path(name) else None
                if loaded is not None and (hives.system.volume.key, loaded.path) in exact_paths:
                    loaded.changed = False  # replaced below by the bytes from before the add
        hives.commit()
        if exact is not None:
            for item, data in sorted(exact.items(), key=lambda pair: pair[0].path):
                fs = target.volume(item.volume).fs
                assert fs is not None
                if data is None:
                    fs.remove(item.path)
                else:
                    fs.write_bytes(item.path, data)
            changes.append(("restore", "hives as they were before the add, byte for byte"))
    if args.json:
        print_json({"removed": removed, "changes": [list(c) for c in changes],
                    "journal": str(journal_dir)}, sys.stdout)
        return 0
    print(format_table(("ACTION", "WHERE"), changes))
    print(f"removed {removed.oem_inf} ({removed.store_name})")
    print(f"undo:   reseal undo {args.target} {journal_dir}")
    return 0
