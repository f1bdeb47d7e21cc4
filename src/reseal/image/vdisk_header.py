"""Read a virtual disk's own header before qemu ever opens it, and refuse every reference to
another file that the user did not name.

A qcow2, vmdk, vhdx or vhd file is data from the image's author, and qemu follows what such a
header says: a qcow2 backing file or external data file, a vmdk extent or parent, anywhere on
the host, even a `json:{...}` pseudo-filename or a network URL. reseal runs as root, so any of
these would let an image read (or, for data files and extents, write) host files. This module
parses the headers itself, with every size and offset bounded by the file's real size, and
returns the chain of files qemu may open: the image, the vmdk extents beside it (inside its
own directory), and the backing files the user allowed by name (`--allow-backing PATH`).
`reseal.image.container` then gives qemu exactly those files as explicit, read-only-below
nodes (`backing: null` at the bottom), so qemu has no file name of its own to follow.

What qemu does is mirrored where it matters (e.g. where it reads a vmdk's parent hint), and is
otherwise over-approximated: anything that could name a file is checked.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reseal.errors import BadInput, CorruptData, Refused

MAX_CHAIN = 16  # backing files below one image
QCOW2_MAX_BACKING_NAME = 1023  # qemu refuses longer names
QCOW2_MAX_CLUSTER_BITS = 21
QCOW2_INCOMPAT_DATA_FILE = 1 << 2
QCOW2_EXT_END = 0
QCOW2_EXT_BACKING_FORMAT = 0xE2792ACA
QCOW2_EXT_DATA_FILE = 0x44415441
VMDK_DESC_LIMIT = (1 << 20) - 1  # qemu reads at most this much descriptor text
VMDK_PARENT_WINDOW = 20 * 512  # where qemu looks for parentFileNameHint
VMDK_SPARSE_DESC_OFFSET = 0x200
VMDK_EXTENT_ACCESS = ("RW", "RDONLY", "NOACCESS")
VHDX_REGION_TABLE = 192 * 1024
VHDX_METADATA_REGION = uuid.UUID("8b7ca206-4790-4b9a-b8fe-575f050f886e").bytes_le
VHDX_FILE_PARAMETERS = uuid.UUID("caa16737-fa36-4d43-b3b6-33f0aa44e76b").bytes_le
VHDX_PARENT_LOCATOR = uuid.UUID("a8d35f2d-b30b-454d-abf7-d3d84834ab0c").bytes_le
VHDX_HAS_PARENT = 0x2
VHD_DIFFERENCING = 4
BACKING_FORMATS = ("raw", "qcow2", "vmdk", "vhdx", "vpc")
C_SPACE = " \t\n\v\f\r"


@dataclass(frozen=True)
class DiskFile:
    """One file of a virtual disk, as qemu will be given it: an explicit node, never a name
    qemu reads from a header."""

    path: Path  # resolved (no symlink left), so qemu opens exactly what was checked
    driver: str  # qemu format driver: "qcow2", "vmdk", "vhdx", "vpc" or "raw"
    block_device: bool = False
    backing: DiskFile | None = None  # only a file the user allowed by name
    extents: tuple[Path, ...] = ()  # vmdk extent files, all inside the image's directory

    def chain(self) -> list[DiskFile]:
        """This file and its backing files, top first."""
        files: list[DiskFile] = []
        node: DiskFile | None = self
        while node is not None:
            files.append(node)
            node = node.backing
        return files


@dataclass(frozen=True)
class _Header:
    backing: str | None = None  # the backing file name as the header writes it
    backing_format: str | None = None
    extents: tuple[str, ...] = ()  # vmdk extent names as the descriptor writes them


def allowed_backing_files(paths: Sequence[str | Path]) -> tuple[Path, ...]:
    """Check `--allow-backing` arguments: each must be an existing regular file or block
    device; returned resolved, so a header's name is compared with the real file."""
    allowed = []
    for given in paths:
        real = Path(os.path.realpath(given))
        _stat(real, f"--allow-backing {given}")
        allowed.append(real)
    return tuple(allowed)


