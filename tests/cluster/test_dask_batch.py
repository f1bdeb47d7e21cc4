"""`reseal batch --cluster`: machines as tasks of a real Dask cluster (scheduler and two
workers as separate processes), the same results as the local pool, a worker killed
mid-machine, and a scheduler that is unreachable or goes away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.cluster.daskprocs import DaskCluster, free_port

from reseal.pipeline.batch import read_records

pytest.importorskip("distributed", reason="Dask is not installed (pip install 'reseal[cluster]')")

PYTHON = sys.executable
MACHINES = [f"node-{n:02}" for n in range(1, 9)]


def _answer(directory: Path, master: Path, output: str, count: int = 8) -> Path:
    answer = directory / f"{output}.yaml"
    answer.write_text(f"""
os: linux
defaults: {{hostname: "node-{{n:02}}", seed: 7}}
count: {count}
operations:
  options:
    linux-machine-id: {{write_new: true}}
batch: {{master: {master}, output: {output}, mode: copy}}
""")
    return answer


def _batch(answer: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "reseal", "batch", str(answer), "--json", *args],
                          cwd=answer.parent, capture_output=True, text=True, timeout=timeout)


def _lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _ok_once(state_dir: Path, names: list[str]) -> dict[str, dict[str, object]]:
    """Each machine has exactly one record, and it is ok; returns them by machine."""
    records = read_records(state_dir)
    assert Counter(r["machine"] for r in records) == dict.fromkeys(names, 1), records
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    return {str(r["machine"]): r for r in records}


def _comparable(identity: object) -> dict[str, object]:
    """What the seed decides (SSH host keys come from ssh-keygen, never from the seed)."""
    assert isinstance(identity, dict)
    return {k: v for k, v in identity.items() if "ssh" not in k}


def test_cluster_batch_gives_the_local_pool_result_and_refuses_an_unfit_worker(
        tmp_path: Path, linux_master: Path, cluster: DaskCluster) -> None:
    # A third worker that cannot run reseal: none of the tools on its PATH.
    env = {**os.environ, "PATH": str(Path(PYTHON).parent)}
    unfit = cluster.add_worker("unfit", env=env)
    answer = _answer(tmp_path, linux_master, "on-cluster")
    result = _batch(answer, "--cluster", cluster.address)
    assert result.returncode == 0, result.stderr
    unfit_address = unfit.address()
    assert f"worker {unfit_address} refused: missing tools: mount" in result.stderr
    assert "dashboard: http://127.0.0.1:" in result.stderr
    on_cluster = _ok_once(tmp_path / "on-cluster" / ".reseal-batch", MACHINES)
    fit = {w.address() for w in cluster.workers if w is not unfit}
    assert {r["worker"] for r in on_cluster.values()} <= fit
    assert len({r["worker"] for r in on_cluster.values()}) == 2  # both fit workers worked

    local = _batch(_answer(tmp_path, linux_master, "local"), "--jobs", "2")
    assert local.returncode == 0, local.stderr
    on_pool = _ok_once(tmp_path / "local" / ".reseal-batch", MACHINES)
    for name in MACHINES:
        assert _comparable(on_cluster[name]["identity"]) == _comparable(
            on_pool[name]["identity"])
        assert on_pool[name]["worker"] is None
    hostnames = {r["identity"]["hostname"] for r in on_cluster.values()}  # type: ignore[index]
    machine_ids = {r["identity"]["machine-id"] for r in on_cluster.values()}  # type: ignore[index]
    keys = {json.dumps(sorted((k, v) for k, v in r["identity"].items() if "ssh" in k))  # type: ignore[attr-defined]
            for r in on_cluster.values()}
    assert hostnames == set(MACHINES) and len(machine_ids) == 8 and len(keys) == 8


def _holder_of(lock: Path) -> int | None:
    """The process that has `lock` open (the one running that machine), if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == str(lock):
                    return int(entry.name)
            except OSError:
                continue
    return None


def _parent_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


