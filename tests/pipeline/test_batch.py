"""Batches: isolation of failures, resume after a kill, clones with distinct identities."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from reseal.errors import BadInput, Refused
from reseal.operations import all_operations
from reseal.pipeline.answerfile import load_answer_file
from reseal.pipeline.batch import read_records, run_batch
from reseal.pipeline.runner import RunSettings, run_generalize

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
MASTER_HOST = "master-01"
MASTER_ID = "0123456789abcdef0123456789abcdef"


def _require(*names: str) -> None:
    known = {op.name for op in all_operations()}
    missing = [n for n in names if n not in known]
    if missing:
        pytest.skip(f"operations not available: {', '.join(missing)}")


def _linux_root(root: Path, hostname: str = MASTER_HOST) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Debian GNU/Linux"\n')
    (root / "etc/hostname").write_text(hostname + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n")
    (root / "etc/machine-id").write_text(MASTER_ID + "\n")
    return root


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "reseal", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def _state(state_dir: Path) -> dict[str, dict[str, object]]:
    return json.loads((state_dir / "state.json").read_text())["machines"]  # type: ignore[no-any-return]


def _ok_counts(state_dir: Path) -> Counter[str]:
    return Counter(r["machine"] for r in read_records(state_dir) if r["status"] == "ok")


def test_one_failing_machine_does_not_stop_the_others(tmp_path: Path) -> None:
    _require("linux-hostname")
    for name in ("a", "c"):
        _linux_root(tmp_path / name)
    (tmp_path / "b").mkdir()  # no operating system: this machine fails
    answer = tmp_path / "batch.yaml"
    answer.write_text("""
os: linux
machines:
  - {hostname: web-a, target: a}
  - {hostname: web-b, target: b}
  - {hostname: web-c, target: c}
batch:
  state_dir: state
  jobs: 2
""")
    first = _cli("batch", str(answer), cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    lines = first.stdout.splitlines()
    assert sum(1 for line in lines if line.startswith("[")) == 3  # plain progress lines
    assert any(line.startswith("web-b") and "failed" in line for line in lines)
    assert (tmp_path / "a/etc/hostname").read_text() == "web-a\n"
    assert (tmp_path / "c/etc/hostname").read_text() == "web-c\n"
    state = _state(tmp_path / "state")
    assert {m: s["status"] for m, s in state.items()} == {
        "web-a": "done", "web-b": "failed", "web-c": "done"}
    # Fix the broken target: only the failed machine runs again.
    _linux_root(tmp_path / "b2")
    os.rmdir(tmp_path / "b")
    (tmp_path / "b2").rename(tmp_path / "b")
    second = _cli("batch", str(answer), "--json", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    out = [json.loads(line) for line in second.stdout.splitlines()]
    assert [r["machine"] for r in out[:-1]] == ["web-b"]
    assert out[-1]["summary"] == {"machines": 3, "ok": 3, "failed": 0, "pending": 0,
                                  "run_now": 1, "already_done": 2,
                                  "state_dir": str(tmp_path / "state")}
    assert out[0]["attempt"] == 2 and out[0]["identity"]["hostname"] == "web-b"
    assert _ok_counts(tmp_path / "state") == {"web-a": 1, "web-b": 1, "web-c": 1}


def test_dry_run_makes_and_writes_nothing(tmp_path: Path) -> None:
    _linux_root(tmp_path / "master")
    answer = tmp_path / "batch.yaml"
    answer.write_text("""