def check_container(image: Path, fmt: str, allowed_backing: Sequence[Path] = ()) -> DiskFile:
    """The files qemu may open for `image` (format `fmt`), after every reference in their
    headers was checked; raises Refused (exit 2) for anything that would reach another file."""
    real = Path(os.path.realpath(image))
    allowed = {Path(os.path.realpath(p)) for p in allowed_backing}
    return _check(real, fmt, allowed, [], str(image))


def _check(path: Path, fmt: str, allowed: set[Path], seen: list[tuple[int, int, str]],
           shown: str) -> DiskFile:
    st = _stat(path, shown)
    identity = (st.st_dev, st.st_ino)
    if any((dev, ino) == identity for dev, ino, _ in seen):
        names = " -> ".join([name for _, _, name in seen] + [str(path)])
        raise Refused(f"{seen[0][2]}: its backing chain loops ({names}); refused")
    if len(seen) > MAX_CHAIN:
        raise Refused(f"{seen[0][2]}: backing chain deeper than {MAX_CHAIN} files; refused")
    seen.append((st.st_dev, st.st_ino, str(path)))
    block = stat.S_ISBLK(st.st_mode)
    header = _read_header(path, fmt, st.st_size if not block else _device_size(path), shown)
    extents = tuple(_check_extent(path, name, shown) for name in header.extents)
    backing = None
    if header.backing:
        backing_path = _allowed_backing(path, header.backing, allowed, shown)
        backing_fmt = _backing_format(backing_path, header.backing_format, shown)
        backing = _check(backing_path, backing_fmt, allowed, seen,
                         f"{shown} (backing file {backing_path})")
    return DiskFile(path, fmt, block, backing, extents)


