"""Identify a file system (type, label, UUID) from its superblock, and read the NTFS state
(dirty flag, $LogFile clean flag) that decides whether reseal may touch it.

All reads go through a bounded `read(offset, length)` callback limited to the volume, and
every structure field is range-checked before use.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from reseal.errors import CorruptData

ReadFn = Callable[[int, int], bytes]


@dataclass(frozen=True)
class FsInfo:
    fstype: str  # "ntfs", "vfat", "ext2", "ext3", "ext4", "xfs", "btrfs", "swap", ""
    label: str = ""
    uuid: str = ""


def probe(read: ReadFn, size: int) -> FsInfo:
    """Type, label and UUID of the file system in a volume of `size` bytes ("" if unknown)."""

    def safe(offset: int, length: int) -> bytes:
        if offset + length > size:
            return b""
        return read(offset, length)

    boot = safe(0, 512)
    if len(boot) == 512:
        if boot[3:11] == b"NTFS    ":
            serial = struct.unpack_from("<Q", boot, 0x48)[0]
            try:
                label = ntfs_volume_name(safe, size, "NTFS volume")
            except (CorruptData, struct.error):
                label = ""
            return FsInfo("ntfs", label, f"{serial:016X}")
        if boot[82:90] == b"FAT32   ":
            return FsInfo("vfat", _fat_label(boot[71:82]), _fat_serial(boot, 67))
        if boot[54:59] in (b"FAT16", b"FAT12"):
            return FsInfo("vfat", _fat_label(boot[43:54]), _fat_serial(boot, 39))
        if boot[0:4] == b"XFSB":
            return FsInfo("xfs", _cstr(boot[108:120]), str(uuid.UUID(bytes=boot[32:48])))
    ext = safe(1024, 1024)
    if len(ext) == 1024 and ext[56:58] == b"\x53\xef":
        compat, incompat, ro_compat = struct.unpack_from("<III", ext, 92)
        fstype = "ext2"
        if incompat & 0x0040 or incompat & 0x0080 or ro_compat & 0x0008:  # extents, 64bit, huge
            fstype = "ext4"
        elif compat & 0x0004:  # has_journal
            fstype = "ext3"
        return FsInfo(fstype, _cstr(ext[120:136]), str(uuid.UUID(bytes=ext[104:120])))
    btrfs = safe(0x10000, 0x1000)
    if len(btrfs) == 0x1000 and btrfs[0x40:0x48] == b"_BHRfS_M":
        return FsInfo("btrfs", _cstr(btrfs[0x12B:0x22B]), str(uuid.UUID(bytes=btrfs[0x20:0x30])))
    for page in (4096, 8192, 16384, 65536):
        tail = safe(page - 10, 10)
        if tail in (b"SWAPSPACE2", b"SWAP-SPACE"):
            header = safe(1024, 64)
            return FsInfo("swap", _cstr(header[28:44]), str(uuid.UUID(bytes=header[12:28])))
    return FsInfo("")


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", errors="replace").strip()


def _fat_label(raw: bytes) -> str:
    label = raw.decode("ascii", errors="replace").strip()
    return "" if label == "NO NAME" else label


def _fat_serial(boot: bytes, offset: int) -> str:
    serial = struct.unpack_from("<I", boot, offset)[0]
    return f"{serial >> 16:04X}-{serial & 0xFFFF:04X}"


# ------------------------------------------------------------------------- NTFS state
@dataclass(frozen=True)
class NtfsState:
    dirty: bool  # $Volume VOLUME_INFORMATION flag VOLUME_IS_DIRTY
    log_clean: bool  # $LogFile restart area says the volume was shut down cleanly


MFT_RECORD_LOGFILE = 2
MFT_RECORD_VOLUME = 3
ATTR_VOLUME_INFORMATION = 0x70
ATTR_DATA = 0x80
ATTR_END = 0xFFFFFFFF
RESTART_VOLUME_IS_CLEAN = 0x0002
LOGFILE_NO_CLIENT = 0xFFFF


ATTR_VOLUME_NAME = 0x60


def ntfs_volume_name(read: ReadFn, size: int, where: str) -> str:
    """The NTFS volume label ($Volume's VOLUME_NAME attribute)."""
    record = _ntfs_records(read, size, where)
    try:
        raw = _resident_value(record(MFT_RECORD_VOLUME), ATTR_VOLUME_NAME, where)
    except CorruptData:
        return ""
    return raw.decode("utf-16-le", errors="replace")


def ntfs_state(read: ReadFn, size: int, where: str) -> NtfsState:
    """Read the dirty flag and the $LogFile restart area of an NTFS volume."""
    record = _ntfs_records(read, size, where)
    volume_info = _resident_value(record(MFT_RECORD_VOLUME), ATTR_VOLUME_INFORMATION, where)
    dirty = len(volume_info) >= 12 and bool(struct.unpack_from("<H", volume_info, 10)[0] & 1)
    cluster = _ntfs_geometry(read(0, 512), where)[1]
    log_clean = _logfile_clean(record(MFT_RECORD_LOGFILE), read, size, cluster, where)
    return NtfsState(dirty=dirty, log_clean=log_clean)


def _ntfs_geometry(boot: bytes, where: str) -> tuple[int, int, int]:
    """(bytes per sector, bytes per cluster, bytes per MFT record)."""
    bytes_per_sector = struct.unpack_from("<H", boot, 11)[0]
    spc_raw = boot[13]
    sectors_per_cluster = spc_raw if spc_raw <= 0x80 else 1 << (256 - spc_raw)
    if bytes_per_sector not in (512, 1024, 2048, 4096) or not 0 < sectors_per_cluster <= 4096:
        raise CorruptData(f"{where}: NTFS boot sector has an impossible geometry")
    cluster = bytes_per_sector * sectors_per_cluster
    per_record = struct.unpack_from("<b", boot, 64)[0]
    record_size = per_record * cluster if per_record > 0 else 1 << min(-per_record, 31)
    if not 256 <= record_size <= 65536:
        raise CorruptData(f"{where}: NTFS MFT record size {record_size} is impossible")
    return bytes_per_sector, cluster, record_size


def _ntfs_records(read: ReadFn, size: int, where: str) -> Callable[[int], bytes]:
    boot = read(0, 512)
    bytes_per_sector, cluster, record_size = _ntfs_geometry(boot, where)
    mft_lcn = struct.unpack_from("<Q", boot, 48)[0]

    def record(number: int) -> bytes:
        offset = mft_lcn * cluster + number * record_size
        if offset + record_size > size:
            raise CorruptData(f"{where}: the NTFS MFT lies past the end of the volume")
        return _apply_fixups(read(offset, record_size), b"FILE", bytes_per_sector, where)

    return record


def _apply_fixups(raw: bytes, magic: bytes, stride: int, where: str) -> bytes:
    if raw[:4] != magic:
        raise CorruptData(f"{where}: NTFS record without its {magic.decode()} signature")
    usa_offset, usa_count = struct.unpack_from("<HH", raw, 4)
    data = bytearray(raw)
    if usa_count == 0 or usa_offset + 2 * usa_count > len(data) or (usa_count - 1) * stride > len(
        data
    ):
        raise CorruptData(f"{where}: NTFS record with a bad update sequence array")
    check = data[usa_offset : usa_offset + 2]
    for n in range(1, usa_count):
        end = n * stride
        if data[end - 2 : end] != check:
            raise CorruptData(f"{where}: NTFS record torn (update sequence mismatch)")
        data[end - 2 : end] = data[usa_offset + 2 * n : usa_offset + 2 * n + 2]
    return bytes(data)


def _attributes(rec: bytes) -> list[tuple[int, bytes]]:
    offset = struct.unpack_from("<H", rec, 20)[0]
    found = []
    for _ in range(64):
        if offset + 8 > len(rec):
            break
        attr_type, length = struct.unpack_from("<II", rec, offset)
        if attr_type == ATTR_END or length < 16 or offset + length > len(rec):
            break
        found.append((attr_type, rec[offset : offset + length]))
        offset += length
    return found


def _resident_value(rec: bytes, wanted: int, where: str) -> bytes:
    for attr_type, attr in _attributes(rec):
        if attr_type == wanted and attr[8] == 0:
            length, offset = struct.unpack_from("<IH", attr, 16)
            if offset + length <= len(attr):
                return attr[offset : offset + length]
    raise CorruptData(f"{where}: NTFS attribute {wanted:#x} not found")


def _logfile_clean(rec: bytes, read: ReadFn, size: int, cluster: int, where: str) -> bool:
    for attr_type, attr in _attributes(rec):
        if attr_type != ATTR_DATA or attr[8] != 1 or attr[9] != 0:
            continue
        runs = struct.unpack_from("<H", attr, 32)[0]
        if runs >= len(attr):
            break
        header = attr[runs]
        len_size, off_size = header & 0x0F, header >> 4
        if not (0 < len_size <= 8 and 0 < off_size <= 8) or runs + 1 + len_size + off_size > len(
            attr
        ):
            break
        lcn = int.from_bytes(attr[runs + 1 + len_size : runs + 1 + len_size + off_size], "little",
                             signed=True)
        offset = lcn * cluster
        if lcn <= 0 or offset + 4096 > size:
            break
        page = read(offset, 4096)
        if page == b"\xff" * 4096:
            return True  # emptied log: nothing to replay
        if page[:4] != b"RSTR":
            return False
        fixed = _apply_fixups(page, b"RSTR", 512, where)
        area = struct.unpack_from("<H", fixed, 24)[0]
        if area + 16 > len(fixed):
            return False
        in_use, flags = struct.unpack_from("<HH", fixed, area + 12)
        return in_use == LOGFILE_NO_CLIENT or bool(flags & RESTART_VOLUME_IS_CLEAN)
    raise CorruptData(f"{where}: cannot find the NTFS $LogFile data")