os: linux
defaults: {hostname: "lab-{n:02}", machine_sid: random}
count: 3
batch: {master: master, output: out}
""")
    before = {p: p.read_bytes() for p in (tmp_path / "master").rglob("*") if p.is_file()}
    result = _cli("batch", str(answer), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "plan (dry run: nothing made or written)" in result.stdout
    assert f"copy of {tmp_path / 'master'} -> {tmp_path / 'out' / 'lab-03'}" in result.stdout
    # the first machine's change list, planned on the master, as `generalize --dry-run` shows it
    assert f"lab-01, planned on {tmp_path / 'master'}" in result.stdout
    assert re.search(r"linux-hostname +set +/etc/hostname +" + MASTER_HOST + r" +lab-01",
                     result.stdout)
    assert re.search(r"linux-hostname +set +/etc/hosts ", result.stdout)
    assert not (tmp_path / "out").exists()
    as_json = json.loads(_cli("batch", str(answer), "--dry-run", "--json", cwd=tmp_path).stdout)
    assert [m["plan"]["machine"] for m in as_json["machines"]] == ["lab-01", "lab-02", "lab-03"]
    assert "windows-machine-sid" not in as_json["machines"][0]["operations"]  # os: linux
    changes = as_json["file_plan"]["report"]["changes"]
    assert {"/etc/hostname", "/etc/hosts", "/etc/machine-id"} <= {c["where"] for c in changes}
    assert not (tmp_path / "out").exists()
    assert {p: p.read_bytes() for p in (tmp_path / "master").rglob("*") if p.is_file()} == before


def test_bad_answer_file_exits_2_with_the_error_line(tmp_path: Path) -> None:
    answer = tmp_path / "batch.yaml"
    answer.write_text("defaults:\n  hostname: lab-{n}\ncount: 2\nbatch: {mode: clone}\n")
    result = _cli("batch", "batch.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "reseal: error: batch.yaml:4:15: batch.mode: must be copy or overlay")


def test_second_batch_on_the_same_state_is_refused(tmp_path: Path) -> None:
    _linux_root(tmp_path / "master")
    answer = tmp_path / "batch.yaml"
    answer.write_text('defaults: {hostname: "lab-{n}"}\ncount: 1\n'
                      "batch: {master: master, output: out}\n")
    state_dir = tmp_path / "out" / ".reseal-batch"
    state_dir.mkdir(parents=True)
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(Refused, match="another `reseal batch` is running"):
            run_batch(load_answer_file(answer))
    finally:
        os.close(fd)


def test_changed_settings_for_a_done_machine_are_refused(tmp_path: Path) -> None:
    _require("linux-hostname")
    _linux_root(tmp_path / "master")
    answer = tmp_path / "batch.yaml"
    answer.write_text('os: linux\ndefaults: {hostname: "lab-{n}"}\ncount: 2\n'
                      "batch: {master: master, output: out, jobs: 1}\n")
    assert run_batch(load_answer_file(answer)).ok
    answer.write_text(answer.read_text().replace("lab-{n}\"}", "lab-{n}\", seed: 5}"))
    with pytest.raises(BadInput, match="machine lab-1 is already done with other settings"):
        run_batch(load_answer_file(answer))


def test_kill_mid_batch_then_rerun_finishes_each_machine_once(tmp_path: Path) -> None:
    _require("linux-hostname")
    master = _linux_root(tmp_path / "master")
    answer = tmp_path / "batch.yaml"
    answer.write_text("""
