"""Timings for driver staging: INF parsing, and add/remove on a copy of a real SYSTEM hive.

Usage: .venv/bin/python bench/bench_drivers.py [../shared/fixtures]
"""

from __future__ import annotations

import lzma
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from reseal.cli import main
from reseal.drivers.inf import load_inf

REPO = Path(__file__).resolve().parent.parent


def timed(label: str, func, repeat: int = 1) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(repeat):
        func()
    elapsed = (time.perf_counter() - start) / repeat
    print(f"{label:55s} {elapsed * 1000:9.1f} ms")


def main_bench(shared: Path) -> None:
    infs = sorted(p for p in (shared / "inf").rglob("*") if p.suffix.lower() in (".inf", ".inx"))
    timed(f"parse {len(infs)} real INF files (+ typed model)",
          lambda: [load_inf(p).version() for p in infs], repeat=20)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "img"
        config = root / "Windows/System32/config"
        config.mkdir(parents=True)
        with lzma.open(shared / "hives/regipy/SYSTEM_WIN_10_1709.xz") as src, \
                open(config / "SYSTEM", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.environ["RESEAL_STATE_DIR"] = str(Path(tmp) / "state")
        devnull = open(os.devnull, "w")  # noqa: SIM115
        stdout, sys.stdout = sys.stdout, devnull
        try:
            timings = []
            for verb in (["add", str(root), str(REPO / "drivers")],
                         ["add", str(root), str(REPO / "drivers")],
                         ["remove", str(root), "oem13.inf"],
                         ["remove", str(root), "oem12.inf"]):
                start = time.perf_counter()
                assert main(["drivers", *verb]) == 0
                timings.append((" ".join(verb[:1] + verb[2:3]), time.perf_counter() - start))
        finally:
            sys.stdout = stdout
            devnull.close()
        size = (config / "SYSTEM").stat().st_size
        for label, seconds in timings:
            print(f"drivers {label[:45]:47s} {seconds * 1000:9.1f} ms  (SYSTEM {size >> 20} MiB)")


if __name__ == "__main__":
    main_bench(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "fixtures")
