"""End to end: a real Debian master, two clones generalized by reseal, both booted under QEMU.

The booted systems report their own identity on the serial console (a probe unit the master
image carries); the test checks it against what was asked for and against the master.
"""

from __future__ import annotations

import importlib.util
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reseal.operations.base import IdentityRequest
from reseal.pipeline.runner import RunResult, RunSettings, run_generalize

from .qemu import boot, clone, master_image, missing_tools, mounted_root

pytestmark = pytest.mark.slow
OPS = ["linux-hostname", "linux-machine-id", "linux-ssh-hostkeys", "linux-net-bindings",
       "linux-bootloader", "linux-leftovers"]


def image_layer_opens_raw() -> bool:
    return importlib.util.find_spec("reseal.image.disk") is not None


def generalize(image: Path, hostname: str, work: Path, extra: tuple[str, ...] = ()) -> RunResult:
    settings = RunSettings(machine=hostname, request=IdentityRequest(hostname=hostname),
                           only=[*OPS, *extra])
    if image_layer_opens_raw():
        return run_generalize(image, settings, run_dir=work / "run")
    with mounted_root(image, work / "mnt") as root:
        return run_generalize(root, settings, run_dir=work / "run")


@pytest.fixture(scope="module")
def master() -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices, mounts and debootstrap")
    missing = missing_tools()
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (see scripts/apt-packages.txt)")
    return master_image()


def test_two_clones_boot_with_their_own_identities(master: Path, tmp_path: Path) -> None:
    names = ["clone-a", "clone-b"]
    results: dict[str, RunResult] = {}
    images: dict[str, Path] = {}
    for name in names:
        work = tmp_path / name
        work.mkdir()
        images[name] = clone(master, work / "disk.raw")
        # clone-a also gets a new root file-system UUID: it must still boot
        extra = ("linux-fs-uuids",) if name == "clone-a" else ()
        results[name] = generalize(images[name], name, work, extra)
        assert results[name].ok, results[name].report.warnings
        assert not [w for w in results[name].report.warnings if "still holds" in w]

    with ThreadPoolExecutor(max_workers=2) as pool:
        booted = dict(zip(names, pool.map(lambda n: boot(images[n], timeout=300), names),
                          strict=True))

    master_id = results["clone-a"].report.identity["machine-id"].old
    master_print = results["clone-a"].report.identity["ssh-host-key:ed25519"].old
    assert master_id and re.fullmatch(r"[0-9a-f]{32}", master_id)
    seen_ids = set()
    for name in names:
        probe = booted[name].probe
        assert probe.get("done") is not None, booted[name].console[-3000:]
        identity = results[name].report.identity
        assert probe["hostname"] == name
        assert re.fullmatch(r"[0-9a-f]{32}", probe["machine-id"])
        assert probe["machine-id"] != master_id
        assert probe["dbus-id"] == probe["machine-id"]
        assert probe["ssh-ed25519"] == identity["ssh-host-key:ed25519"].new
        assert probe["ssh-ed25519"] != master_print
        seen_ids.add(probe["machine-id"])
    assert len(seen_ids) == 2
    new_root = results["clone-a"].report.identity["fs-uuid:p1"]
    assert new_root.new and new_root.new != new_root.old
    assert booted["clone-a"].probe["root-uuid"] == new_root.new
    assert booted["clone-b"].probe["root-uuid"] == new_root.old
    assert booted["clone-a"].probe["ssh-ed25519"] != booted["clone-b"].probe["ssh-ed25519"]
