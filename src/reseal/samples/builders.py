"""Build small, sparse sample disk images with the ordinary Debian tools.

Used by the tests and by `make demo`. Partitions are laid out by sfdisk; ext4 is filled with
`mke2fs -d`, FAT with mtools, NTFS through an ntfs-3g mount of a separate file that is then
copied (sparsely) into place. Every builder returns what it put in, for assertions.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reseal.image import parttypes
from reseal.image.attach import private_mount_namespace, start_fuse
from reseal.samples.windows_machine import WindowsMachineSample

MIB = 1 << 20
ESP_TYPE = parttypes.ESP.sfdisk_ident
MSR_TYPE = parttypes.MICROSOFT_RESERVED.sfdisk_ident
BASIC_DATA_TYPE = parttypes.MICROSOFT_BASIC_DATA.sfdisk_ident
LINUX_FS_TYPE = parttypes.LINUX_FILESYSTEM.sfdisk_ident
HIBERNATION_HEADER = b"HIBR" + b"\x00" * 4092


@dataclass(frozen=True)
class PartSpec:
    start_mib: int
    size_mib: int
    type_id: str  # GPT type GUID or MBR hex type ("83", "7", "5")
    name: str = ""
    bootable: bool = False


@dataclass
class SampleImage:
    """A built image and the facts the builder put in (what inspect should find)."""

    path: Path
    kind: str  # "windows-gpt", "windows-mbr", "linux-gpt", "linux-mbr", "qcow2"
    table: str
    partitions: list[PartSpec] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)


def _run(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _partition(image: Path, size_mib: int, table: str, parts: list[PartSpec]) -> None:
    with open(image, "wb") as handle:
        handle.truncate(size_mib * MIB)
    lines = [f"label: {'gpt' if table == 'gpt' else 'dos'}", "unit: sectors"]
    for part in parts:
        line = f"start={part.start_mib * 2048}, size={part.size_mib * 2048}, type={part.type_id}"
        if part.name and table == "gpt":
            line += f', name="{part.name}"'
        if part.bootable:
            line += ", bootable"
        lines.append(line)
    _run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(image), stdin="\n".join(lines) + "\n")


def _mkfs_fat(image: Path, part: PartSpec, volume_id: str, label: str = "") -> None:
    _run("mkfs.fat", "-F", "32", "-s", "1", "-i", volume_id, *(["-n", label] if label else []),
         "--offset",
         str(part.start_mib * 2048), str(image), str(part.size_mib * 1024))


def _fat_put(image: Path, part: PartSpec, files: Mapping[str, bytes], workdir: Path) -> None:
    target = f"{image}@@{part.start_mib * MIB}"
    made: set[str] = set()
    for guest, data in files.items():
        parts = guest.strip("/").split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory not in made:
                _run("mmd", "-D", "s", "-i", target, f"::/{directory}")
                made.add(directory)
        source = workdir / "fat-file"
        source.write_bytes(data)
        _run("mcopy", "-o", "-i", target, str(source), f"::/{guest.strip('/')}")


def _mkfs_ext4(image: Path, part: PartSpec, root: Path, label: str, fs_uuid: str,
               fstype: str = "ext4") -> None:
    _run(f"mkfs.{fstype}", "-q", "-F", "-L", label, "-U", fs_uuid, "-d", str(root), "-E",
         f"offset={part.start_mib * MIB}", str(image), f"{part.size_mib * 1024}k")


@contextlib.contextmanager
def _ntfs_volume(size_mib: int, start_sector: int, label: str, workdir: Path) -> Iterator[
        tuple[Path, Path]]:
    """A fresh NTFS file system in a file, mounted read-write; yields (file, mountpoint)."""
    volume = workdir / f"ntfs-{label}.img"
    with open(volume, "wb") as handle:
        handle.truncate(size_mib * MIB)
    _run("mkntfs", "-q", "-F", "-Q", "-L", label, "-s", "512", "-p", str(start_sector),
         "-H", "255", "-S", "63", str(volume))
    # mkntfs seeds its serial with the clock: two volumes made in one second would share it
    _run("ntfslabel", f"--new-serial={secrets.token_hex(8).upper()}", str(volume))
    mountpoint = workdir / f"mnt-{label}"
    mountpoint.mkdir()
    with private_mount_namespace([workdir]):
        daemon = start_fuse(["ntfs-3g", "-o", "no_detach", str(volume), str(mountpoint)],
                            mountpoint, workdir / f"ntfs-3g-{label}.log")
        try:
            yield volume, mountpoint
        finally:
            daemon.stop()


def _copy_sparse(source: Path, image: Path, offset: int) -> None:
    block = MIB
    zero = bytes(block)
    with open(source, "rb") as src, open(image, "r+b") as dst:
        position = 0
        while chunk := src.read(block):
            if chunk != zero[: len(chunk)]:
                dst.seek(offset + position)
                dst.write(chunk)
            position += len(chunk)


def _write_tree(mountpoint: Path, files: Mapping[str, bytes | Path]) -> None:
    for guest, content in files.items():
        host = mountpoint / guest.strip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, host)
        else:
            host.write_bytes(content)


def _ntfs_partition(image: Path, part: PartSpec, label: str, files: Mapping[str, bytes | Path],
                    workdir: Path, acls: Mapping[str, bytes] | None = None) -> str:
    """Make and fill an NTFS file system, put it in the partition; returns its serial.
    `acls`: guest path -> NTFS security descriptor, set through ntfs-3g's system.ntfs_acl."""
    with _ntfs_volume(part.size_mib, part.start_mib * 2048, label, workdir) as (volume, mnt):
        _write_tree(mnt, files)
        for guest, descriptor in (acls or {}).items():
            os.setxattr(mnt / guest.strip("/"), "system.ntfs_acl", descriptor)
    _copy_sparse(volume, image, part.start_mib * MIB)
    serial = _run("blkid", "-p", "-s", "UUID", "-o", "value", str(volume)).strip()
    volume.unlink()
    return serial