def _stat(path: Path, shown: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise BadInput(f"{shown}: {exc.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise Refused(f"{shown}: {path} is not a regular file or block device; refused")
    return st


def _device_size(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _read_header(path: Path, fmt: str, size: int, shown: str) -> _Header:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        reader = _Reader(fd, size, shown)
        if fmt == "qcow2":
            return _qcow2(reader)
        if fmt == "vmdk":
            return _vmdk(reader, path, shown)
        if fmt == "vhdx":
            return _vhdx(reader)
        if fmt == "vpc":
            return _vpc(reader)
        return _Header()  # raw: nothing in it names another file
    finally:
        os.close(fd)


class _Reader:
    """pread bounded by the file's real size: a header's offset never reads past the end."""

    def __init__(self, fd: int, size: int, shown: str) -> None:
        self.fd = fd
        self.size = size
        self.shown = shown

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise CorruptData(f"{self.shown}: {what} at byte {offset} (+{length}) lies past the "
                              f"end of the {self.size}-byte file; the image is damaged")
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise CorruptData(f"{self.shown}: short read of {what} at byte {offset}")
        return data

    def read_upto(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`, fewer at the end of the file."""
        if offset >= self.size or offset < 0:
            return b""
        return os.pread(self.fd, min(length, self.size - offset), offset)


# ----------------------------------------------------------------------------- qcow2
def _qcow2(reader: _Reader) -> _Header:
    head = reader.read(0, 72, "the qcow2 header")
    (magic, version, backing_offset, backing_size, cluster_bits) = struct.unpack_from(
        ">4sIQII", head)
    if magic != b"QFI\xfb" or version not in (2, 3):
        raise CorruptData(f"{reader.shown}: not a qcow2 version 2 or 3 header")
    if not 9 <= cluster_bits <= QCOW2_MAX_CLUSTER_BITS:
        raise CorruptData(f"{reader.shown}: qcow2 cluster size 2^{cluster_bits} is invalid")
    cluster = 1 << cluster_bits
    incompatible = 0
    header_length = 72
    if version == 3:
        v3 = reader.read(72, 32, "the qcow2 version 3 header")
        incompatible = struct.unpack_from(">Q", v3, 0)[0]
        header_length = struct.unpack_from(">I", v3, 28)[0]
        if not 104 <= header_length <= cluster:
            raise CorruptData(f"{reader.shown}: qcow2 header length {header_length} is invalid")
    data_file: str | None = None
    backing_format: str | None = None
    # extensions: from the header's end to the backing name (or the first cluster's end)
    end = min(backing_offset if backing_offset else cluster, cluster, reader.size)
    offset = header_length
    while offset + 8 <= end:
        ext_type, ext_len = struct.unpack(">II", reader.read(offset, 8, "a qcow2 extension"))
        if ext_type == QCOW2_EXT_END:
            break
        if ext_len > end - offset - 8:
            raise CorruptData(f"{reader.shown}: qcow2 header extension 0x{ext_type:08x} runs "
                              "past the header")
        body = reader.read(offset + 8, ext_len, "a qcow2 extension")
        if ext_type == QCOW2_EXT_DATA_FILE:
            data_file = _c_string(body)
        elif ext_type == QCOW2_EXT_BACKING_FORMAT:
            backing_format = _c_string(body)
        offset += 8 + ((ext_len + 7) & ~7)
    if incompatible & QCOW2_INCOMPAT_DATA_FILE or data_file is not None:
        named = f" ({data_file!r})" if data_file else ""
        raise Refused(f"{reader.shown}: the qcow2 image keeps its data in an external data "
                      f"file{named}; reseal opens no file an image names; convert it to a "
                      "self-contained image first (qemu-img convert -O qcow2)")
    backing = None
    if backing_offset:
        if backing_size > QCOW2_MAX_BACKING_NAME or backing_offset > cluster:
            raise CorruptData(f"{reader.shown}: qcow2 backing file name at {backing_offset} "
                              f"(+{backing_size}) is invalid")
        backing = _c_string(reader.read(backing_offset, backing_size, "the backing file name"))
    return _Header(backing=backing or None, backing_format=backing_format)


def _c_string(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="surrogateescape")


# ----------------------------------------------------------------------------- vmdk
def _vmdk(reader: _Reader, path: Path, shown: str) -> _Header:
    head = reader.read_upto(0, VMDK_DESC_LIMIT)
    texts: list[str] = []  # every descriptor text qemu may parse extents from
    hint_windows: list[str] = [_c_text(head[:VMDK_PARENT_WINDOW])]
    if head[:4] == b"KDMV":
        if len(head) < 44:
            raise CorruptData(f"{shown}: vmdk sparse header is truncated")
        capacity, _grain, desc_offset, desc_size = struct.unpack_from("<QQQQ", head, 12)
        hint_windows.append(_c_text(reader.read_upto(VMDK_SPARSE_DESC_OFFSET,
                                                     VMDK_PARENT_WINDOW)))
        if desc_offset and desc_size:
            if desc_offset > reader.size // 512:
                raise CorruptData(f"{shown}: vmdk descriptor offset {desc_offset} lies past "
                                  "the end of the file")
            embedded = _c_text(reader.read_upto(desc_offset * 512, VMDK_DESC_LIMIT))
            hint_windows.append(embedded[:VMDK_PARENT_WINDOW])
            if capacity == 0:  # qemu then reads the embedded text as a descriptor file
                texts.append(embedded)
    elif head[:4] == b"COWD":
        hint_windows.append(_c_text(reader.read_upto(VMDK_SPARSE_DESC_OFFSET,
                                                     VMDK_PARENT_WINDOW)))
    else:
        texts.append(_c_text(head))
    extents = tuple(name for text in texts for name in _vmdk_extents(text))
    parents = {hint for window in hint_windows if (hint := _vmdk_parent_hint(window))}
    if len(parents) > 1:
        raise Refused(f"{shown}: the vmdk names {len(parents)} different parent files; refused")
    return _Header(backing=next(iter(parents), None), backing_format="vmdk", extents=extents)


def _c_text(raw: bytes) -> str:
    """What C string functions see: the bytes up to the first NUL."""
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _vmdk_parent_hint(text: str) -> str | None:
    """The parent name the way qemu finds it: the first `parentFileNameHint` anywhere, two
    characters skipped (`="`), up to the next double quote."""
    at = text.find("parentFileNameHint")
    if at < 0:
        return None
    start = at + len("parentFileNameHint") + 2
    end = text.find('"', start)
    name = text[start:end] if end >= 0 else text[start:]
    return name or None


def _vmdk_extents(text: str) -> list[str]:
    """Extent file names of a descriptor: every line start scanned like qemu's
    `sscanf("%10s %ld %10s \\"%511[^\\n\\r\\"]\\"")` (which may run across lines)."""
    names = []
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    for start in starts:
        scanned = _scan_extent(text, start)
        if scanned is None:
            continue
        access, kind, name = scanned
        if access in VMDK_EXTENT_ACCESS and kind != "ZERO":
            names.append(name)
    return names


def _scan_extent(text: str, pos: int) -> tuple[str, str, str] | None:
    access, pos = _c_token(text, _c_skip(text, pos), 10)
    if not access:
        return None
    number = re.compile(r"[+-]?[0-9]+").match(text, _c_skip(text, pos))
    if number is None:
        return None
    kind, pos = _c_token(text, _c_skip(text, number.end()), 10)
    if not kind:
        return None
    pos = _c_skip(text, pos)
    if not text.startswith('"', pos):
        return None
    name = re.compile('[^\n\r"]{1,511}').match(text, pos + 1)
    if name is None:
        return None
    return access, kind, name.group()


def _c_skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in C_SPACE:
        pos += 1
    return pos


def _c_token(text: str, pos: int, width: int) -> tuple[str, int]:
    end = pos
    while end < len(text) and end - pos < width and text[end] not in C_SPACE:
        end += 1
    return text[pos:end], end


def _check_extent(descriptor: Path, name: str, shown: str) -> Path:
    """An extent must be a regular file inside the descriptor's own directory."""
    if name.startswith("/"):
        raise Refused(f"{shown}: vmdk extent {name!r} is an absolute path; an extent must be "
                      "a file in the image's own directory; refused")
    if name.startswith("json:"):
        raise Refused(f"{shown}: vmdk extent {name!r} is a json: pseudo-filename; refused")
    directory = descriptor.parent
    real = Path(os.path.realpath(directory / name))
    if not real.is_relative_to(directory) or real == directory:
        raise Refused(f"{shown}: vmdk extent {name!r} resolves to {real}, outside the image's "
                      f"directory {directory}; refused")
    try:
        st = os.stat(real)
    except OSError:
        return real  # qemu says it is missing, with its own message
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{shown}: vmdk extent {name!r} is not a regular file; refused")
    if _is_nested_descriptor(real):
        raise Refused(f"{shown}: vmdk extent {name!r} is itself a descriptor naming further "
                      "files; refused")
    return real


def _is_nested_descriptor(extent: Path) -> bool:
    """A sparse extent with capacity 0 and a descriptor: qemu would parse its extents too."""
    fd = os.open(extent, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        head = os.pread(fd, 44, 0)
    finally:
        os.close(fd)
    if len(head) < 44 or head[:4] != b"KDMV":
        return False
    capacity, _grain, desc_offset = struct.unpack_from("<QQQ", head, 12)
    return capacity == 0 and desc_offset != 0


# ----------------------------------------------------------------------------- vhdx, vhd
def _vhdx(reader: _Reader) -> _Header:
    """A differencing VHDX (HasParent, or a parent locator) depends on another file."""
    table = reader.read(VHDX_REGION_TABLE, 16, "the VHDX region table")
    if table[:4] != b"regi":
        raise CorruptData(f"{reader.shown}: VHDX region table signature missing")
    count = struct.unpack_from("<I", table, 8)[0]
    if count > 2047:
        raise CorruptData(f"{reader.shown}: VHDX region table has {count} entries")
    entries = reader.read(VHDX_REGION_TABLE + 16, 32 * count, "the VHDX region table")
    for index in range(count):
        guid, offset, length = struct.unpack_from("<16sQI", entries, 32 * index)
        if guid == VHDX_METADATA_REGION:
            _vhdx_metadata(reader, offset, length)
    return _Header()


def _vhdx_metadata(reader: _Reader, region: int, region_length: int) -> None:
    head = reader.read(region, 32, "the VHDX metadata table")
    if head[:8] != b"metadata":
        raise CorruptData(f"{reader.shown}: VHDX metadata table signature missing")
    count = struct.unpack_from("<H", head, 10)[0]
    if count > 2047 or 32 + 32 * count > region_length:
        raise CorruptData(f"{reader.shown}: VHDX metadata table has {count} entries")
    entries = reader.read(region + 32, 32 * count, "the VHDX metadata table")
    for index in range(count):
        guid, offset, length = struct.unpack_from("<16sII", entries, 32 * index)
        if guid == VHDX_PARENT_LOCATOR:
            raise _differencing(reader.shown, "VHDX")
        if guid == VHDX_FILE_PARAMETERS and length >= 8:
            if offset + 8 > region_length:
                raise CorruptData(f"{reader.shown}: VHDX file parameters lie outside the "
                                  "metadata region")
            flags = struct.unpack("<I", reader.read(region + offset + 4, 4,
                                                    "the VHDX file parameters"))[0]
            if flags & VHDX_HAS_PARENT:
                raise _differencing(reader.shown, "VHDX")


def _vpc(reader: _Reader) -> _Header:
    """A differencing VHD (disk type 4) depends on its parent file."""
    for offset in (0, reader.size - 512, reader.size - 511):
        footer = reader.read_upto(offset, 512)
        if footer[:8] == b"conectix" and len(footer) >= 64:
            if struct.unpack_from(">I", footer, 60)[0] == VHD_DIFFERENCING:
                raise _differencing(reader.shown, "VHD")
            return _Header()
    raise CorruptData(f"{reader.shown}: no VHD footer found")


def _differencing(shown: str, kind: str) -> Refused:
    return Refused(f"{shown}: a differencing {kind} depends on a parent file; reseal opens no "
                   f"file an image names; merge it into a self-contained {kind} first")


# ----------------------------------------------------------------------------- backing files
def _allowed_backing(image: Path, name: str, allowed: set[Path], shown: str) -> Path:
    """The backing file a header names, if the user allowed exactly that file."""
    if name.startswith("json:"):
        raise Refused(f"{shown}: the image names its backing file with a json: pseudo-filename "
                      "(which can open any host file or network source); refused")
    slash, colon = name.find("/"), name.find(":")
    if colon > 0 and (slash < 0 or colon < slash):
        raise Refused(f"{shown}: backing file {name!r} is a qemu protocol name, not a file; "
                      "refused")
    resolved = Path(os.path.realpath(image.parent / name))
    if resolved not in allowed:
        named = repr(name) if name == str(resolved) else f"{name!r} ({resolved})"
        raise Refused(f"{shown}: the image has a backing file {named}; reseal opens no file an "
                      f"image names unless you allow it: --allow-backing {resolved}")
    return resolved


def _backing_format(path: Path, declared: str | None, shown: str) -> str:
    """The format the backing file is opened with: raw when the header says so (raw opens
    nothing else), otherwise what its content is."""
    if declared is not None and declared not in BACKING_FORMATS:
        raise Refused(f"{shown}: backing format {declared!r} is not one reseal opens; refused")
    if declared == "raw":
        return "raw"
    from reseal.image.container import content_format

    return content_format(path)
