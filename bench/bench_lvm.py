"""LVM without device-mapper: reseal's reader and UUID rewrite against Debian's lvm2.

Usage: .venv/bin/python bench/bench_lvm.py [--runs N]
Needs root and lvm2. One image is built once with lvm2 (two PVs, three metadata copies,
six LVs; see tests/image/lvm_images.py), then each step runs N times on a fresh copy, median:
- read the metadata: reseal's `scan_lvm` on the image file, vs `vgs` + `lvs` of lvm2 on loop
  devices that are already set up (their set-up is not timed);
- new identifiers: `reseal generalize --operations linux-lvm-uuids` as a whole command (open,
  mount, rewrite every copy and label, follow fstab/GRUB//etc/lvm references, report), vs
  lvm2's `vgchange -u` + `pvchange -u` on each PV (lvm2 has no command for new LV UUIDs, so
  it does less work; loop set-up and detach are timed with it, as reseal's are).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.image.lvm_images import VG, build_lvm_image, copy_image, loops, lvm  # noqa: E402

from reseal.formatting import format_table  # noqa: E402
from reseal.image.lvm import scan_lvm  # noqa: E402


def _median(runs: int, step: Callable[[int], None]) -> float:
    times = []
    for n in range(runs):
        started = time.perf_counter()
        step(n)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (loop devices)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="reseal-bench-lvm-") as tmp:
        work = Path(tmp)
        master = build_lvm_image(work / "master.img", work)
        candidates = [("p2", *master.partitions["pv1"]), ("p3", *master.partitions["pv2"])]

        def reseal_read(_n: int) -> None:
            with open(master.path, "rb") as disk:
                def read(offset: int, length: int) -> bytes:
                    disk.seek(offset)
                    return disk.read(length)

                layout = scan_lvm(read, candidates, "bench")
            assert len(layout.groups[0].placements) == 6

        with loops(master.path, master.pv_ranges(), read_only=True) as devices:
            def lvm2_read(_n: int) -> None:
                lvm("vgs", devices, "-o", "vg_name,vg_uuid")
                lvm("lvs", devices, "-o", "lv_name,lv_uuid,seg_pe_ranges")

            read_reseal = _median(args.runs, reseal_read)
            read_lvm2 = _median(args.runs, lvm2_read)

        clones = [copy_image(master, work / f"clone-{n}.img") for n in range(2 * args.runs)]
        env = {**os.environ, "RESEAL_STATE_DIR": str(work / "state")}
        reseal = REPO / ".venv" / "bin" / "reseal"

        def reseal_uuids(n: int) -> None:
            subprocess.run([str(reseal), "generalize", str(clones[n].path), "--operations",
                            "linux-lvm-uuids"], env=env, check=True, capture_output=True)

        def lvm2_uuids(n: int) -> None:
            clone = clones[args.runs + n]
            with loops(clone.path, clone.pv_ranges()) as devices:
                lvm("vgchange", devices, "-u", VG)
                for device in devices:
                    lvm("pvchange", devices, "-u", device)

        subprocess.run(["sync"], check=True)
        uuids_reseal = _median(args.runs, reseal_uuids)
        uuids_lvm2 = _median(args.runs, lvm2_uuids)
    rows = [
        ("read metadata", "reseal scan_lvm (in process)", f"{read_reseal * 1000:.1f} ms"),
        ("read metadata", "lvm2 vgs + lvs", f"{read_lvm2 * 1000:.1f} ms"),
        ("new UUIDs", "reseal generalize --operations linux-lvm-uuids", f"{uuids_reseal:.2f} s"),
        ("new UUIDs", "lvm2 vgchange -u + pvchange -u x2 (no LV UUIDs)", f"{uuids_lvm2:.2f} s"),
    ]
    print(format_table(("STEP", "TOOL", f"MEDIAN OF {args.runs}"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
