"""Batch throughput: clones per minute and host bytes per clone, overlay mode vs copy mode.

Builds the Linux sample image (GPT, ESP + ext4, 96 MiB virtual) as the master, then runs a
batch of N clones in each mode and reports the wall time, clones per minute and the bytes each
clone really takes on the host (allocated blocks, so sparse holes do not count).

Run (root: loop devices and mounts): .venv/bin/python bench/bench_batch.py [--clones 20] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from reseal.formatting import format_table
from reseal.pipeline.answerfile import load_answer_file
from reseal.pipeline.batch import run_batch
from reseal.samples.builders import build_linux_gpt, build_qcow2


def run_mode(workdir: Path, master: Path, mode: str, clones: int, jobs: int) -> dict[str, object]:
    answer = workdir / f"{mode}.yaml"
    answer.write_text(
        "os: linux\n"
        f'defaults: {{hostname: "{mode}-{{n:03}}"}}\n'
        f"count: {clones}\n"
        "operations: {options: {linux-machine-id: {write_new: true}}}\n"
        f"batch: {{master: {master}, output: {workdir / mode}, mode: {mode}, jobs: {jobs}}}\n"
    )
    start = time.perf_counter()
    result = run_batch(load_answer_file(answer))
    seconds = time.perf_counter() - start
    failed = [r for r in result.records if r.status != "ok"]
    sizes = [r.bytes for r in result.records]
    return {
        "mode": mode,
        "master": master.name,
        "clones": clones,
        "jobs": jobs,
        "failed": len(failed),
        "seconds": round(seconds, 2),
        "clones_per_minute": round(clones * 60 / seconds, 1),
        "bytes_per_clone_mean": int(statistics.mean(sizes)) if sizes else 0,
        "bytes_per_clone_max": max(sizes) if sizes else 0,
        "first_error": failed[0].error if failed else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clones", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="reseal-bench-batch-"))
    try:
        raw = build_linux_gpt(workdir / "master.img", hostname="gold-master")
        qcow2 = build_qcow2(raw, workdir / "master.qcow2")
        master_bytes = {"raw": raw.path.stat().st_blocks * 512,
                        "qcow2": qcow2.path.stat().st_blocks * 512}
        results = [
            run_mode(workdir, qcow2.path, "overlay", args.clones, args.jobs),
            run_mode(workdir, raw.path, "copy", args.clones, args.jobs),
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"master_bytes": master_bytes, "results": results}, indent=2))
        return 0
    print(f"master: 96 MiB virtual; host bytes raw {master_bytes['raw']}, "
          f"qcow2 {master_bytes['qcow2']}")
    print(format_table(
        ("MODE", "MASTER", "CLONES", "JOBS", "FAILED", "SECONDS", "CLONES/MIN", "BYTES/CLONE",
         "MAX BYTES"),
        [(r["mode"], r["master"], r["clones"], r["jobs"], r["failed"], r["seconds"],
          r["clones_per_minute"], r["bytes_per_clone_mean"], r["bytes_per_clone_max"])
         for r in results]))
    for r in results:
        if r["first_error"]:
            print(f"{r['mode']}: first error: {r['first_error']}")
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
