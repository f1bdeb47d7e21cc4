"""Time every default Windows operation (the ones beyond the hives included) and the file-level
verify on the largest real hives (../shared/fixtures/hives), and the whole Windows
generalize/verify/undo cycle on a two-volume disk image of a domain member.
(`bench_windows_ops.py` times the hive engine itself.)

Tree: the largest real SYSTEM (regipy SYSTEM_B, 12.8 MB, recovered from its logs), the Windows 10
RathbunVM SAM, SECURITY, DEFAULT and both NTUSER.DAT with their logs, a project-built SOFTWARE,
RegBack copies of the five machine hives, a scheduled task and a `$Recycle.Bin\\<SID>` folder.
Prints seconds per operation (every default Windows operation, in run order), for the hive
commit, for the `reseal verify` rescan of the hives and of the file-level places.

Image (root only, `--image`): the domain-member sample of `python -m reseal.samples windows`
(real Belkasoft member hives, real Windows 10 SYSTEM, two NTFS volumes); the CLI as a user runs
it: `generalize`, `verify`, `verify --deep`, `undo`.

Usage: .venv/bin/python bench/bench_windows_machine.py [--rounds N] [--image]
"""

from __future__ import annotations

import argparse
import codecs
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.windows import helpers  # noqa: E402

from reseal.image.target import OpenOptions, open_target  # noqa: E402
from reseal.journal import Journal  # noqa: E402
from reseal.operations import all_operations  # noqa: E402
from reseal.operations.base import IdentityRequest, OperationContext, RunLog  # noqa: E402
from reseal.operations.windows_leftovers import scan_windows_leftovers  # noqa: E402
from reseal.pipeline.verify_windows import scan_windows_files  # noqa: E402

LARGEST_SYSTEM = "regipy/SYSTEM_B.xz"
COUNTS = ("changes recorded", "unexplained hits")


def _extras(root: Path) -> None:
    """What a real install holds beyond the hives: backups, a task, a Recycle Bin folder."""
    config = root / helpers.CONFIG
    (config / "RegBack").mkdir()
    for name in ("SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"):
        shutil.copyfile(config / name, config / "RegBack" / name)
    tasks = root / "Windows/System32/Tasks"
    tasks.mkdir(parents=True)
    text = (f"<Task><Principals><Principal><UserId>{helpers.RATHBUN_SID}-1001</UserId>"
            "</Principal></Principals></Task>")
    (tasks / "Sample").write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    (root / "$Recycle.Bin" / f"{helpers.RATHBUN_SID}-1001").mkdir(parents=True)


def one_round(shared: Path, work: Path) -> dict[str, float]:
    root = work / "root"
    helpers.build_real_tree(shared, root, system=LARGEST_SYSTEM)
    _extras(root)
    timings: dict[str, float] = {}
    journal = Journal(work / "journal")
    operations = [op for op in all_operations() if op.os == "windows" and op.default_enabled]
    with open_target(root, OpenOptions(writable=True, journal=journal)) as target:
        system = target.windows[0]
        shared_state: dict[str, object] = {}
        log = RunLog()
        request = IdentityRequest(hostname="BENCH-01", machine_sid="random", seed=1)
        for operation in operations:
            ctx = OperationContext(target=target, system=system, request=request,
                                   options=operation.options_type() if operation.options_type else None,
                                   log=log, operation=operation.name, shared=shared_state)
            start = time.perf_counter()
            operation.apply(ctx)
            timings[operation.name] = time.perf_counter() - start
        start = time.perf_counter()
        for resource in shared_state.values():  # as the runner does: hives, then RegBack
            commit = getattr(resource, "commit", None)
            if callable(commit):
                commit()
        timings["commit (journaled writes)"] = time.perf_counter() - start
        old = {k: v.old for k, v in log.identity.items() if v.old and v.old != v.new}
        notes = "\n".join(log.notes)
        start = time.perf_counter()
        hits = scan_windows_leftovers(system, old)
        timings["verify: hives from disk"] = time.perf_counter() - start
        start = time.perf_counter()
        files = scan_windows_files(target, system, old, notes)
        timings["verify: RegBack, tasks, names"] = time.perf_counter() - start
        timings["changes recorded"] = float(len(log.changes))
        unexplained = [h.where for h in hits if h.where not in notes]
        unexplained += [f.where for f in files if f.where not in notes
                        and (f.same_as is None or f.same_as not in notes)]
        for where in unexplained:
            print(f"  unexplained: {where}")
        timings["unexplained hits"] = float(len(unexplained))
    return timings


def image_round(shared: Path, work: Path) -> dict[str, float]:
    """The CLI on the two-volume domain-member image, as a user runs it."""
    env = {**os.environ, "RESEAL_STATE_DIR": str(work / "state")}
    reseal = [sys.executable, "-m", "reseal"]

    def timed(*args: str) -> float:
        start = time.perf_counter()
        proc = subprocess.run([*reseal, *args], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"reseal {args[0]} failed: {proc.stderr or proc.stdout}")
        return elapsed

    subprocess.run([sys.executable, "-m", "reseal.samples", "windows", str(work), "--shared",
                    str(shared)], check=True, capture_output=True)
    image = work / "windows-machine.img"
    subprocess.run(["sync", str(image)], check=True)
    run = work / "run"
    report = str(run / "report.json")
    return {
        "image: generalize (CLI)": timed("generalize", str(image), "--hostname", "BENCH-02",
                                         "--run-dir", str(run)),
        "image: verify": timed("verify", str(image), "--report", report),
        "image: verify --deep": timed("verify", str(image), "--report", report, "--deep"),
        "image: undo": timed("undo", str(image), str(run / "journal")),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", action="store_true",
                        help="also time the CLI on the two-volume domain-member image (root)")
    args = parser.parse_args()
    shared = REPO.parent / "shared" / "fixtures"
    if not shared.is_dir():
        print(f"skipped: {shared} is absent (the real hives are needed)")
        return 0
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="reseal-bench-") as tmp:
            timings = one_round(shared, Path(tmp))
            if args.image and os.geteuid() == 0:
                timings.update(image_round(shared, Path(tmp) / "image"))
            for name, value in timings.items():
                results.setdefault(name, []).append(value)
    sizes = (f"SYSTEM {LARGEST_SYSTEM} + RathbunVM SAM/SECURITY/DEFAULT/2xNTUSER + fixture "
             "SOFTWARE + RegBack, a task, a Recycle Bin folder")
    print(f"hives: {sizes}; {args.rounds} rounds, median (min-max) seconds")
    for name, values in results.items():
        if name in COUNTS:
            print(f"  {name:32} {int(values[0])}")
        else:
            print(f"  {name:32} {statistics.median(values):7.3f}  ({min(values):.3f}-{max(values):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
