"""End to end: a real Debian master, two clones generalized by reseal, both booted under QEMU.

The booted systems report their own identity on the serial console (a probe unit the master
image carries); the test checks it against what was asked for and against the master.
clone-a also gets new file-system UUIDs (root and swap): its initrd names the swap for resume,
so it must be rewritten or the clone waits ~30 s for the old swap on every boot. Both clones
boot with MACs the master never had: the master's persistent-net rule named its MAC eth0 and
/etc/network/interfaces configures eth0, so each clone must still get a DHCP address.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reseal.linux.initrd import parse_initrd
from reseal.operations.base import IdentityRequest
from reseal.pipeline.runner import RunResult, RunSettings, run_generalize

from .qemu import boot, clone, guest_file, master_image, missing_tools, mounted_root

pytestmark = pytest.mark.slow
OPS = ["linux-hostname", "linux-machine-id", "linux-random-seed", "linux-ssh-hostkeys",
       "linux-net-bindings", "linux-bootloader", "linux-leftovers"]
MACS = {"clone-a": "52:54:00:5e:a1:0a", "clone-b": "52:54:00:5e:a1:0b"}
RESUME_WAIT_S = 30  # initramfs-tools waits ROOTDELAY (30 s) for a resume device


def image_layer_opens_raw() -> bool:
    return importlib.util.find_spec("reseal.image.disk") is not None


def generalize(image: Path, hostname: str, work: Path, extra: tuple[str, ...] = ()) -> RunResult:
    settings = RunSettings(machine=hostname, request=IdentityRequest(hostname=hostname),
                           only=[*OPS, *extra])
    if image_layer_opens_raw():
        return run_generalize(image, settings, run_dir=work / "run")
    with mounted_root(image, work / "mnt") as root:
        return run_generalize(root, settings, run_dir=work / "run")


def initrd_resume(image: Path, initrd: str) -> str:
    """conf/conf.d/resume of the image's initrd, unpacked by the host's zstd/gzip and cpio
    (reseal's parser only says where the compressed part starts)."""
    data = guest_file(image, initrd)
    segments = parse_initrd(data).segments
    offset = 0
    for segment in segments:
        if segment.compression not in ("none", "zeros"):
            break
        offset += len(segment.raw)
    tool = {"zstd": ["zstd", "-dcq"], "gzip": ["gzip", "-dc"], "xz": ["xz", "-dc"]}[
        segment.compression]
    plain = subprocess.run(tool, input=data[offset:], capture_output=True, check=True).stdout
    return subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", "conf/conf.d/resume"],
                          input=plain, capture_output=True, check=True).stdout.decode()


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
        # clone-a also gets new root and swap file-system UUIDs: it must still boot, at once
        extra = ("linux-fs-uuids",) if name == "clone-a" else ()
        results[name] = generalize(images[name], name, work, extra)
        assert results[name].ok, results[name].report.warnings
        assert not [w for w in results[name].report.warnings if "still holds" in w]

    # read back offline, before booting: the initrd names the new swap, the seeds are new
    new_swap = results["clone-a"].report.identity["fs-uuid:p2"]
    assert new_swap.new and new_swap.new != new_swap.old
    (initrd,) = {c.where.split(" ")[0].split(":", 1)[-1]  # "p1:/boot/initrd.img-... (member)"
                 for c in results["clone-a"].report.changes if "/boot/initrd.img" in c.where}
    assert initrd_resume(images["clone-a"], initrd).strip() == f"RESUME=UUID={new_swap.new}"
    assert initrd_resume(images["clone-b"], initrd).strip() == f"RESUME=UUID={new_swap.old}"
    seeds = {guest_file(path, "/var/lib/systemd/random-seed")
             for path in (master, images["clone-a"], images["clone-b"])}
    assert len(seeds) == 3 and all(len(seed) == 512 for seed in seeds)
    rules = guest_file(images["clone-a"], "/etc/udev/rules.d/70-persistent-net.rules").decode()
    assert 'NAME="eth0"' in rules and "52:54:00:aa:bb:01" not in rules

    with ThreadPoolExecutor(max_workers=2) as pool:
        booted = dict(zip(names, pool.map(lambda n: boot(images[n], timeout=420, mac=MACS[n]),
                                          names), strict=True))

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
        # the master's eth0 configuration applies to the clone's new MAC: DHCP answered
        assert probe["ipv4"].startswith("eth0:10.0.2."), booted[name].console[-2000:]
        assert probe["mac"] == MACS[name]
        seen_ids.add(probe["machine-id"])
    assert len(seen_ids) == 2
    new_root = results["clone-a"].report.identity["fs-uuid:p1"]
    assert new_root.new and new_root.new != new_root.old
    assert booted["clone-a"].probe["root-uuid"] == new_root.new
    assert booted["clone-b"].probe["root-uuid"] == new_root.old
    assert booted["clone-a"].probe["swap-uuid"] == new_swap.new
    assert booted["clone-b"].probe["swap-uuid"] == new_swap.old
    assert booted["clone-a"].probe["ssh-ed25519"] != booted["clone-b"].probe["ssh-ed25519"]
    # no resume wait: the kernel reached userspace about as soon as the untouched clone's
    userspace = {n: int(booted[n].probe["userspace-us"]) / 1e6 for n in names}
    assert userspace["clone-a"] < userspace["clone-b"] + RESUME_WAIT_S * 2 / 3, userspace
