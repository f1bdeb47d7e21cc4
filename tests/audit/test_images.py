"""`reseal audit images` on the sample images: raw copies of a master show every identity it
holds as a collision; clones made by `reseal batch` share none at medium or high severity."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.audit.conftest import RESEAL

pytestmark = [pytest.mark.root, pytest.mark.slow]
DISK_KINDS = {"disk-guid", "partition-guid", "mbr-signature", "fs-uuid"}


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices and mounts")
    from reseal.samples.catalog import build_all

    out = tmp_path_factory.mktemp("audit-samples")
    build_all(out)
    return out


def _audit(*args: str, cwd: Path | None = None) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([RESEAL, "audit", "images", *args, "--json"], capture_output=True,
                          text=True, timeout=600, check=False, cwd=cwd)
    assert proc.returncode in (0, 1, 3), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    return dst


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.mark.parametrize("master", ["linux-gpt.img", "windows-gpt.img", "windows7-mbr.img"])
def test_raw_copies_of_a_master_collide_on_every_identity(samples: Path, tmp_path: Path,
                                                          master: str) -> None:
    a = _copy(samples / master, tmp_path / "a.img")
    b = _copy(samples / master, tmp_path / "b.img")
    before = _digest(a)
    code, report = _audit(str(a), str(b), "--html", str(tmp_path / "r.html"))
    assert code == 3
    assert _digest(a) == before  # read-only
    first = report["machines"][0]
    assert first["status"] == "ok"
    assert len(first["identities"]) >= 6
    found = {(f["kind"], f["value"].lower()) for f in report["findings"]}
    for identity in first["identities"]:  # every identity of the master, as a collision
        assert (identity["kind"], identity["value"].lower()) in found, identity
    assert all(f["machines"] == [str(a), str(b)] for f in report["findings"])
    kinds = {f["kind"] for f in report["findings"]}
    if master.startswith("linux"):
        assert {"hostname", "machine-id", "ssh-host-key", "fs-uuid", "disk-guid"} <= kinds
    else:
        assert {"machine-sid", "computer-name", "machine-guid", "sus-client-id",
                "fs-uuid"} <= kinds
        assert ("mbr-signature" if "mbr" in master else "disk-guid") in kinds
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o600


def _batch(tmp_path: Path, master: Path, os_name: str, extra: str) -> list[Path]:
    answer = tmp_path / f"{os_name}.yaml"
    hostname = "lab-{n:02}" if os_name == "linux" else "LAB-PC-{n:02}"
    answer.write_text(
        f"version: 1\nos: {os_name}\n"
        f"defaults:\n  hostname: \"{hostname}\"\n  seed: 11\n{extra}"
        "count: 2\n"
        f"batch:\n  master: {master}\n  output: {tmp_path / os_name}\n  mode: copy\n  jobs: 2\n")
    proc = subprocess.run([RESEAL, "batch", str(answer)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    clones = sorted(p for p in (tmp_path / os_name).iterdir() if p.is_file())
    assert len(clones) == 2
    return clones


def test_batch_clones_share_no_identity(samples: Path, tmp_path: Path) -> None:
    linux = _batch(tmp_path, samples / "linux-gpt.img", "linux",
                   "operations:\n  enable: [linux-fs-uuids, linux-disk-ids]\n  options:\n"
                   "    linux-machine-id:\n      write_new: true\n")
    windows = _batch(tmp_path, samples / "windows-gpt.img", "windows",
                     "  machine_sid: random\noperations:\n  disable: [windows-leftovers]\n")
    code, report = _audit(*map(str, linux + windows))
    assert code == 0, report["findings"]
    assert all(m["status"] == "ok" for m in report["machines"])
    # what is left are disk identifiers no reseal operation changes yet, shown as low
    assert {f["severity"] for f in report["findings"]} <= {"low"}
    assert {f["kind"] for f in report["findings"]} <= DISK_KINDS
    linux_ids = set(map(str, linux))
    linux_left = [f for f in report["findings"] if set(f["machines"]) & linux_ids]
    # linux-fs-uuids and linux-disk-ids renewed the rest: only the ESP's FAT serial is shared
    assert [(f["kind"], f["notes"]) for f in linux_left] == [
        ("fs-uuid", ["seen as: p1 (vfat)"])], linux_left
    # each clone still carries its identities, each its own
    for machine in report["machines"]:
        kinds = {i["kind"] for i in machine["identities"]}
        assert {"machine-id", "hostname", "ssh-host-key"} <= kinds or \
            {"machine-sid", "computer-name", "machine-guid"} <= kinds
    # --fail-on low counts those too
    code_low, _ = _audit(*map(str, linux + windows), "--fail-on", "low")
    assert code_low == 3 if report["findings"] else code_low == 0


def test_unreadable_image_is_listed_and_the_rest_audited(samples: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(1 << 20))
    a = _copy(samples / "linux-mbr.img", tmp_path / "a.img")
    b = _copy(samples / "linux-mbr.img", tmp_path / "b.img")
    code, report = _audit(str(junk), str(a), str(b))
    assert code == 3
    machines = {m["id"]: m for m in report["machines"]}
    assert machines[str(a)]["status"] == machines[str(b)]["status"] == "ok"
    assert machines[str(junk)]["status"] == "error" or not machines[str(junk)]["identities"]
    assert {"hostname", "machine-id"} <= {f["kind"] for f in report["findings"]}


def test_bad_input_exits_2_before_anything_opens(tmp_path: Path) -> None:
    proc = subprocess.run([RESEAL, "audit", "images", str(tmp_path / "missing.img")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("reseal: error: ") and proc.stderr.count("\n") == 1
    real = tmp_path / "x.img"
    real.write_bytes(b"")
    proc = subprocess.run([RESEAL, "audit", "images", str(real), str(real)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "name each image once" in proc.stderr


def test_overlays_are_read_only_with_their_master_allowed(samples: Path, tmp_path: Path) -> None:
    master = samples / "linux-gpt.img"
    overlays = []
    for name in ("a.qcow2", "b.qcow2"):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(master), "-F",
                        "raw", str(tmp_path / name)], check=True)
        overlays.append(str(tmp_path / name))
    code, report = _audit(*overlays)
    assert code == 1  # neither could be read: their backing file was not allowed
    assert all(m["status"] == "error" and "backing file" in m["notes"][0]
               for m in report["machines"])
    code, report = _audit("--allow-backing", str(master), *overlays)
    assert code == 3  # two overlays of one master, never generalized: they collide
    assert {"hostname", "machine-id"} <= {f["kind"] for f in report["findings"]}