# ------------------------------------------------------------------------- Windows
def windows_tree(hives: Mapping[str, Path], computer_files: bool = True,
                 hibernated: bool = False) -> dict[str, bytes | Path]:
    """Files of a minimal Windows system volume: the hives given, by their file name."""
    files: dict[str, bytes | Path] = {}
    for name, source in hives.items():
        files[f"Windows/System32/config/{name}"] = source
    if computer_files:
        files["Windows/System32/drivers/etc/hosts"] = b"127.0.0.1 localhost\r\n"
        files["Windows/explorer.exe"] = b"MZ sample placeholder\r\n"
    if hibernated:
        files["hiberfil.sys"] = HIBERNATION_HEADER
    return files


def build_windows_gpt(path: Path, hives: Mapping[str, Path], *, hibernated: bool = False,
                      size_mib: int = 128) -> SampleImage:
    """GPT: ESP (FAT32) + MSR + NTFS holding Windows/System32/config hives."""
    parts = [
        PartSpec(1, 34, ESP_TYPE, "EFI system partition"),
        PartSpec(35, 4, MSR_TYPE, "Microsoft reserved partition"),
        PartSpec(39, size_mib - 40, BASIC_DATA_TYPE, "Basic data partition"),
    ]
    _partition(path, size_mib, "gpt", parts)
    with tempfile.TemporaryDirectory(prefix="reseal-sample-") as tmp:
        work = Path(tmp)
        _mkfs_fat(path, parts[0], "5A1E0E5F", "SYSTEM")
        _fat_put(path, parts[0], {
            "EFI/Microsoft/Boot/bootmgfw.efi": b"MZ placeholder boot manager",
            "EFI/Boot/bootx64.efi": b"MZ placeholder fallback loader",
        }, work)
        serial = _ntfs_partition(path, parts[2], "Windows",
                                 windows_tree(hives, hibernated=hibernated), work)
    return SampleImage(path, "windows-gpt", "gpt", parts, {
        "hives": sorted(hives), "esp_uuid": "5A1E-0E5F", "esp_label": "SYSTEM",
        "ntfs_uuid": serial, "ntfs_label": "Windows", "system_root": "/Windows",
    })


def build_windows_mbr(path: Path, hives: Mapping[str, Path], *, size_mib: int = 96) -> SampleImage:
    """MBR, Windows 7 style: "System Reserved" NTFS (active) + NTFS holding Windows."""
    parts = [PartSpec(1, 16, "7", bootable=True), PartSpec(17, size_mib - 18, "7")]
    _partition(path, size_mib, "mbr", parts)
    with tempfile.TemporaryDirectory(prefix="reseal-sample-") as tmp:
        work = Path(tmp)
        reserved = _ntfs_partition(path, parts[0], "System Reserved",
                                   {"bootmgr": b"placeholder boot manager",
                                    "Boot/BCD": b"regf placeholder"}, work)
        serial = _ntfs_partition(path, parts[1], "Windows7", windows_tree(hives), work)
    return SampleImage(path, "windows-mbr", "mbr", parts, {
        "hives": sorted(hives), "reserved_uuid": reserved, "ntfs_uuid": serial,
        "ntfs_label": "Windows7", "system_root": "/Windows",
    })


