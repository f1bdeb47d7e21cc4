"""`python -m reseal.samples build OUTDIR [--hives DIR]`: build the sample disk images;
`python -m reseal.samples demo OUTDIR`: build them and show what `reseal inspect` finds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reseal.samples.catalog import REPO, build_all

SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reseal.samples")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the sample disk images into OUTDIR")
    build.add_argument("outdir", type=Path)
    build.add_argument("--hives", type=Path, default=None,
                       help="directory holding SYSTEM, SOFTWARE, SAM, SECURITY (default fixtures/hives)")
    demo = sub.add_parser("demo", help="build the samples into OUTDIR and inspect each")
    demo.add_argument("outdir", type=Path)
    demo.add_argument("--hives", type=Path, default=None)
    windows = sub.add_parser("windows", help="build the Windows domain-member sample (two NTFS "
                             "volumes) into OUTDIR/windows-machine.img")
    windows.add_argument("outdir", type=Path)
    windows.add_argument("--shared", type=Path, default=SHARED_FIXTURES,
                         help="../shared/fixtures with the real hives (synthetic hives without it)")
    args = parser.parse_args(argv)
    if args.command == "windows":
        return _windows_machine(args.outdir, args.shared)
    images, notes = build_all(args.outdir, args.hives)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.command == "build":
        for image in images:
            print(f"{image.kind:12} {image.path}")
        return 0
    from reseal.image.target import open_target
    from reseal.inspection import inspect_target, render_text

    for image in images:
        print(f"$ reseal inspect {image.path}")
        with open_target(image.path) as target:
            print(render_text(inspect_target(target)))
        print()
    return 0


def _windows_machine(outdir: Path, shared: Path | None) -> int:
    import json
    import tempfile

    from reseal.samples.builders import build_windows_machine
    from reseal.samples.windows_machine import compose_windows_machine

    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reseal-hives-") as tmp:
        sample = compose_windows_machine(shared if shared and shared.is_dir() else None, Path(tmp))
        image = build_windows_machine(outdir / "windows-machine.img", sample)
    facts = {k: v for k, v in image.facts.items()
             if k not in ("secrets", "rich_acl", "foreign_acl")}
    print(json.dumps({"path": str(image.path), **facts}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
