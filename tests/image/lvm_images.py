"""Disk images with a real LVM layout, made by Debian's lvm2 tools (not by reseal).

pvcreate/vgcreate write labels and metadata without device-mapper; lvcreate/lvextend run with
`--driverloaded n` (no activation, no zeroing), so they only write metadata, which is all an
image needs. Every command sees only the test's own loop devices (`--devices`), keeps no
backups and no hints on the host, and the loop devices are detached at the end. The file
systems inside the logical volumes are made with mkfs at the byte offsets `lvs`/`pvs` report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
LVM_TYPE = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
LVM_CONFIG = ("devices{obtain_device_list_from_udev=0 use_devicesfile=0 hints=\"none\"} "
              "activation{udev_sync=0 udev_rules=0 monitoring=0} "
              "backup{backup=0 archive=0} log{verbose=0}")
LVM_TOOLS = ("pvcreate", "vgcreate", "lvcreate", "lvextend", "pvs", "vgs", "lvs", "mkfs.ext4",
             "mkswap", "sfdisk", "debugfs", "blkid")
VG = "vgsys"
MASTER_HOST = "lvm-master"
MASTER_ID = "4c1d3a5e6f708192a3b4c5d6e7f80912"


def missing_tools() -> list[str]:
    return [tool for tool in LVM_TOOLS if shutil.which(tool) is None]


def run(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                          env={**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


@contextlib.contextmanager
def loops(image: Path, ranges: list[tuple[int, int]], read_only: bool = False
          ) -> Iterator[list[str]]:
    """One loop device per (start, size) byte range of `image`; detached on exit (retried for
    a bounded time when another mount namespace briefly holds them)."""
    devices: list[str] = []
    try:
        for start, size in ranges:
            argv = ["losetup", "--find", "--show", "-o", str(start), "--sizelimit", str(size)]
            devices.append(run(*argv, *(["-r"] if read_only else []), str(image)).strip())
        yield devices
    finally:
        for device in devices:
            deadline = time.monotonic() + 30
            while subprocess.run(["losetup", "-d", device], capture_output=True).returncode:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"losetup -d {device}: still busy after 30 s")
                time.sleep(0.5)


def lvm(command: str, devices: list[str], *args: str) -> str:
    extra = ["--driverloaded", "n"] if command.startswith("lv") and command not in ("lvs",) else []
    return run(command, "--devices", ",".join(devices), "--config", LVM_CONFIG, *extra, *args)


def report(command: str, devices: list[str], fields: str) -> list[dict[str, str]]:
    """`pvs`/`vgs`/`lvs` rows as dictionaries (sizes in bytes)."""
    out = lvm(command, devices, "--reportformat", "json", "--units", "b", "--nosuffix",
              "-o", fields)
    reports = json.loads(out)["report"]
    key = {"pvs": "pv", "vgs": "vg", "lvs": "lv"}[command]
    return [row for block in reports for row in block.get(key, [])]


@dataclass
class LvmImage:
    path: Path
    partitions: dict[str, tuple[int, int]]  # "boot", "pv1", "pv2" -> (start, size) in bytes
    lv_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)  # linear LVs
    facts: dict[str, str] = field(default_factory=dict)

    def pv_ranges(self) -> list[tuple[int, int]]:
        return [self.partitions["pv1"], self.partitions["pv2"]]


def lvm_report(image: LvmImage, command: str, fields: str) -> list[dict[str, str]]:
    """What Debian's lvm2 reads from the image's PVs (through read-only loop devices); the
    loop devices' names in the values are given as "pv1" and "pv2", which do not change."""
    with loops(image.path, image.pv_ranges(), read_only=True) as devices:
        rows = report(command, devices, fields)
    names = {device: f"pv{n}" for n, device in enumerate(devices, start=1)}
    pattern = re.compile("|".join(re.escape(d) + r"(?!\d)" for d in devices))
    return [{key: pattern.sub(lambda m: names[m.group(0)], value) for key, value in row.items()}
            for row in rows]