os: linux
defaults: {hostname: "node-{n:02}"}
count: 8
batch: {master: master, output: out, jobs: 2}
""")
    state_dir = tmp_path / "out" / ".reseal-batch"
    (state_dir / "locks").mkdir(parents=True)
    # Hold node-03's machine lock: its worker waits, so the kill finds it mid-run.
    fd = os.open(state_dir / "locks" / "node-03.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        batch = subprocess.Popen([PYTHON, "-m", "reseal", "batch", str(answer), "--json"],
                                 cwd=tmp_path, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120  # a guard against hanging, not a timing test
            while len(read_records(state_dir)) < 7 and time.monotonic() < deadline:
                assert batch.poll() is None, "the batch ended while a machine was blocked"
                time.sleep(0.05)
            assert len(read_records(state_dir)) == 7
        finally:
            batch.send_signal(signal.SIGKILL)
            batch.wait()
    finally:
        os.close(fd)  # the rerun's worker may take node-03 now
    _wait_for_no_workers_in(tmp_path)  # the killed batch's workers stop by themselves
    state = _state(state_dir)
    assert state["node-03"]["status"] == "running" and state["node-03"]["attempts"] == 1
    assert sum(1 for s in state.values() if s["status"] == "done") == 7
    rerun = _cli("batch", str(answer), "--json", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    records = [json.loads(line) for line in rerun.stdout.splitlines()]
    assert [r["machine"] for r in records[:-1]] == ["node-03"]
    assert records[0]["attempt"] == 2
    names = [f"node-{n:02}" for n in range(1, 9)]
    assert _ok_counts(state_dir) == dict.fromkeys(names, 1)
    assert all(s["status"] == "done" for s in _state(state_dir).values())
    for name in names:
        assert (tmp_path / "out" / name / "etc/hostname").read_text() == f"{name}\n"
    assert (master / "etc/hostname").read_text() == f"{MASTER_HOST}\n"
    assert not list((tmp_path / "out").glob("*.reseal-partial"))


def _workers_in(directory: Path) -> list[int]:
    """Worker processes (multiprocessing spawn) whose working directory is `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"spawn_main" in cmdline and cwd == str(directory):
            found.append(int(entry.name))
    return found


def _wait_for_no_workers_in(directory: Path) -> None:
    deadline = time.monotonic() + 30  # a guard against hanging, not a timing test
    while _workers_in(directory) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _workers_in(directory) == []


def test_progress_bar_and_plain_lines() -> None:
    import io

    from reseal.pipeline.batch import MachineRecord, Progress

    now = [100.0]
    stream = io.StringIO()
    bar = Progress(3, stream, bar=True, clock=lambda: now[0])
    bar.started("a")
    bar.started("b")
    now[0] += 30
    bar.finished(MachineRecord("a", "ok", 1, None, "copy", 1.0, 0))
    bar.close()
    assert stream.getvalue().endswith(
        "\r[##########....................] 1/3 done, 0 failed, 1 running, 1 pending, "
        "2.0/min \n")
    stream = io.StringIO()
    plain = Progress(2, stream, bar=False)
    plain.started("b")
    plain.finished(MachineRecord("b", "failed", 1, None, "copy", 2.5, 0, error="no OS",
                                 worker="tcp://10.0.0.7:40001"))
    assert stream.getvalue() == "[1/2] b failed 2.5s on tcp://10.0.0.7:40001: no OS\n"


def test_interrupted_in_place_machine_is_undone_before_it_is_redone(tmp_path: Path) -> None:
    _require("linux-hostname")
    target = _linux_root(tmp_path / "t")
    answer = tmp_path / "batch.yaml"
    answer.write_text("os: linux\nmachines:\n  - {hostname: final-name, target: t}\n"
                      "batch: {state_dir: state}\n")
    state_dir = tmp_path / "state"
    # An attempt that changed the target and was killed before it was recorded.
    run_generalize(target, RunSettings(machine="final-name",
                                       request=_request("half-way")),
                   run_dir=state_dir / "runs" / "final-name")
    (state_dir / "state.json").write_text(json.dumps({
        "format": "reseal-batch/1", "answer_file": str(answer),
        "machines": {"final-name": {"status": "running", "attempts": 1, "fingerprint": "x"}}}))
    result = run_batch(load_answer_file(answer))
    assert result.ok and len(result.records) == 1
    report = json.loads(Path(result.records[0].report or "").read_text())
    assert report["identity"]["hostname"]["old"] == MASTER_HOST  # not "half-way"
    assert (target / "etc/hostname").read_text() == "final-name\n"


def _request(hostname: str):  # type: ignore[no-untyped-def]
    from reseal.operations.base import IdentityRequest

    return IdentityRequest(hostname=hostname)


# --- clones of real disk images --------------------------------------------------------


def _need_tools(*tools: str) -> None:
    import shutil

    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="session")
def linux_master(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices and mounts")
    _need_tools("sfdisk", "mke2fs", "mcopy", "debugfs")
    from reseal.samples.builders import build_linux_gpt

    directory = tmp_path_factory.mktemp("linux-master")
    return build_linux_gpt(directory / "master.img", hostname="gold-master")


def _ext4_offset(sample) -> int:  # type: ignore[no-untyped-def]
    root = sample.partitions[1]
    return int(root.start_mib) * 1024 * 1024


def _debugfs_cat(image: Path, offset: int, guest_path: str) -> str:
    """Read a file from the clone's ext4 with e2fsprogs, independently of reseal."""
    proc = subprocess.run(["debugfs", "-R", f"cat {guest_path}", f"{image}?offset={offset}"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_twenty_clones_of_a_linux_image_get_distinct_identities(
        tmp_path: Path, linux_master) -> None:  # type: ignore[no-untyped-def]
    _require("linux-hostname", "linux-machine-id")
    before = _digest(linux_master.path)
    answer = tmp_path / "batch.yaml"
    answer.write_text(f"""
os: linux
defaults: {{hostname: "lab-{{n:03}}"}}
count: 20
operations:
  options:
    linux-machine-id: {{write_new: true}}
batch: {{master: {linux_master.path}, output: out, mode: copy, jobs: 2}}
""")
    result = run_batch(load_answer_file(answer))
    assert result.ok, [r.error for r in result.records if r.error]
    offset = _ext4_offset(linux_master)
    hostnames, machine_ids = set(), set()
    for n in range(1, 21):
        clone = tmp_path / "out" / f"lab-{n:03}.img"
        hostnames.add(_debugfs_cat(clone, offset, "/etc/hostname"))
        machine_ids.add(_debugfs_cat(clone, offset, "/etc/machine-id"))
    assert hostnames == {f"lab-{n:03}" for n in range(1, 21)}
    assert len(machine_ids) == 20
    assert linux_master.facts["machine_id"] not in machine_ids
    assert all(len(m) == 32 for m in machine_ids)
    assert _digest(linux_master.path) == before  # the master is only read
    # reseal's own inspect agrees on one of them
    shown = json.loads(_cli("inspect", "--json", str(tmp_path / "out" / "lab-007.img"),
                            cwd=tmp_path).stdout)
    assert shown["linux"][0]["hostname"] == "lab-007"
    assert shown["linux"][0]["machine_id"] in machine_ids
    sizes = [r.bytes for r in result.records]
    assert all(0 < size < 16 * 1024 * 1024 for size in sizes)  # sparse copies, not 96 MiB


def test_overlay_clones_share_the_master(tmp_path: Path, linux_master) -> None:  # type: ignore[no-untyped-def]
    _require("linux-hostname")
    _need_tools("qemu-img", "qemu-storage-daemon")
    from reseal.pipeline.clone import overlay_backing

    before = _digest(linux_master.path)
    answer = tmp_path / "batch.yaml"
    answer.write_text(f"""
os: linux
defaults: {{hostname: "ovl-{{n}}"}}
count: 3
operations:
  disable: [linux-machine-id]
batch: {{master: {linux_master.path}, output: out, mode: overlay, jobs: 2}}
""")
    result = run_batch(load_answer_file(answer))
    assert result.ok, [r.error for r in result.records if r.error]
    for n in (1, 2, 3):
        clone = tmp_path / "out" / f"ovl-{n}.qcow2"
        assert overlay_backing(clone) == str(linux_master.path.resolve())
        shown = json.loads(_cli("inspect", "--json", str(clone), "--allow-backing",
                                str(linux_master.path), cwd=tmp_path).stdout)
        assert shown["linux"][0]["hostname"] == f"ovl-{n}"
    assert _digest(linux_master.path) == before
    assert all(r.bytes < 8 * 1024 * 1024 for r in result.records)


WINDOWS_HIVES = {
    "SAM": "hives/dfir-artifact-museum/Win10-RathbunVM/SAM",
    "SECURITY": "hives/dfir-artifact-museum/Win10-RathbunVM/SECURITY",
    "SYSTEM": "hives/regipy/SYSTEM.xz",
}
MASTER_SID = "S-1-5-21-2290304894-658537038-505560459"


def _sam_sid(sam: Path) -> str:
    """The machine SID from SAM\\Domains\\Account V, read with python-registry."""
    import struct

    from Registry import Registry  # python-registry, an independent reader

    value = Registry.Registry(str(sam)).open("SAM\\Domains\\Account").value("V").value()
    a, b, c = struct.unpack("<3I", value[-12:])
    return f"S-1-5-21-{a}-{b}-{c}"


def test_windows_clones_get_distinct_machine_sids(tmp_path: Path, shared_dir: Path) -> None:
    _require("windows-machine-sid", "windows-computer-name")
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import copy_shared_hive  # type: ignore[import-not-found]

    config = tmp_path / "master" / "Windows" / "System32" / "config"
    for name, relative in WINDOWS_HIVES.items():
        copy_shared_hive(shared_dir / relative, config, name)
    assert _sam_sid(config / "SAM") == MASTER_SID
    answer = tmp_path / "batch.yaml"
    answer.write_text("""
os: windows
defaults: {hostname: "PC-{n:02}", machine_sid: random}
count: 3
operations:
  disable: [windows-leftovers, windows-clone-ids, windows-hardware-bindings, windows-file-acls]
batch: {master: master, output: out, jobs: 2}
""")
    result = run_batch(load_answer_file(answer))
    assert result.ok, [r.error for r in result.records if r.error]
    sids = {_sam_sid(tmp_path / "out" / f"PC-{n:02}" / "Windows/System32/config/SAM")
            for n in (1, 2, 3)}
    assert len(sids) == 3 and MASTER_SID not in sids
    assert sids == {r.identity["machine-sid"] for r in result.records}
    assert {r.identity["computer-name"] for r in result.records} == {"PC-01", "PC-02", "PC-03"}
    assert _sam_sid(config / "SAM") == MASTER_SID


PROJECT_HIVES = REPO / "fixtures" / "hives"


def _computer_name(system: Path) -> str:
    from Registry import Registry

    hive = Registry.Registry(str(system))
    select = hive.open("Select").value("Current").value()
    key = hive.open(f"ControlSet{select:03d}\\Control\\ComputerName\\ComputerName")
    return str(key.value("ComputerName").value())


def test_twenty_windows_clones_get_distinct_sids_and_names(tmp_path: Path) -> None:
    _require("windows-machine-sid", "windows-computer-name")
    names = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY")
    if not all((PROJECT_HIVES / name).is_file() for name in names):
        pytest.skip(f"project hives not built in {PROJECT_HIVES} (scripts/build_fixture_hives.py)")
    import shutil

    config = tmp_path / "master" / "Windows" / "System32" / "config"
    config.mkdir(parents=True)
    for name in names:
        shutil.copyfile(PROJECT_HIVES / name, config / name)
    master_sid = _sam_sid(config / "SAM")
    master_name = _computer_name(config / "SYSTEM")
    answer = tmp_path / "batch.yaml"
    answer.write_text("""
os: windows
defaults: {hostname: "WIN-{n:03}", machine_sid: random}
count: 20
batch: {master: master, output: out, jobs: 2}
""")
    result = run_batch(load_answer_file(answer))
    assert result.ok, [r.error for r in result.records if r.error]
    sids, computer_names = set(), set()
    for n in range(1, 21):
        clone_config = tmp_path / "out" / f"WIN-{n:03}" / "Windows/System32/config"
        sids.add(_sam_sid(clone_config / "SAM"))
        computer_names.add(_computer_name(clone_config / "SYSTEM"))
    assert len(sids) == 20 and master_sid not in sids
    assert computer_names == {f"WIN-{n:03}" for n in range(1, 21)}
    assert master_name not in computer_names
    assert _sam_sid(config / "SAM") == master_sid  # the master is only read
