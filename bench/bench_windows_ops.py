"""Windows generalize and verify on the seven real hives of ../shared/fixtures/hives.

Tree: the largest real SYSTEM (regipy SYSTEM_B, 12.8 MB, dirty, recovered from its two logs),
the Windows 10 RathbunVM SAM, SECURITY, DEFAULT and both NTUSER.DAT with their logs (all but
SAM and the Default profile dirty), and a project-built SOFTWARE for the same machine.

Per round, on a fresh copy of the tree:
- `reseal generalize ROOT` with the default operations and `reseal verify ROOT` (whole command
  lines: wall and CPU seconds);
- in process: loading the seven hives (log recovery included), each operation, the commit
  (scrub + journaled writes), "SID rewrite + commit" (windows-machine-sid and the commit of all
  hives, hives already loaded), and the peak memory of a whole in-process run (tracemalloc
  peak of Python allocations, and growth of the resident set), against the hives' total size.

Usage: .venv/bin/python bench/bench_windows_ops.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.windows import helpers  # noqa: E402

from reseal.image.target import OpenOptions, open_target  # noqa: E402
from reseal.journal import Journal  # noqa: E402
from reseal.operations import get_operation  # noqa: E402
from reseal.operations.base import IdentityRequest, OperationContext, RunLog  # noqa: E402
from reseal.windows.hives import commit_hives, hive_set  # noqa: E402

OPERATIONS = ["windows-machine-sid", "windows-file-acls", "windows-clone-ids",
              "windows-computer-name", "windows-hardware-bindings", "windows-leftovers"]
LARGEST_SYSTEM = "regipy/SYSTEM_B.xz"
RESEAL = str(REPO / ".venv" / "bin" / "reseal")


def _env(state: Path) -> dict[str, str]:
    env = dict(os.environ, RESEAL_STATE_DIR=str(state))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # time reseal as installed: bytecode cached
    return env


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def hive_bytes(root: Path) -> int:
    names = {"SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT", "NTUSER.DAT"}
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name.upper() in names)


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def in_process(root: Path, work: Path, *, memory: bool) -> dict[str, float]:
    """One whole run of the Windows operations in this process, timed step by step."""
    timings: dict[str, float] = {}
    journal = Journal(work / "journal")
    if memory:
        tracemalloc.start()
    before_rss = rss()
    with open_target(root, OpenOptions(writable=True, journal=journal)) as target:
        system = target.windows[0]
        shared: dict[str, object] = {}
        log = RunLog()
        request = IdentityRequest(hostname="BENCH-01", machine_sid="random", seed=1)

        def context(name: str) -> OperationContext:
            operation = get_operation(name)
            return OperationContext(target=target, system=system, request=request,
                                    options=operation.options_type() if operation.options_type else None,
                                    log=log, operation=name, shared=shared)

        start = time.process_time()
        hives = hive_set(context(OPERATIONS[0]))
        loaded = list(hives.every_hive())
        timings["load 7 hives (log recovery included)"] = time.process_time() - start
        sid_and_commit = 0.0
        for name in OPERATIONS:
            start = time.process_time()
            get_operation(name).apply(context(name))
            timings[name] = time.process_time() - start
            if name == "windows-machine-sid":
                sid_and_commit += timings[name]
        start = time.process_time()
        commit_hives(shared)
        timings["commit (scrub + journaled writes)"] = time.process_time() - start
        timings["SID rewrite + commit of all hives"] = sid_and_commit + timings["commit (scrub + journaled writes)"]
        timings["hives loaded"] = float(len(loaded))
    if memory:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        timings["peak Python allocations MB"] = peak / 1e6
    timings["resident set growth MB"] = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                                           - before_rss) / 1e6
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
    total = 0
    with tempfile.TemporaryDirectory(prefix="reseal-bench-") as tmp:
        pristine = helpers.build_real_tree(shared, Path(tmp) / "pristine", system=LARGEST_SYSTEM)
        total = hive_bytes(pristine)
        subprocess.run([RESEAL, "operations"], stdout=subprocess.DEVNULL, env=_env(Path(tmp)))  # warm
        for round_number in range(args.rounds):
            work = Path(tmp) / f"round{round_number}"
            root = work / "root"
            shutil.copytree(pristine, root, symlinks=True)
            env = _env(work / "state")
            wall, cpu = timed([RESEAL, "generalize", str(root), "--hostname", "BENCH-01",
                               "--machine-sid", "random", "--run-dir", str(work / "run")], env)
            results.setdefault("reseal generalize (default operations), wall", []).append(wall)
            results.setdefault("reseal generalize (default operations), CPU", []).append(cpu)
            report = work / "run" / "report.json"
            wall, cpu = timed([RESEAL, "verify", str(root), "--report", str(report)], env)
            results.setdefault("reseal verify, wall", []).append(wall)
            results.setdefault("reseal verify, CPU", []).append(cpu)
            verdict = subprocess.run([RESEAL, "verify", str(root), "--report", str(report), "--json"],
                                     capture_output=True, text=True, env=env)
            results.setdefault("verify: unexplained traces", []).append(
                float(json.loads(verdict.stdout)["unexplained"]))
            root2 = work / "root2"
            shutil.copytree(pristine, root2, symlinks=True)
            for name, value in in_process(root2, work, memory=False).items():
                results.setdefault(name, []).append(value)
        memory_root = Path(tmp) / "memory" / "root"
        shutil.copytree(pristine, memory_root, symlinks=True)
        memory = in_process(memory_root, memory_root.parent, memory=True)
    print(f"hives: SYSTEM {LARGEST_SYSTEM} (+2 logs) + RathbunVM SAM/SECURITY/DEFAULT/2x NTUSER.DAT "
          f"(+logs) + fixture SOFTWARE, {total / 1e6:.1f} MB in all; {args.rounds} rounds, median "
          f"(min-max); in-process figures are CPU seconds; load average {os.getloadavg()[0]:.1f}")
    for name, values in results.items():
        if name in ("hives loaded", "verify: unexplained traces"):
            print(f"  {name:46} {int(values[0])}")
        elif "MB" in name:
            print(f"  {name:46} {statistics.median(values):7.1f} MB")
        else:
            print(f"  {name:46} {statistics.median(values):7.3f}  ({min(values):.3f}-{max(values):.3f})")
    peak = memory["peak Python allocations MB"]
    print(f"  {'peak Python allocations of a whole run':46} {peak:7.1f} MB = {peak * 1e6 / total:.2f}x "
          f"the hives' total size (resident set grew {memory['resident set growth MB']:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
