"""The inspect report: plain dataclasses, serialised as they are by `--json`."""

from __future__ import annotations

from dataclasses import dataclass, field

from reseal.domain.membership import DomainMembership as DomainMembership
from reseal.image.fstab import FstabEntry

# part of the report, defined beside the check that fills them in
from reseal.linux.lilocheck import LiloImageState as LiloImageState
from reseal.linux.lilocheck import LiloState as LiloState


@dataclass
class PartitionRow:
    volume: str  # "p1", "disk", "root"
    index: int
    start: int
    size: int
    type_id: str
    type_name: str
    fstype: str
    label: str
    uuid: str
    name: str = ""
    guid: str = ""
    bootable: bool = False
    mounted: bool = False
    read_only: bool = True
    notes: list[str] = field(default_factory=list)


@dataclass
class WindowsReport:
    volume: str
    system_root: str
    hive_paths: dict[str, str | None]
    product_name: str | None = None
    build: str | None = None
    edition: str | None = None
    display_version: str | None = None
    architecture: str | None = None
    control_set: int | None = None  # Select\Default: the set used at next boot
    computer_name: str | None = None
    sam_sid: str | None = None
    security_sid: str | None = None
    machine_guid: str | None = None
    membership: str | None = None  # "domain NAME (SID, DNS name)" or "workgroup NAME"
    domain_sid: str | None = None  # PolPrDmS: None for a workgroup member
    domain_dns_name: str | None = None
    machine_account_sid: str | None = None  # PolMachineAccountS (Windows 10+)
    join_pending: str | None = None  # Netlogon JoinDomain: the DC the first start asks
    machine_secret: str | None = None  # "$MACHINE.ACC present, set <time>" (never the secret)
    cached_logons: int | None = None
    absent: list[str] = field(default_factory=list)  # what could not be read, and why


@dataclass
class SshHostKey:
    path: str
    key_type: str
    fingerprint: str  # "SHA256:..." as ssh-keygen -l prints it


@dataclass
class BootLoader:
    name: str  # "GRUB 2", "GRUB legacy", "LILO", "systemd-boot"
    config: str  # guest path of the file it was found by
    root: str | None  # the root file system it boots ("UUID=...", "/dev/sda1")
    lilo: LiloState | None = None  # LILO only: is the installed map current


@dataclass
class LinuxReport:
    volume: str
    os_name: str | None = None
    os_version: str | None = None
    hostname: str | None = None
    machine_id: str | None = None
    ssh_host_keys: list[SshHostKey] = field(default_factory=list)
    boot_loaders: list[BootLoader] = field(default_factory=list)
    fstab: list[FstabEntry] = field(default_factory=list)
    mounted_below_root: dict[str, str] = field(default_factory=dict)  # mount point -> volume
    domain: DomainMembership | None = None  # keytab, Samba secrets, SSSD state
    absent: list[str] = field(default_factory=list)


@dataclass
class LogicalVolumeRow:
    name: str
    uuid: str
    size: int
    layout: str  # "linear", "striped x2", "linear (2 segments)", "thin"...
    volume: str  # the volume key it is opened as ("vgsys-root"), "" when not opened
    note: str = ""  # why it is not opened


@dataclass
class VolumeGroupRow:
    name: str
    uuid: str
    seqno: int
    extent_size: int  # bytes
    physical_volumes: dict[str, str]  # volume key holding the PV -> PV UUID
    logical_volumes: list[LogicalVolumeRow]
    metadata_copies: int
    problem: str = ""


@dataclass
class InspectReport:
    source: str
    kind: str
    table: str
    disk_size: int | None
    disk_guid: str
    partitions: list[PartitionRow]
    windows: list[WindowsReport]
    linux: list[LinuxReport]
    warnings: list[str]
    volume_groups: list[VolumeGroupRow] = field(default_factory=list)
