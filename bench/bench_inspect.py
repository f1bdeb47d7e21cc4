"""Time to open and inspect each sample image (build once, then N runs each; median and max).

Usage: .venv/bin/python bench/bench_inspect.py [--runs N] [--hives DIR] [--keep DIR]
Needs root (loop devices, mounts). Hives default to ../shared/fixtures when present (the same
real hives the tests use), else the project's fixtures/hives.
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reseal.formatting import format_table
from reseal.image.target import open_target
from reseal.inspection import inspect_target
from reseal.samples import (
    build_linux_gpt,
    build_linux_mbr,
    build_qcow2,
    build_windows_gpt,
    build_windows_mbr,
)
from reseal.samples.catalog import project_hives

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "fixtures" / "hives"


def _real_hives(out: Path) -> dict[str, Path] | None:
    if not SHARED.is_dir():
        return None
    out.mkdir(parents=True, exist_ok=True)
    system = out / "SYSTEM"
    with lzma.open(SHARED / "regipy" / "SYSTEM.xz") as src, open(system, "wb") as dst:
        shutil.copyfileobj(src, dst)
    for name in ("SAM", "SECURITY"):
        shutil.copyfile(SHARED / "dfwinreg" / name, out / name)
    return {"SYSTEM": system, "SAM": out / "SAM", "SECURITY": out / "SECURITY"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hives", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reseal-bench-") as tmp:
        work = Path(tmp)
        hives = _real_hives(work / "hives") if args.hives is None else None
        if hives is None:
            hives, _notes = project_hives(args.hives)
        builds = []
        started = time.perf_counter()
        win = build_windows_gpt(work / "windows-gpt.img", hives)
        builds.append(win)
        builds.append(build_windows_mbr(work / "windows7-mbr.img", hives))
        linux = build_linux_gpt(work / "linux-gpt.img")
        builds += [linux, build_linux_mbr(work / "linux-mbr.img"),
                   build_qcow2(linux, work / "linux-gpt.qcow2"),
                   build_qcow2(win, work / "windows-gpt.qcow2")]
        build_time = time.perf_counter() - started
        rows = []
        for image in builds:
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                with open_target(image.path) as target:
                    report = inspect_target(target)
                times.append(time.perf_counter() - t0)
            systems = ", ".join([f"windows:{w.computer_name}" for w in report.windows]
                                + [f"linux:{lin.hostname}" for lin in report.linux])
            rows.append((image.path.name, report.kind, len(report.partitions), systems,
                         f"{statistics.median(times) * 1000:.0f}", f"{max(times) * 1000:.0f}"))
    print(f"built {len(builds)} sample images in {build_time:.1f} s; {args.runs} runs each")
    print(format_table(("IMAGE", "KIND", "PARTS", "SYSTEMS", "MEDIAN ms", "MAX ms"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
