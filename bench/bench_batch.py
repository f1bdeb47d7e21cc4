"""Batch throughput: clones per minute, host bytes per clone and memory per worker, for the
local pool (1, 2 and 4 jobs) and for a real two-worker Dask cluster on this host.

Two masters:
- the Linux sample (GPT, ESP + ext4, 96 MiB virtual), N clones per configuration;
- a realistic one: the 2 GiB Debian 12 image the boot test builds (debootstrap, GRUB, SSH),
  100 clones as qcow2 overlays, local pool and cluster.

Every clone gets the default operations plus a new machine-id written offline (new SSH host
keys made offline included). Memory is the peak resident size of each worker's process tree
(the worker process and everything it runs: qemu-storage-daemon, ssh-keygen, ...), sampled
every 50 ms. Cluster overhead per clone is (cluster time - local time at the same number of
slots) / clones.

Run (root: loop devices and mounts):
    .venv/bin/python bench/bench_batch.py [--clones 20] [--big-clones 100] [--skip-big]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cluster.daskprocs import dask_cluster  # noqa: E402

from reseal.formatting import format_table  # noqa: E402
from reseal.pipeline.answerfile import load_answer_file  # noqa: E402
from reseal.pipeline.batch import run_batch  # noqa: E402
from reseal.samples.builders import build_linux_gpt  # noqa: E402


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(stat[1]), []).append(int(entry.name))
    return tree


def _tree_rss(root: int, tree: dict[int, list[int]]) -> int:
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class PeakMemory:
    """Peak resident bytes of each worker's process tree while a batch runs."""

    def __init__(self, roots: Iterator[int] | None = None) -> None:
        self.fixed_roots = list(roots) if roots is not None else None
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _roots(self, tree: dict[int, list[int]]) -> list[int]:
        if self.fixed_roots is not None:
            return self.fixed_roots
        # the local pool: our spawned worker processes
        roots = []
        for pid in tree.get(os.getpid(), []):
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    roots.append(pid)
            except OSError:
                continue  # ended meanwhile
        return roots

    def _sample(self) -> None:
        while not self._stop.is_set():
            tree = _children()
            for root in self._roots(tree):
                self.peaks[root] = max(self.peaks.get(root, 0), _tree_rss(root, tree))
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_once(workdir: Path, master: Path, label: str, clones: int, jobs: int,
             cluster: str | None = None, worker_pids: list[int] | None = None
             ) -> dict[str, object]:
    output = workdir / label
    answer = workdir / f"{label}.yaml"
    answer.write_text(
        "os: linux\n"
        f'defaults: {{hostname: "{label}-{{n:03}}"}}\n'
        f"count: {clones}\n"
        "operations: {options: {linux-machine-id: {write_new: true}}}\n"
        f"batch: {{master: {master}, output: {output}, mode: overlay, jobs: {jobs}}}\n"
    )
    with PeakMemory(iter(worker_pids) if worker_pids is not None else None) as memory:
        start = time.perf_counter()
        result = run_batch(load_answer_file(answer), cluster=cluster)
        seconds = time.perf_counter() - start
    failed = [r for r in result.records if r.status != "ok"]
    sizes = [r.bytes for r in result.records]
    shutil.rmtree(output, ignore_errors=True)
    return {
        "run": label,
        "where": "cluster, 2 workers" if cluster else f"local, {jobs} jobs",
        "clones": clones,
        "failed": len(failed),
        "seconds": round(seconds, 2),
        "clones_per_minute": round(clones * 60 / seconds, 1),
        "bytes_per_clone": int(statistics.mean(sizes)) if sizes else 0,
        "worker_peak_mib": round(max(memory.peaks.values(), default=0) / 2**20, 1),
        "first_error": failed[0].error if failed else None,
    }


@contextmanager
def two_worker_cluster(directory: Path) -> Iterator[tuple[str, list[int]]]:
    with dask_cluster(directory, workers=2) as cluster:
        yield cluster.address, [w.process.pid for w in cluster.workers]


def measure(workdir: Path, master: Path, name: str, clones: int,
            local_jobs: tuple[int, ...]) -> list[dict[str, object]]:
    results = [run_once(workdir, master, f"{name}-j{jobs}", clones, jobs)
               for jobs in local_jobs]
    with two_worker_cluster(workdir / f"cluster-{name}") as (address, pids):
        results.append(run_once(workdir, master, f"{name}-cluster", clones, 2, address, pids))
    local2 = next(r for r in results if r["run"] == f"{name}-j2")
    cluster_run = results[-1]
    overhead = (float(cluster_run["seconds"]) - float(local2["seconds"])) / clones  # type: ignore[arg-type]
    cluster_run["overhead_per_clone_s"] = round(overhead, 3)
    return results


def big_master() -> Path:
    from tests.linux.vm.qemu import master_image

    return master_image()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clones", type=int, default=20, help="clones of the sample master")
    parser.add_argument("--big-clones", type=int, default=100,
                        help="clones of the 2 GiB Debian master")
    parser.add_argument("--skip-big", action="store_true", help="only the sample master")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="reseal-bench-batch-"))
    summary: dict[str, object] = {}
    try:
        sample = build_linux_gpt(workdir / "master.img", hostname="gold-master").path
        results = measure(workdir, sample, "sample", args.clones, (1, 2, 4))
        if not args.skip_big:
            master = big_master()
            summary["big_master_allocated_bytes"] = master.stat().st_blocks * 512
            summary["big_master_virtual_bytes"] = master.stat().st_size
            results += measure(workdir, master, "debian12", args.big_clones, (2,))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary["results"] = results
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(format_table(
        ("RUN", "WHERE", "CLONES", "FAILED", "SECONDS", "CLONES/MIN", "BYTES/CLONE",
         "WORKER PEAK MiB", "OVERHEAD/CLONE s"),
        [(r["run"], r["where"], r["clones"], r["failed"], r["seconds"], r["clones_per_minute"],
          r["bytes_per_clone"], r["worker_peak_mib"], r.get("overhead_per_clone_s", ""))
         for r in results]))
    if "big_master_allocated_bytes" in summary:
        allocated = int(summary["big_master_allocated_bytes"])  # type: ignore[call-overload]
        for r in results:
            if str(r["run"]).startswith("debian12"):
                share = 100 * int(r["bytes_per_clone"]) / allocated  # type: ignore[call-overload]
                print(f"{r['run']}: each overlay is {share:.2f}% of the master's "
                      f"{allocated / 2**20:.0f} MiB allocated")
    for r in results:
        if r["first_error"]:
            print(f"{r['run']}: first error: {r['first_error']}")
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