def _lv_ranges(image: LvmImage, devices: list[str]) -> dict[str, tuple[int, int]]:
    starts = {row["pv_name"]: int(row["pe_start"]) for row in report("pvs", devices,
                                                                        "pv_name,pe_start")}
    extent = int(report("vgs", devices, "vg_extent_size")[0]["vg_extent_size"])
    bases = dict(zip(devices, (image.partitions["pv1"][0], image.partitions["pv2"][0]),
                     strict=True))
    ranges: dict[str, tuple[int, int]] = {}
    for row in report("lvs", devices, "lv_name,seg_pe_ranges,seg_size"):
        if " " in row["seg_pe_ranges"]:
            continue  # striped: no single range
        device, extents = row["seg_pe_ranges"].split(":")
        first = int(extents.split("-")[0])
        if row["lv_name"] not in ranges:
            ranges[row["lv_name"]] = (bases[device] + starts[device] + first * extent,
                                      int(row["seg_size"]))
    return ranges


def _write(root: Path, path: str, text: str) -> None:
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(text)


def build_lvm_image(path: Path, work: Path) -> LvmImage:
    """GPT: p1 ext4 /boot (found by PARTUUID), p2 and p3 LVM PVs (p2 with two metadata
    copies) in VG vgsys: linear root (ext4 Debian), swap and var (ext4, /var/log with logs);
    `home` extended into two separate ranges and `fast` striped over both PVs (reseal refuses
    to attach those two, with the reason)."""
    parts = {"boot": (1 * MIB, 24 * MIB), "pv1": (25 * MIB, 96 * MIB),
             "pv2": (121 * MIB, 24 * MIB)}
    with open(path, "wb") as handle:
        handle.truncate(146 * MIB)
    boot_guid = str(uuid.uuid4())
    table = ["label: gpt", "unit: sectors",
             f"start=2048, size={24 * 2048}, type={LINUX_FS_TYPE}, uuid={boot_guid}, name=boot",
             f"start={25 * 2048}, size={96 * 2048}, type={LVM_TYPE}, name=pv1",
             f"start={121 * 2048}, size={24 * 2048}, type={LVM_TYPE}, name=pv2"]
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(path), stdin="\n".join(table) + "\n")
    image = LvmImage(path, parts)
    with loops(path, image.pv_ranges()) as devices:
        pv1, pv2 = devices
        lvm("pvcreate", [pv1], "--pvmetadatacopies", "2", "--metadatasize", "512k", pv1)
        lvm("pvcreate", [pv2], pv2)
        lvm("vgcreate", devices, "-s", "4m", VG, pv1, pv2)
        lvm("lvcreate", devices, "-an", "-Zn", "-L", "48m", "-n", "root", VG, pv1)
        lvm("lvcreate", devices, "-an", "-Zn", "-L", "8m", "-n", "swap", VG, pv1)
        lvm("lvcreate", devices, "-an", "-Zn", "-L", "16m", "-n", "var", VG, pv1)
        lvm("lvcreate", devices, "-an", "-Zn", "-L", "4m", "-n", "home", VG, pv1)
        lvm("lvcreate", devices, "-an", "-Zn", "-L", "4m", "-n", "spacer", VG, pv1)
        lvm("lvextend", devices, "-L", "8m", f"{VG}/home", pv1)
        lvm("lvcreate", devices, "-an", "-Zn", "-i", "2", "-I", "64k", "-L", "8m", "-n", "fast",
            VG, pv1, pv2)
        image.lv_ranges = _lv_ranges(image, devices)
        lvs = {row["lv_name"]: row["lv_uuid"] for row in report("lvs", devices, "lv_name,lv_uuid")}
        vg_uuid = report("vgs", devices, "vg_uuid")[0]["vg_uuid"]
        pv_uuids = {row["pv_name"]: row["pv_uuid"] for row in report("pvs", devices,
                                                                      "pv_name,pv_uuid")}
        backup = work / "vgsys.backup"
        lvm("vgcfgbackup", devices, "-f", str(backup), VG)
    root_uuid, var_uuid, boot_uuid, swap_uuid = (str(uuid.uuid4()) for _ in range(4))
    root_lv_id = lvs["root"].replace("-", "")
    dm_uuid = f"LVM-{vg_uuid.replace('-', '')}{root_lv_id}"
    root = work / "root"
    _write(root, "/etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
           'VERSION_ID="12"\n')
    _write(root, "/etc/hostname", MASTER_HOST + "\n")
    _write(root, "/etc/machine-id", MASTER_ID + "\n")
    _write(root, "/etc/fstab",
           f"/dev/mapper/{VG}-root / ext4 errors=remount-ro 0 1\n"
           f"PARTUUID={boot_guid} /boot ext4 defaults 0 2\n"
           f"/dev/{VG}/var /var ext4 defaults 0 2\n"
           f"/dev/mapper/{VG}-swap none swap sw 0 0\n")
    _write(root, "/etc/default/grub",
           f'GRUB_CMDLINE_LINUX="rd.lvm.lv={VG}/root resume=/dev/mapper/{VG}-swap"\n')
    _write(root, "/etc/kernel/cmdline",
           f"root=/dev/disk/by-id/dm-uuid-{dm_uuid} ro rd.lvm.lv={VG}/root\n")
    _write(root, f"/etc/lvm/backup/{VG}", backup.read_text())
    _write(root, "/etc/lvm/devices/system.devices",
           "VERSION=1.1.2\n" + "".join(
               f"IDTYPE=devname IDNAME=/dev/sda{n} DEVNAME=/dev/sda{n} "
               f"PVID={pv_uuids[device].replace('-', '')} PART={n}\n"
               for n, device in ((2, pv1), (3, pv2))))
    _write(root, "/root/.bash_history", "ssh admin@10.0.0.1\n")
    (root / "boot").mkdir()
    (root / "var").mkdir()
    (root / "tmp").mkdir(mode=0o1777)
    boot = work / "boot"
    _write(boot, "/grub/grub.cfg",
           "menuentry 'Debian' {\n"
           f"\tsearch --no-floppy --part-uuid --set=root {boot_guid}\n"
           f"\tlinux /vmlinuz root=/dev/mapper/{VG}-root ro rd.lvm.lv={VG}/root\n}}\n"
           "menuentry 'Debian (by LV UUID)' {\n"
           f"\tlinux /vmlinuz root=/dev/disk/by-id/dm-uuid-{dm_uuid} ro\n}}\n")
    _write(boot, "/loader/entries/debian.conf",
           f"title Debian\nlinux /vmlinuz\noptions root=/dev/mapper/{VG}-root "
           f"resume=PARTUUID={boot_guid}\n")
    var = work / "var"
    _write(var, "/log/syslog", "Jan  1 00:00:00 lvm-master kernel: booted\n")
    _write(var, f"/log/journal/{MASTER_ID}/system.journal", "LPKSHHRH")
    _write(var, "/log/apt/history.log", "Start-Date: 2024-01-01\n")
    _write(var, "/cache/apt/archives/bash_5.2_amd64.deb", "!<arch>\n")
    _write(var, "/crash/core.1234", "\x7fELF core")
    _write(var, "/tmp/session-file", "x")
    _mkfs(path, parts["boot"], boot, "boot", boot_uuid)
    _mkfs(path, image.lv_ranges["root"], root, "root", root_uuid)
    _mkfs(path, image.lv_ranges["var"], var, "var", var_uuid)
    start, size = image.lv_ranges["swap"]
    run("dd", "if=/dev/zero", f"of={path}", "bs=1M", f"seek={start // MIB}",
        f"count={size // MIB}", "conv=notrunc", "status=none")
    with loops(path, [(start, size)]) as (device,):
        run("mkswap", "-U", swap_uuid, device)
    image.facts = {"vg_uuid": vg_uuid, "root_lv_uuid": lvs["root"], "home_lv_uuid": lvs["home"],
                   "pv1_uuid": pv_uuids[pv1], "pv2_uuid": pv_uuids[pv2], "boot_guid": boot_guid,
                   "root_uuid": root_uuid, "var_uuid": var_uuid, "swap_uuid": swap_uuid,
                   "dm_uuid": dm_uuid}
    return image


def _mkfs(image: Path, where: tuple[int, int], tree: Path, label: str, fs_uuid: str) -> None:
    start, size = where
    run("mkfs.ext4", "-q", "-F", "-L", label, "-U", fs_uuid, "-d", str(tree), "-E",
        f"offset={start}", str(image), f"{size // 1024}k")


def root_file(image: LvmImage, lv: str, path: str) -> str:
    """A file of an ext4 logical volume, read by debugfs through a read-only loop device."""
    with loops(image.path, [image.lv_ranges[lv]], read_only=True) as (device,):
        return run("debugfs", "-R", f"cat {path}", device)


def copy_image(source: LvmImage, path: Path) -> LvmImage:
    run("cp", "--sparse=always", str(source.path), str(path))
    return LvmImage(path, dict(source.partitions), dict(source.lv_ranges), dict(source.facts))
