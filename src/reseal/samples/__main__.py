"""`python -m reseal.samples build OUTDIR [--hives DIR]`: build the sample disk images;
`python -m reseal.samples demo OUTDIR`: build them and show what `reseal inspect` finds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reseal.samples.catalog import build_all


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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
