"""Partition type identifiers: one table for the whole project.

GPT type GUIDs (lower case, as `reseal.image.partitions` reports them) and MBR type bytes
("0x83"). Everything that names a partition type takes it from here: `inspect`'s type names,
the image layer's "never mounted" set, the sample-image builders and the tests. The GPT values
are checked against util-linux's own table (`sfdisk --label gpt -T`) by the test suite, so a
mistyped digit cannot slip in again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionType:
    ident: str  # GPT: lower-case GUID; MBR: "0x83"
    name: str  # what `inspect` shows
    sfdisk_name: str = ""  # util-linux's name for a GPT type (checked by the tests)

    @property
    def sfdisk_ident(self) -> str:
        """The form sfdisk takes in a script: upper-case GUID, or the MBR hex byte."""
        return self.ident.upper() if len(self.ident) == 36 else self.ident[2:]


ESP = PartitionType("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "EFI system", "EFI System")
MICROSOFT_RESERVED = PartitionType("e3c9e316-0b5c-4db8-817d-f92df00215ae", "Microsoft reserved",
                                   "Microsoft reserved")
MICROSOFT_BASIC_DATA = PartitionType("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
                                     "Microsoft basic data", "Microsoft basic data")
WINDOWS_RECOVERY = PartitionType("de94bba4-06d1-4d40-a16a-bfd50179d6ac", "Windows recovery",
                                 "Windows recovery environment")
LINUX_FILESYSTEM = PartitionType("0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux filesystem",
                                 "Linux filesystem")
LINUX_ROOT_X86_64 = PartitionType("4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "Linux root (x86-64)",
                                  "Linux root (x86-64)")
LINUX_SWAP = PartitionType("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", "Linux swap", "Linux swap")
LINUX_LVM = PartitionType("e6d6d379-f507-44c2-a23c-238f2a3df928", "Linux LVM", "Linux LVM")
LINUX_RAID = PartitionType("a19d880f-05fc-4d3b-a006-743f0f84911e", "Linux RAID", "Linux RAID")
LINUX_HOME = PartitionType("933ac7e1-2eb4-4f13-b844-0e14e2aef915", "Linux home", "Linux home")
BIOS_BOOT = PartitionType("21686148-6449-6e6f-744e-656564454649", "BIOS boot", "BIOS boot")
LINUX_EXTENDED_BOOT = PartitionType("bc13c2ff-59e6-4262-a352-b275fd6f7172",
                                    "Linux extended boot", "Linux extended boot")

MBR_NTFS = PartitionType("0x07", "NTFS/exFAT/HPFS")
MBR_FAT32 = PartitionType("0x0b", "FAT32")
MBR_FAT32_LBA = PartitionType("0x0c", "FAT32 (LBA)")
MBR_FAT16_LBA = PartitionType("0x0e", "FAT16 (LBA)")
MBR_EXTENDED = PartitionType("0x05", "Extended")
MBR_EXTENDED_LBA = PartitionType("0x0f", "Extended (LBA)")
MBR_LINUX_EXTENDED = PartitionType("0x85", "Linux extended")
MBR_WINDOWS_RECOVERY = PartitionType("0x27", "Windows recovery (hidden NTFS)")
MBR_LINUX_SWAP = PartitionType("0x82", "Linux swap")
MBR_LINUX = PartitionType("0x83", "Linux")
MBR_LINUX_LVM = PartitionType("0x8e", "Linux LVM")
MBR_ESP = PartitionType("0xef", "EFI system")

GPT_TYPES: tuple[PartitionType, ...] = (
    ESP, MICROSOFT_RESERVED, MICROSOFT_BASIC_DATA, WINDOWS_RECOVERY, LINUX_FILESYSTEM,
    LINUX_ROOT_X86_64, LINUX_SWAP, LINUX_LVM, LINUX_RAID, LINUX_HOME, BIOS_BOOT,
    LINUX_EXTENDED_BOOT,
)
MBR_TYPES: tuple[PartitionType, ...] = (
    MBR_NTFS, MBR_FAT32, MBR_FAT32_LBA, MBR_FAT16_LBA, MBR_EXTENDED, MBR_EXTENDED_LBA,
    MBR_LINUX_EXTENDED, MBR_WINDOWS_RECOVERY, MBR_LINUX_SWAP, MBR_LINUX, MBR_LINUX_LVM, MBR_ESP,
)
# not a partition table's type: what reseal.image.disk gives a logical volume it attached
LVM_LOGICAL_VOLUME = PartitionType("lvm", "LVM logical volume")
TYPE_NAMES: dict[str, str] = {t.ident: t.name
                              for t in (*GPT_TYPES, *MBR_TYPES, LVM_LOGICAL_VOLUME)}

# Partitions that never hold a file system worth mounting.
NEVER_MOUNTED: frozenset[str] = frozenset(t.ident for t in (
    MICROSOFT_RESERVED, BIOS_BOOT, LINUX_SWAP, MBR_LINUX_SWAP, MBR_EXTENDED, MBR_EXTENDED_LBA,
    MBR_LINUX_EXTENDED))


def type_name(ident: str) -> str:
    """The name `inspect` shows for a partition's type id, "" when it is not in the table."""
    return TYPE_NAMES.get(ident.lower(), "")