def build_windows_machine(path: Path, sample: WindowsMachineSample, *, system_mib: int = 112,
                          data_mib: int = 32) -> SampleImage:
    """GPT: ESP + MSR + NTFS "Windows" (the machine) + NTFS "Data" (its second volume), with
    the sample's files and crafted ACLs on both (see reseal.samples.windows_machine)."""
    parts = [
        PartSpec(1, 34, ESP_TYPE, "EFI system partition"),
        PartSpec(35, 4, MSR_TYPE, "Microsoft reserved partition"),
        PartSpec(39, system_mib, BASIC_DATA_TYPE, "Basic data partition"),
        PartSpec(39 + system_mib, data_mib, BASIC_DATA_TYPE, "Basic data partition"),
    ]
    _partition(path, 40 + system_mib + data_mib, "gpt", parts)
    with tempfile.TemporaryDirectory(prefix="reseal-sample-") as tmp:
        work = Path(tmp)
        _mkfs_fat(path, parts[0], "5A1E0E5F", "SYSTEM")
        _fat_put(path, parts[0], {"EFI/Microsoft/Boot/bootmgfw.efi": b"MZ placeholder boot manager"},
                 work)
        system_serial = _ntfs_partition(path, parts[2], "Windows", sample.system_files, work,
                                        sample.system_acls)
        data_serial = _ntfs_partition(path, parts[3], "Data", sample.data_files, work,
                                      sample.data_acls)
    return SampleImage(path, "windows-machine", "gpt", parts, {
        **sample.facts, "ntfs_uuid": system_serial, "data_uuid": data_serial,
        "system_root": "/Windows", "system_volume": "p3", "data_volume": "p4",
    })


# ------------------------------------------------------------------------- Linux
def _ssh_keys(etc_ssh: Path) -> dict[str, str]:
    """Host keys made by ssh-keygen; returns {pub file name: ssh-keygen's SHA256 fingerprint}."""
    etc_ssh.mkdir(parents=True, exist_ok=True)
    fingerprints = {}
    for key_type in ("ed25519", "ecdsa"):
        key = etc_ssh / f"ssh_host_{key_type}_key"
        _run("ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "root@sample", "-f", str(key))
        listing = _run("ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub").split()
        fingerprints[f"{key.name}.pub"] = listing[1]
    return fingerprints


def _linux_etc(root: Path, *, hostname: str, machine_id: str, fstab: str, pretty: str,
               version_id: str) -> dict[str, str]:
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "machine-id").write_text(machine_id + "\n")
    (etc / "fstab").write_text(fstab)
    (etc / "os-release").write_text(
        f'PRETTY_NAME="{pretty}"\nNAME="Debian GNU/Linux"\nVERSION_ID="{version_id}"\n'
        f'VERSION="{version_id} (bookworm)"\nID=debian\n'
    )
    return _ssh_keys(etc / "ssh")


