"""Time each Windows operation on the largest real hives (../shared/fixtures/hives).

Tree: the largest real SYSTEM (regipy SYSTEM_B, 12.8 MB, recovered from its logs), the Windows 10
RathbunVM SAM, SECURITY, DEFAULT and both NTUSER.DAT with their logs, and a project-built SOFTWARE.
Prints seconds per operation, for the hive commit, and for a `reseal verify`-style rescan.

Usage: .venv/bin/python bench/bench_windows_ops.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.windows import helpers  # noqa: E402

from reseal.image.target import OpenOptions, open_target  # noqa: E402
from reseal.journal import Journal  # noqa: E402
from reseal.operations import get_operation  # noqa: E402
from reseal.operations.base import IdentityRequest, OperationContext, RunLog  # noqa: E402
from reseal.operations.windows_leftovers import scan_windows_leftovers  # noqa: E402
from reseal.windows.hives import commit_hives  # noqa: E402

OPERATIONS = ["windows-machine-sid", "windows-file-acls", "windows-computer-name",
              "windows-clone-ids", "windows-hardware-bindings", "windows-leftovers"]
LARGEST_SYSTEM = "regipy/SYSTEM_B.xz"


def one_round(shared: Path, work: Path) -> dict[str, float]:
    root = work / "root"
    helpers.build_real_tree(shared, root, system=LARGEST_SYSTEM)
    timings: dict[str, float] = {}
    journal = Journal(work / "journal")
    with open_target(root, OpenOptions(writable=True, journal=journal)) as target:
        system = target.windows[0]
        shared_state: dict[str, object] = {}
        log = RunLog()
        request = IdentityRequest(hostname="BENCH-01", machine_sid="random", seed=1)
        for name in OPERATIONS:
            operation = get_operation(name)
            ctx = OperationContext(target=target, system=system, request=request,
                                   options=operation.options_type() if operation.options_type else None,
                                   log=log, operation=name, shared=shared_state)
            start = time.perf_counter()
            operation.apply(ctx)
            timings[name] = time.perf_counter() - start
        start = time.perf_counter()
        commit_hives(shared_state)
        timings["commit (journaled writes)"] = time.perf_counter() - start
        old = {k: v.old for k, v in log.identity.items() if v.old and v.old != v.new}
        start = time.perf_counter()
        hits = scan_windows_leftovers(system, old)
        timings["verify rescan from disk"] = time.perf_counter() - start
        timings["changes recorded"] = float(len(log.changes))
        unexplained = [h for h in hits if h.where not in "\n".join(log.notes)]
        for hit in unexplained:
            print(f"  unexplained: {hit.what} in {hit.where}")
        timings["unexplained hits"] = float(len(unexplained))
    return timings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shared = REPO.parent / "shared" / "fixtures"
    if not shared.is_dir():
        print(f"skipped: {shared} is absent (the real hives are needed)")
        return 0
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="reseal-bench-") as tmp:
            for name, value in one_round(shared, Path(tmp)).items():
                results.setdefault(name, []).append(value)
    sizes = f"SYSTEM {LARGEST_SYSTEM} + RathbunVM SAM/SECURITY/DEFAULT/2xNTUSER + fixture SOFTWARE"
    print(f"hives: {sizes}; {args.rounds} rounds, median (min-max) seconds")
    for name, values in results.items():
        if name in ("changes recorded", "unexplained hits"):
            print(f"  {name:28} {int(values[0])}")
        else:
            print(f"  {name:28} {statistics.median(values):7.3f}  ({min(values):.3f}-{max(values):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