def test_worker_killed_mid_machine_the_machine_is_redone_once_elsewhere(
        tmp_path: Path, linux_master: Path, cluster: DaskCluster) -> None:
    answer = _answer(tmp_path, linux_master, "out")
    state_dir = tmp_path / "out" / ".reseal-batch"
    batch = subprocess.Popen([PYTHON, "-m", "reseal", "batch", str(answer), "--json",
                              "--cluster", cluster.address], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = killed = None
    deadline = time.monotonic() + 300  # a guard against hanging, not a timing test
    while killed is None and batch.poll() is None and time.monotonic() < deadline:
        done = {r["machine"] for r in read_records(state_dir)}
        for name in MACHINES:
            if name in done or not (state_dir / "runs" / name / "journal" /
                                    "entries.jsonl").exists():
                continue
            holder = _holder_of(state_dir / "locks" / f"{name}.lock")
            owner = next((w for w in cluster.workers if holder is not None and
                          _parent_of(holder) == w.process.pid), None)
            if owner is not None:  # mid-change: the journal has entries, no record yet
                owner.kill()
                victim, killed = name, owner
                break
        time.sleep(0.01)
    out, err = batch.communicate(timeout=600)
    assert killed is not None, f"no machine was caught mid-change: {err}"
    assert batch.returncode == 0, err
    records = _ok_once(state_dir, MACHINES)
    survivor = next(w for w in cluster.workers if w is not killed).address()
    assert records[victim]["worker"] == survivor
    assert records[victim]["recovered"] is True  # the dead attempt's clone was made anew
    assert sum(1 for r in records.values() if r["recovered"]) == 1
    assert len(_lines(out)) == 9  # 8 machines, then the summary: each machine reported once
    for name, record in records.items():
        check = subprocess.run([PYTHON, "-m", "reseal", "verify", str(record["target"]),
                                "--report", str(record["report"])],
                               capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"
        loops = subprocess.run(["losetup", "-j", str(record["target"])], capture_output=True,
                               text=True, check=True).stdout
        assert loops == ""  # nothing of the killed attempt still holds the clone


def test_unreachable_scheduler_is_one_clear_error(tmp_path: Path, linux_master: Path) -> None:
    answer = _answer(tmp_path, linux_master, "out", count=2)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    result = _batch(answer, "--cluster", address, timeout=120)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("reseal: error")]
    assert len(errors) == 1 and f"{address}: cannot reach the Dask scheduler" in errors[0]
    assert "Traceback" not in result.stderr
    assert read_records(tmp_path / "out" / ".reseal-batch") == []
    bad = _batch(answer, "--cluster", "127.0.0.1:8786")
    assert bad.returncode == 2 and "write tcp://HOST:PORT" in bad.stderr


def test_scheduler_gone_mid_run_then_local_resume_finishes_each_machine_once(
        tmp_path: Path, linux_master: Path, cluster: DaskCluster) -> None:
    answer = _answer(tmp_path, linux_master, "out")
    state_dir = tmp_path / "out" / ".reseal-batch"
    batch = subprocess.Popen([PYTHON, "-m", "reseal", "batch", str(answer), "--json",
                              "--cluster", cluster.address], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # a guard against hanging, not a timing test
    while len(read_records(state_dir)) < 2 and time.monotonic() < deadline:
        assert batch.poll() is None, batch.communicate()
        time.sleep(0.02)
    cluster.kill_scheduler()
    out, err = batch.communicate(timeout=120)
    assert batch.returncode == 1, err
    errors = [line for line in err.splitlines() if line.startswith("reseal: error")]
    assert len(errors) == 1 and "the Dask scheduler at" in errors[0], err
    assert "run the same `reseal batch` again" in errors[0]
    state = json.loads((state_dir / "state.json").read_text())["machines"]
    unfinished = sorted(name for name, s in state.items() if s["status"] != "done")
    assert unfinished and all(name in errors[0] for name in unfinished[:8])
    # Without --cluster, the same command finishes what the cluster left, here.
    resumed = _batch(answer)
    assert resumed.returncode == 0, resumed.stderr
    _ok_once(state_dir, MACHINES)
    summary = _lines(resumed.stdout)[-1]["summary"]
    assert summary["ok"] == 8 and summary["pending"] == 0  # type: ignore[index]


def test_answer_file_cluster_address_is_checked(tmp_path: Path) -> None:
    from reseal.pipeline.answerfile import AnswerFileError, load_answer_file

    (tmp_path / "master").mkdir()
    answer = tmp_path / "a.yaml"
    answer.write_text('defaults: {hostname: "n-{n}"}\ncount: 1\n'
                      "batch: {master: master, output: out, cluster: 'sched:8786'}\n")
    with pytest.raises(AnswerFileError, match=r"a.yaml:3:47: batch.cluster: 'sched:8786' is "
                       r"not a Dask scheduler address; write tcp://HOST:PORT"):
        load_answer_file(answer)
    answer.write_text(answer.read_text().replace("'sched:8786'", "tcp://sched.lab:8786"))
    assert load_answer_file(answer).batch.cluster == "tcp://sched.lab:8786"  # type: ignore[union-attr]