def build_linux_gpt(path: Path, *, hostname: str = "sample-linux", size_mib: int = 96,
                    hostile: str = "") -> SampleImage:
    """GPT: ESP (FAT32, /boot/efi) + ext4 root with /etc, GRUB 2 config, SSH host keys.

    `hostile`: "hostname-link" makes /etc/hostname a link to /etc/../../../../etc/passwd;
    "etc-link" makes /etc itself a link to "/" (both must stay inside the image).
    """
    parts = [PartSpec(1, 34, ESP_TYPE, "EFI system partition"),
             PartSpec(35, size_mib - 36, LINUX_FS_TYPE, "root")]
    root_uuid = str(uuid.uuid4())
    machine_id = uuid.uuid4().hex
    fstab = (f"# /etc/fstab: static file system information.\n"
             f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n"
             f"UUID=5A1E-0E50 /boot/efi vfat umask=0077 0 1\n"
             f"tmpfs /tmp tmpfs defaults 0 0\n")
    _partition(path, size_mib, "gpt", parts)
    with tempfile.TemporaryDirectory(prefix="reseal-sample-") as tmp:
        work = Path(tmp)
        root = work / "root"
        fingerprints = _linux_etc(root, hostname=hostname, machine_id=machine_id, fstab=fstab,
                                  pretty="Debian GNU/Linux 12 (bookworm)", version_id="12")
        (root / "boot" / "grub").mkdir(parents=True)
        (root / "boot" / "efi").mkdir()
        (root / "boot" / "grub" / "grub.cfg").write_text(
            "set default=0\nmenuentry 'Debian GNU/Linux' {\n"
            f"\tsearch --no-floppy --fs-uuid --set=root {root_uuid}\n"
            f"\tlinux /boot/vmlinuz-6.1.0-18-amd64 root=UUID={root_uuid} ro quiet\n"
            "\tinitrd /boot/initrd.img-6.1.0-18-amd64\n}\n"
        )
        if hostile == "hostname-link":
            (root / "etc" / "hostname").unlink()
            (root / "etc" / "hostname").symlink_to("/etc/../../../../etc/passwd")
        elif hostile == "etc-link":
            shutil.rmtree(root / "etc")
            (root / "etc").symlink_to("/")
            (root / "hostname").write_text("inside-the-image\n")
        _mkfs_fat(path, parts[0], "5A1E0E50")
        _fat_put(path, parts[0], {"EFI/debian/grubx64.efi": b"placeholder grub",
                                  "EFI/debian/grub.cfg": f"search.fs_uuid {root_uuid} root\n"
                                  .encode()}, work)
        _mkfs_ext4(path, parts[1], root, "root", root_uuid)
    return SampleImage(path, "linux-gpt", "gpt", parts, {
        "hostname": hostname, "machine_id": machine_id, "root_uuid": root_uuid,
        "esp_uuid": "5A1E-0E50", "ssh_fingerprints": fingerprints, "bootloader": "GRUB 2",
        "boot_root": f"UUID={root_uuid}", "os_name": "Debian GNU/Linux 12 (bookworm)",
    })


def build_linux_mbr(path: Path, *, hostname: str = "sample-lilo", size_mib: int = 64) -> SampleImage:
    """MBR: ext4 root (primary 1, active) + extended with a logical ext2 /home; LILO config."""
    parts = [PartSpec(1, 40, "83", bootable=True), PartSpec(41, size_mib - 42, "5"),
             PartSpec(42, size_mib - 43, "83")]
    root_uuid = str(uuid.uuid4())
    home_uuid = str(uuid.uuid4())
    machine_id = uuid.uuid4().hex
    fstab = f"/dev/sda1 / ext4 defaults 0 1\nUUID={home_uuid} /home ext2 defaults 0 2\n"
    _partition(path, size_mib, "mbr", parts[:2])
    # the logical partition goes inside the extended one
    _run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", "--append", str(path),
         stdin=f"start={parts[2].start_mib * 2048}, size={parts[2].size_mib * 2048}, type=83\n")
    with tempfile.TemporaryDirectory(prefix="reseal-sample-") as tmp:
        work = Path(tmp)
        root = work / "root"
        fingerprints = _linux_etc(root, hostname=hostname, machine_id=machine_id, fstab=fstab,
                                  pretty="Slackware 15.0", version_id="15.0")
        (root / "boot").mkdir()
        (root / "etc" / "lilo.conf").write_text(
            "boot = /dev/sda\nprompt\ntimeout = 50\n"
            "image = /boot/vmlinuz\n  root = /dev/sda1\n  label = Linux\n  read-only\n"
        )
        home = work / "home"
        (home / "user").mkdir(parents=True)
        _mkfs_ext4(path, parts[0], root, "slackroot", root_uuid)
        _mkfs_ext4(path, parts[2], home, "home", home_uuid, fstype="ext2")
    return SampleImage(path, "linux-mbr", "mbr", parts, {
        "hostname": hostname, "machine_id": machine_id, "root_uuid": root_uuid,
        "home_uuid": home_uuid, "ssh_fingerprints": fingerprints, "bootloader": "LILO",
        "boot_root": "/dev/sda1", "os_name": "Slackware 15.0",
    })


def build_qcow2(raw: SampleImage, path: Path) -> SampleImage:
    """A qcow2 copy of a raw sample (same facts)."""
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw.path), str(path))
    return SampleImage(path, "qcow2", raw.table, raw.partitions, {**raw.facts, "of": raw.kind})


def remove_image(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
