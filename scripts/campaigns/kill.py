#!/usr/bin/env python3
"""Kill campaign: SIGKILL `reseal generalize` and `reseal batch --jobs 2` at points spread over
their run, then check what a power cut or the OOM killer would leave.

    .venv/bin/python scripts/campaigns/kill.py --points 100 --out /var/tmp/kill-campaign

Scenarios: generalize of the Linux and Windows samples, raw and qcow2, and an in-place batch
of two machines (`--jobs 2`). Each kill point gets fresh copies of the sample images and its own
state and work directories. The kill lands at a time drawn from its share of the scenario's
measured run time (stratified, so the points cover the whole run); half of the points kill
reseal's process alone (`kill -9 PID`), half its whole process group (FUSE servers and
qemu-storage-daemon at the same instant, as an OOM kill of a service's cgroup would).

After each kill:
  1. nothing is left: no loop device on the images or the work directory, no mount, no FUSE
     server, no qemu-storage-daemon, no process the run started (the keeper included);
  2. every file is old or new: its bytes are the original's, or those a complete run writes
     (for hives and SSH keys, whose new bytes vary from run to run: a whole, valid file);
  3. every registry hive passes `reseal hive check` and opens in python-registry and hivex;
  4. `reseal undo` with the partial journal exits 0 and every file has its original bytes
     again, with no temporary file left.
A point survives when all four hold. Results: one JSON line per point in OUT/points.jsonl and
a summary at the end (`--json` prints it as JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
HOSTNAME = "KILL-TEST"
SEED = "7"
SETTLE_SECONDS = 60  # how long the keeper and the kernel may take to release everything
LITTER = (".reseal-tmp-", ".fuse_hidden")


@dataclass(frozen=True)
class Scenario:
    name: str
    command: str  # "generalize" or "batch"
    samples: tuple[str, ...]  # sample keys (see build_samples)


SCENARIOS = {
    s.name: s for s in (
        Scenario("linux-raw", "generalize", ("linux-gpt.img",)),
        Scenario("linux-qcow2", "generalize", ("linux-gpt.qcow2",)),
        Scenario("windows-raw", "generalize", ("windows-gpt.img",)),
        Scenario("windows-qcow2", "generalize", ("windows-gpt.qcow2",)),
        Scenario("batch", "batch", ("linux-gpt.img", "windows-gpt.qcow2")),
    )
}


@dataclass
class PointResult:
    scenario: str
    point: int
    kill: str  # when it was killed (KillPoint.describe)
    group_kill: bool
    finished_before_kill: bool = False
    leftovers: list[str] = field(default_factory=list)
    neither_old_nor_new: list[str] = field(default_factory=list)
    hive_faults: list[str] = field(default_factory=list)
    undo_faults: list[str] = field(default_factory=list)
    journal_entries: int = 0
    litter_before_undo: int = 0
    seconds: float = 0.0

    @property
    def survived(self) -> bool:
        return not (self.leftovers or self.neither_old_nor_new or self.hive_faults
                    or self.undo_faults)


# ------------------------------------------------------------------------------ samples
def build_samples(directory: Path, hives: dict[str, Path] | None = None) -> dict[str, Path]:
    """The sample images the scenarios use (built once, copied for every point)."""
    from reseal.samples.builders import build_linux_gpt, build_qcow2, build_windows_gpt
    from reseal.samples.catalog import project_hives

    directory.mkdir(parents=True, exist_ok=True)
    if hives is None:
        hives = campaign_hives(directory)
    if not hives:
        hives, _notes = project_hives()
    linux = build_linux_gpt(directory / "linux-gpt.img")
    windows = build_windows_gpt(directory / "windows-gpt.img", hives)
    build_qcow2(linux, directory / "linux-gpt.qcow2")
    build_qcow2(windows, directory / "windows-gpt.qcow2")
    return {p.name: p for p in directory.iterdir() if p.suffix in (".img", ".qcow2")}


def campaign_hives(directory: Path) -> dict[str, Path]:
    """Real hives from ../shared when present (a 15 MB SYSTEM makes the Windows runs long
    enough to be killed inside a hive commit), else none (the project's own)."""
    shared = REPO.parent / "shared" / "fixtures" / "hives"
    sources = {"SYSTEM": shared / "regipy" / "SYSTEM.xz", "SAM": shared / "dfwinreg" / "SAM",
               "SECURITY": shared / "dfwinreg" / "SECURITY"}
    if not all(p.exists() for p in sources.values()):
        return {}
    import lzma

    out = directory / "hives"
    out.mkdir(exist_ok=True)
    found = {}
    for name, source in sources.items():
        target = out / name
        if source.name.endswith(".xz"):
            with lzma.open(source) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            shutil.copyfile(source, target)
        found[name] = target
    return found


def copy_image(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(source), str(target)], check=True)
    return target


