"""Registry speed on a real 10-15 MB hive, each figure against a peer in the same run.

- `reseal hive set / delete / import` of a small change vs `hivexsh` doing the same and
  committing (both as whole command lines, on fresh copies of one clean hive);
- a full walk (every key, value name, type and data) vs `hivexml` and python-registry;
- in-process: open + walk through the Key/Value objects and through `Hive.tree()`.

Each figure is the median of --runs runs (default 3), as wall seconds and as CPU seconds of
the process (user + system), since other work on a shared machine inflates wall time.

Run: .venv/bin/python bench/bench_hive.py [--runs 3] [--hive ../shared/fixtures/hives/regipy/SYSTEM_B.xz]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reseal.formatting import format_table
from reseal.registry import Hive

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "fixtures" / "hives" / "regipy"
DEFAULT = SHARED / "SYSTEM_B.xz"
RESEAL = [str(REPO / ".venv" / "bin" / "reseal")]
NAME_KEY = "ControlSet001\\Control\\ComputerName\\ComputerName"
DELETE_KEY = "ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces"
IMPORT_KEY = "Software\\ResealBench"
REG_FILE = (
    "Windows Registry Editor Version 5.00\r\n\r\n"
    f"[\\{IMPORT_KEY}]\r\n"
    '"Name"="BENCH-01"\r\n'
    '"Count"=dword:0000002a\r\n'
    '"Blob"=hex:01,02,03,04,05,06,07,08\r\n\r\n'
)
HIVEXSH_IMPORT = (
    "cd Software\nadd ResealBench\ncd ResealBench\nsetval 3\nName\nstring:BENCH-01\n"
    "Count\ndword:0x2a\nBlob\nhex:3:0102030405060708\ncommit\n"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # time reseal as installed: bytecode cached
    return env


def timed(command: list[str], stdin: bytes | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of one command line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, env=_env())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def in_process(fn: Callable[[], object]) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def walk_objects(path: Path) -> None:
    hive = Hive.open(path)
    for key in hive.walk():
        for value in key.values():
            _ = value.raw


def walk_tree(path: Path) -> None:
    for _path, _values in Hive.open(path).tree():
        pass


def walk_python_registry(path: Path) -> None:
    from Registry import Registry  # type: ignore[import-untyped]

    stack = [Registry.Registry(str(path)).root()]
    while stack:
        key = stack.pop()
        for value in key.values():
            value.raw_data()
        stack.extend(key.subkeys())


def clean_copy(source: Path, work: Path) -> Path:
    """The hive recovered from its logs (when they are beside it) and written clean, so that
    every tool reads the same bytes (hivex ignores logs)."""
    tmp = work / "source"
    tmp.mkdir()
    sys.path.insert(0, str(REPO))
    from tests.conftest import copy_shared_hive

    copied = copy_shared_hive(source, tmp)
    clean = work / "HIVE"
    clean.write_bytes(Hive.open(copied).to_bytes())
    shutil.rmtree(tmp)
    return clean


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hive", type=Path, default=DEFAULT)
    args = parser.parse_args()
    if not args.hive.exists():
        print(f"skipped: {args.hive} is absent (the real hives are needed)")
        return 0
    if not shutil.which("hivexsh"):
        print("skipped: hivexsh (libhivex-bin) is not installed")
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-hive-"))
    try:
        clean = clean_copy(args.hive, work)
        hive = Hive.open(clean)
        keys = sum(1 for _ in hive.walk())
        values = sum(len(v) for _p, v in hive.tree())
        assert hive.key(NAME_KEY) is not None and hive.key(DELETE_KEY) is not None
        (work / "change.reg").write_text(REG_FILE)
        results: dict[str, list[tuple[float, float]]] = {}

        def fresh(name: str) -> Path:
            target = work / name
            shutil.copyfile(clean, target)
            for stale in work.glob(name + ".*"):
                stale.unlink()
            return target

        cases: list[tuple[str, Callable[[], tuple[float, float]]]] = [
            ("reseal hive set (1 value) + commit", lambda: timed(
                [*RESEAL, "hive", "set", str(fresh("r")), NAME_KEY, "ComputerName", "--type", "REG_SZ",
                 "--data", "BENCH-01"])),
            ("  of which start-up: python + imports of `reseal hive`", lambda: timed(
                [sys.executable, "-c", "import reseal.cli, reseal.cli.hive_cmd"])),
            ("hivexsh setval + commit", lambda: timed(
                ["hivexsh", "-w", str(fresh("h"))],
                f"cd {NAME_KEY}\nsetval 1\nComputerName\nstring:BENCH-01\ncommit\n".encode())),
            ("reseal hive delete (key tree) + commit", lambda: timed(
                [*RESEAL, "hive", "delete", str(fresh("r")), DELETE_KEY])),
            ("hivexsh del + commit", lambda: timed(
                ["hivexsh", "-w", str(fresh("h"))], f"cd {DELETE_KEY}\ndel\ncommit\n".encode())),
            ("reseal hive import (1 key, 3 values) + commit", lambda: timed(
                [*RESEAL, "hive", "import", str(fresh("r")), str(work / "change.reg")])),
            ("hivexsh add + setval + commit", lambda: timed(
                ["hivexsh", "-w", str(fresh("h"))], HIVEXSH_IMPORT.encode())),
            ("reseal: open + Hive.tree() full walk (process)", lambda: timed(
                [sys.executable, "-c", "import sys; from reseal.registry import Hive\n"
                 "for _ in Hive.open(sys.argv[1]).tree(): pass", str(clean)])),
            ("hivexml full walk (process)", lambda: timed(
                ["sh", "-c", f"hivexml '{clean}' > /dev/null"])),
            ("reseal hive export (process, .reg text)", lambda: timed(
                ["sh", "-c", f"'{RESEAL[0]}' hive export '{clean}' > /dev/null"])),
            ("reseal: open + Key/Value object walk (in process)", lambda: in_process(
                lambda: walk_objects(clean))),
            ("reseal: open + Hive.tree() (in process)", lambda: in_process(lambda: walk_tree(clean))),
            ("python-registry: the same walk (in process)", lambda: in_process(
                lambda: walk_python_registry(clean))),
        ]
        timed([*RESEAL, "hive", "get", str(clean), "Select"])  # warm: bytecode, page cache
        for _ in range(args.runs):
            for name, case in cases:
                results.setdefault(name, []).append(case())
        check = Hive.open(work / "r")
        assert check.key(IMPORT_KEY) is not None  # the last reseal case really imported
        rows = []
        for name, runs in results.items():
            wall = statistics.median(w for w, _c in runs)
            cpu = statistics.median(c for _w, c in runs)
            rows.append((name, f"{wall:.3f}", f"{cpu:.3f}"))
        print(f"hive: {args.hive.name}, clean copy {clean.stat().st_size} bytes, {keys} keys, "
              f"{values} values; median of {args.runs} runs; load average {os.getloadavg()[0]:.1f}")
        print(format_table(["operation", "wall s", "CPU s"], rows))
    finally:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