# ------------------------------------------------------------------------------ running
@dataclass
class RunSetup:
    """Where one run (reference or killed) keeps its images, state and work directories."""

    base: Path
    images: list[Path]
    argv: list[str]
    env: dict[str, str]

    def journals(self) -> dict[Path, Path]:
        """image -> journal directory of the run that changed it (if it got that far)."""
        found = {}
        if self.argv[3] == "batch":
            for index, image in enumerate(self.images):
                journal = self.base / "batch" / "runs" / f"m{index + 1}" / "journal"
                if (journal / "entries.jsonl").exists():
                    found[image] = journal
        else:
            journals = sorted((self.base / "state" / "runs").glob("*/journal"))
            journals = [j for j in journals if (j / "entries.jsonl").exists()]
            if journals:
                found[self.images[0]] = journals[0]
        return found


def prepare(scenario: Scenario, samples: dict[str, Path], base: Path) -> RunSetup:
    base.mkdir(parents=True)
    images = [copy_image(samples[name], base / f"m{i + 1}-{name}")
              for i, name in enumerate(scenario.samples)]
    env = {**os.environ, "RESEAL_STATE_DIR": str(base / "state"),
           "RESEAL_WORK_DIR": str(base / "work"),
           # compiled modules cached (as an installed reseal has them), outside the checkout
           "PYTHONPYCACHEPREFIX": str(base.parent / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if scenario.command == "generalize":
        argv = [PYTHON, "-m", "reseal", "generalize", str(images[0]), "--hostname", HOSTNAME,
                "--seed", SEED, "--json"]
    else:
        answer = base / "batch.yaml"
        lines = ["version: 1", "machines:"]
        for index, image in enumerate(images):
            lines += [f"  - name: m{index + 1}", f"    hostname: kill-{index + 1}",
                      f"    target: {image}"]
        lines += ["defaults:", "  seed: 7", "batch:", f"  state_dir: {base / 'batch'}",
                  "  jobs: 2", ""]
        answer.write_text("\n".join(lines))
        argv = [PYTHON, "-m", "reseal", "batch", str(answer), "--jobs", "2", "--json"]
    return RunSetup(base, images, argv, env)


def run_to_the_end(setup: RunSetup) -> tuple[float, float]:
    """Run without a kill: (seconds until reseal made its work directory, seconds in all)."""
    started = time.monotonic()
    process = subprocess.Popen(setup.argv, env=setup.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    attached = None
    while process.poll() is None:
        if attached is None and any((setup.base / "work").glob("reseal-*")):
            attached = time.monotonic() - started
        time.sleep(0.005)
    total = time.monotonic() - started
    if process.returncode != 0:
        assert process.stderr is not None
        raise SystemExit(f"reference run failed ({process.returncode}): "
                         f"{process.stderr.read().strip()}")
    return attached if attached is not None else 0.0, total


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, []))
    return found


@dataclass(frozen=True)
class KillPoint:
    """When to kill: `delay` seconds after the start, or, with `entries`, once the run's undo
    journal holds that many entries (the run is writing), `delay` seconds later."""

    delay: float
    entries: int = 0

    def describe(self) -> str:
        if self.entries:
            return f"at journal entry {self.entries} +{self.delay * 1000:.0f} ms"
        return f"at {self.delay:.2f} s"


def journal_entries(setup: RunSetup) -> int:
    count = 0
    for runs in (setup.base / "state" / "runs", setup.base / "batch" / "runs"):
        with contextlib.suppress(OSError):
            for run in os.scandir(runs):
                with contextlib.suppress(OSError):
                    count += Path(run.path, "journal", "entries.jsonl").read_bytes().count(b"\n")
    return count


def kill_run(setup: RunSetup, point: KillPoint, group: bool) -> tuple[bool, set[int]]:
    """Start the run and SIGKILL it at `point`; (finished before the kill, the pids of the
    run's processes at the kill)."""
    process = subprocess.Popen(setup.argv, env=setup.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    if point.entries:
        while journal_entries(setup) < point.entries:
            if process.poll() is not None:
                return process.returncode == 0, set()
            time.sleep(0.002)
    try:
        process.wait(timeout=point.delay)
        return True, set()
    except subprocess.TimeoutExpired:
        pass
    pids = descendants(process.pid)  # one scan of /proc: polling it would slow the run
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return process.returncode == 0, pids


# ------------------------------------------------------------------------------ checks
def leftovers(setup: RunSetup, pids: set[int]) -> list[str]:
    """Loop devices, mounts and processes of the killed run that are still there."""
    found = []
    markers = [str(setup.base)]
    loops = subprocess.run(["losetup", "-a", "--noheadings", "-O", "NAME,BACK-FILE"],
                           capture_output=True, text=True).stdout
    found += [f"loop {line.strip()}" for line in loops.splitlines()
              if any(m in line for m in markers)]
    for table in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
        with open(table) as handle:
            found += [f"mount {line.split()[4]}" for line in handle
                      if any(m in line.split()[4] for m in markers)]
    for pid in sorted(pids):
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"process {pid} {cmd.decode(errors='replace')[:120]}")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in pids:
            with contextlib.suppress(OSError):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")
                if any(m in cmd for m in markers) and "kill.py" not in cmd:
                    found.append(f"process {entry.name} {cmd[:120]}")
    return found


def settle(setup: RunSetup, pids: set[int]) -> list[str]:
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        found = leftovers(setup, pids)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


Snapshot = dict[str, str]  # "volume:/path" -> sha256, "link:..." or the hive/key marker


def snapshot(image: Path) -> tuple[Snapshot, dict[str, bytes]]:
    """Every file of every volume (read-only), and the bytes of each hive and its logs."""
    from reseal.image.target import OpenOptions, open_target

    files: Snapshot = {}
    hives: dict[str, bytes] = {}
    with open_target(image, OpenOptions(allow_unclean_ntfs=True)) as target:
        for volume in target.volumes:
            fs = volume.fs
            if fs is None:
                continue
            for directory, _dirs, names in fs.walk("/"):
                for name in names:
                    guest = directory.rstrip("/") + "/" + name
                    key = f"{volume.key}:{guest}"
                    if fs.is_symlink(guest):
                        files[key] = "link:" + fs.readlink(guest)
                        continue
                    data = fs.read_bytes(guest)
                    files[key] = hashlib.sha256(data).hexdigest()
                    if (data[:4] == b"regf" or _is_hive_log(guest)) and not is_litter(key):
                        hives[key] = data  # a half-written temporary file is litter
    return files, hives


def _is_hive_log(guest: str) -> bool:
    return guest.upper().endswith((".LOG1", ".LOG2", ".LOG"))


def hive_faults(hives: dict[str, bytes], workdir: Path) -> list[str]:
    """Each hive, with its logs beside it, through reseal, python-registry and hivex."""
    from Registry import Registry  # python-registry

    faults = []
    workdir.mkdir(parents=True, exist_ok=True)
    for key, data in hives.items():
        if _is_hive_log(key):
            continue
        folder = workdir / hashlib.sha256(key.encode()).hexdigest()[:12]
        folder.mkdir()
        name = key.rsplit("/", 1)[1]
        path = folder / name
        path.write_bytes(data)
        for other, log in hives.items():
            if _is_hive_log(other) and other.upper().startswith(key.upper() + "."):
                (folder / (name + other[len(key):])).write_bytes(log)
        check = subprocess.run([PYTHON, "-m", "reseal", "hive", "check", str(path)],
                               capture_output=True, text=True, check=False)
        if check.returncode != 0:
            faults.append(f"{key}: reseal hive check: {check.stderr.strip() or check.stdout}")
        try:
            registry = Registry.Registry(str(path))
            stack = [registry.root()]
            while stack:
                current = stack.pop()
                for value in current.values():
                    value.value()
                stack.extend(current.subkeys())
        except Exception as exc:  # any failure of the peer reader is a finding
            faults.append(f"{key}: python-registry: {type(exc).__name__}: {exc}")
        hivex = subprocess.run(["hivexml", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, check=False)
        if hivex.returncode != 0:
            faults.append(f"{key}: hivexml: {hivex.stderr.strip()[:200]}")
    return faults


def is_litter(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith(LITTER)


def classify(before: Snapshot, after: Snapshot, references: list[Snapshot],
             hives: dict[str, bytes], key_files_ok: dict[str, bool]) -> tuple[list[str], int]:
    """Files that are neither as before nor as a complete run leaves them; litter count."""
    wrong = []
    litter = 0
    for key in sorted(set(before) | set(after)):
        old, now = before.get(key), after.get(key)
        news = [ref.get(key) for ref in references]
        if now == old or now in news:
            continue
        if now is not None and is_litter(key):
            litter += 1
            continue
        if now is None:
            wrong.append(f"{key}: missing (a complete run keeps it)")
            continue
        if key in hives:
            continue  # judged whole or not by the hive readers
        if key in key_files_ok:
            if not key_files_ok[key]:
                wrong.append(f"{key}: not a readable SSH key")
            continue
        varies = len({ref.get(key) for ref in references}) > 1
        wrong.append(f"{key}: neither old nor new" + (" (varies between runs)" if varies else ""))
    return wrong, litter


def ssh_key_files(image: Path, after: Snapshot, workdir: Path) -> dict[str, bool]:
    """For every SSH host key file: does ssh-keygen read it?"""
    from reseal.image.target import OpenOptions, open_target

    results = {}
    keys = [k for k in after if "/etc/ssh/ssh_host_" in k and not is_litter(k)]
    if not keys:
        return results
    workdir.mkdir(parents=True, exist_ok=True)
    with open_target(image, OpenOptions()) as target:
        for key in keys:
            volume, guest = key.split(":", 1)
            fs = target.volume(volume).fs
            assert fs is not None
            copy = workdir / guest.rsplit("/", 1)[1]
            copy.write_bytes(fs.read_bytes(guest))
            copy.chmod(0o600)
            read = subprocess.run(["ssh-keygen", "-l", "-f", str(copy)], capture_output=True,
                                  check=False)
            results[key] = read.returncode == 0
    return results


def undo_faults(setup: RunSetup, originals: dict[Path, Snapshot]) -> tuple[list[str], int]:
    faults = []
    entries = 0
    journals = setup.journals()
    for image in setup.images:
        journal = journals.get(image)
        if journal is not None:
            entries += len((journal / "entries.jsonl").read_text().splitlines())
            done = subprocess.run([PYTHON, "-m", "reseal", "undo", str(image), str(journal)],
                                  env=setup.env, capture_output=True, text=True, timeout=600,
                                  check=False)
            if done.returncode != 0:
                faults.append(f"{image.name}: undo exit {done.returncode}: {done.stderr.strip()}")
                continue
        restored, _hives = snapshot(image)
        original = originals[image]
        for key in sorted(set(original) | set(restored)):
            if original.get(key) != restored.get(key):
                state = "missing" if key not in restored else (
                    "left over" if key not in original else "differs")
                faults.append(f"{image.name} {key}: {state} after undo")
    return faults, entries


# ------------------------------------------------------------------------------ campaign
@dataclass
class ScenarioBaseline:
    attached: float  # seconds until the first image is being attached
    seconds: float
    entries: int  # journal entries of a complete run
    originals: dict[str, Snapshot]  # sample name -> files
    references: dict[str, list[Snapshot]]  # sample name -> files after complete runs


def baseline(scenario: Scenario, samples: dict[str, Path], out: Path, runs: int = 3
             ) -> ScenarioBaseline:
    originals = {name: snapshot(samples[name])[0] for name in scenario.samples}
    references: dict[str, list[Snapshot]] = {name: [] for name in scenario.samples}
    times = []
    entries = []
    for attempt in range(max(runs, 2)):  # complete runs: what varies between runs is seen
        setup = prepare(scenario, samples, out / f"reference-{attempt}")
        times.append(run_to_the_end(setup))
        entries.append(journal_entries(setup))
        for name, image in zip(scenario.samples, setup.images, strict=True):
            references[name].append(snapshot(image)[0])
        shutil.rmtree(setup.base, ignore_errors=True)
    times = times[1:] if len(times) > 2 else times  # the first run compiled reseal's modules
    return ScenarioBaseline(min(t[0] for t in times), min(t[1] for t in times), min(entries),
                            originals, references)


def run_point(scenario: Scenario, samples: dict[str, Path], base: ScenarioBaseline, out: Path,
              index: int, point: KillPoint, group: bool) -> PointResult:
    started = time.monotonic()
    result = PointResult(scenario.name, index, point.describe(), group)
    setup = prepare(scenario, samples, out / f"{scenario.name}-{index:03d}")
    finished, pids = kill_run(setup, point, group)
    result.finished_before_kill = finished
    result.leftovers = settle(setup, pids)
    originals = {}
    for name, image in zip(scenario.samples, setup.images, strict=True):
        originals[image] = base.originals[name]
        try:
            after, hives = snapshot(image)
        except Exception as exc:  # the image does not even open: a finding
            result.neither_old_nor_new.append(f"{image.name}: cannot open: {exc}")
            continue
        try:
            keys = ssh_key_files(image, after, setup.base / "keys" / name)
        except Exception as exc:
            result.neither_old_nor_new.append(f"{image.name}: keys not read: {exc}")
            keys = {}
        wrong, litter = classify(base.originals[name], after, base.references[name], hives, keys)
        result.neither_old_nor_new += [f"{image.name} {w}" for w in wrong]
        result.litter_before_undo += litter
        result.hive_faults += hive_faults(hives, setup.base / "hives" / name)
    try:
        result.undo_faults, result.journal_entries = undo_faults(setup, originals)
    except Exception as exc:  # a check that cannot even run is a finding, not a crash
        result.undo_faults.append(f"undo check failed: {type(exc).__name__}: {exc}")
    result.seconds = round(time.monotonic() - started, 2)
    if result.survived:
        shutil.rmtree(setup.base, ignore_errors=True)
    return result


def spread(points: int, base: ScenarioBaseline, rng: random.Random) -> list[KillPoint]:
    """Kill points over the whole run: a third by time, stratified from just before the first
    attach to a little past the end (before that reseal only starts Python); two thirds
    inside the writing, stratified over the journal entries of a complete run, each a few
    milliseconds after its entry (the run may be in the write the entry announced, or past
    it). Time alone would put few kills among the writes: on this machine a Windows run
    spends most of its time reading hives."""
    timed = points - (2 * points) // 3 if base.entries else points
    start = base.attached * 0.9
    span = base.seconds * 1.05 - start
    chosen = [KillPoint(start + span * (i + rng.random()) / timed) for i in range(timed)]
    writing = points - timed
    for i in range(writing):
        entry = 1 + int(base.entries * (i + rng.random()) / writing)
        chosen.append(KillPoint(rng.uniform(0.0, 0.03), min(entry, base.entries)))
    rng.shuffle(chosen)
    return chosen


def run_campaign(samples: dict[str, Path], out: Path, points: int,
                 scenarios: list[str] | None = None, seed: int = 1,
                 progress: bool = False, reference_runs: int = 3) -> list[PointResult]:
    """`points` kill points divided among the scenarios."""
    chosen = [SCENARIOS[name] for name in scenarios or SCENARIOS]
    rng = random.Random(seed)
    results = []
    out.mkdir(parents=True, exist_ok=True)
    log = out / "points.jsonl"
    shares = [points // len(chosen) + (i < points % len(chosen)) for i in range(len(chosen))]
    for scenario, share in zip(chosen, shares, strict=True):
        if share == 0:
            continue
        base = baseline(scenario, samples, out / f"{scenario.name}-baseline", reference_runs)
        for index, point in enumerate(spread(share, base, rng)):
            result = run_point(scenario, samples, base, out, index, point, group=index % 2 == 1)
            results.append(result)
            with open(log, "a") as handle:
                handle.write(json.dumps({**asdict(result), "survived": result.survived}) + "\n")
            if progress:
                print(f"{scenario.name} #{index} {point.describe()} (run {base.seconds:.1f} s, "
                      f"{base.entries} entries) "
                      f"{'group' if result.group_kill else 'pid'}: "
                      f"{'survived' if result.survived else 'FAILED'}"
                      f"{' (finished first)' if result.finished_before_kill else ''}",
                      file=sys.stderr, flush=True)
    return results


def summarize(results: list[PointResult]) -> dict[str, object]:
    by_scenario: dict[str, dict[str, int]] = {}
    for result in results:
        row = by_scenario.setdefault(result.scenario, {"points": 0, "survived": 0,
                                                       "finished_before_kill": 0,
                                                       "with_journal": 0})
        row["points"] += 1
        row["survived"] += result.survived
        row["finished_before_kill"] += result.finished_before_kill
        row["with_journal"] += result.journal_entries > 0
    failures = [asdict(r) for r in results if not r.survived]
    return {"points": len(results), "survived": sum(r.survived for r in results),
            "scenarios": by_scenario, "failures": failures}


@contextlib.contextmanager
def campaign_dir(out: Path | None) -> Iterator[Path]:
    if out is not None:
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="kill-campaign-", dir="/var/tmp") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100, help="kill points in all")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="run only these scenarios (repeat); default all")
    parser.add_argument("--out", type=Path, help="keep images and results here (failed "
                        "points keep their images for inspection)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill times")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("kill campaign: run as root (loop devices, mounts)", file=sys.stderr)
        return 2
    with campaign_dir(args.out) as out:
        samples = build_samples(out / "samples")
        results = run_campaign(samples, out, args.points, args.scenario, args.seed,
                               progress=True)
    summary = summarize(results)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"{summary['survived']} of {summary['points']} kill points survived")
        for name, row in summary["scenarios"].items():  # type: ignore[attr-defined]
            print(f"  {name:14} {row['survived']:3}/{row['points']:3} survived, "
                  f"{row['with_journal']} with a partial journal, "
                  f"{row['finished_before_kill']} finished before the kill")
        for failure in summary["failures"]:  # type: ignore[attr-defined]
            print(json.dumps(failure))
    return 0 if summary["survived"] == summary["points"] else 1


if __name__ == "__main__":
    sys.exit(main())
