"""Read and rewrite an initramfs offline: concatenated cpio archives, each plain or compressed.

An initrd built by initramfs-tools or dracut is one or more "newc" cpio archives (magic
070701, or 070702 with checksums) laid end to end, an uncompressed early archive (CPU
microcode) often first, the main archive compressed with gzip, xz, lzma, bzip2 or zstd. The
kernel unpacks them in order. reseal reads and writes that format with its own code (Python's
zlib/lzma/bz2 and the zstandard binding): nothing from the image is run, and the host's
mkinitramfs/dracut are not needed.

A rewrite changes only the members it must: every other segment keeps its bytes, and a
segment with a changed member is written again with the compression it had (an lz4 or lzo
segment, which this module cannot write, makes the rewrite fail with the reason). The input
is hostile: the unpacked size, member count, name length and every size field are bounded
and checked; a truncated or malformed archive raises `InitrdError`.
"""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

MAX_UNPACKED = 1 << 30  # all segments together; a generic initrd unpacks to a few hundred MiB
MAX_MEMBERS = 200_000
MAX_NAME = 4096
NEWC = b"070701"
NEWC_CRC = b"070702"
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
CHUNK = 1 << 20
ZSTD_MAGIC = 0xFD2FB528
ZSTD_SKIPPABLE = 0x184D2A50  # 0x184D2A50..5F


class InitrdError(Exception):
    """The initrd cannot be read or written; the message says why."""


@dataclass(frozen=True)
class Member:
    """One cpio entry: its header fields as read, its name and its data."""

    name: str
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    devmajor: int
    devminor: int
    rdevmajor: int
    rdevminor: int
    data: bytes
    magic: bytes = NEWC

    @property
    def is_file(self) -> bool:
        return self.mode & 0o170000 == 0o100000

    @property
    def is_trailer(self) -> bool:
        return self.name == TRAILER


@dataclass
class Segment:
    """One stretch of the initrd: plain cpio data, or one compressed stream of it."""

    compression: str  # "none", "gzip", "xz", "lzma", "bzip2", "zstd", "zeros"
    raw: bytes  # the bytes as they are in the file
    members: list[Member] = field(default_factory=list)
    changed: bool = False


@dataclass
class Initrd:
    segments: list[Segment]

    def members(self) -> list[tuple[int, Member]]:
        """(segment index, member) for every member, in unpacking order."""
        return [(n, m) for n, segment in enumerate(self.segments) for m in segment.members]

    def replace_data(self, segment_index: int, name: str, data: bytes) -> None:
        segment = self.segments[segment_index]
        for position, member in enumerate(segment.members):
            if member.name == name:
                segment.members[position] = replace(member, data=data)
                segment.changed = True
                return
        raise KeyError(name)

    def to_bytes(self) -> bytes:
        out = []
        for segment in self.segments:
            if not segment.changed:
                out.append(segment.raw)
                continue
            plain = pack_members(segment.members)
            out.append(compress(segment.compression, plain))
        return b"".join(out)


# ------------------------------------------------------------------ reading
def parse_initrd(data: bytes, max_unpacked: int = MAX_UNPACKED) -> Initrd:
    """Split an initrd into its segments and members."""
    segments: list[Segment] = []
    budget = [max_unpacked]
    members_seen = 0
    offset = 0
    while offset < len(data):
        zeros = _zero_run(data, offset)
        if zeros:
            segments.append(Segment("zeros", data[offset:offset + zeros]))
            offset += zeros
            continue
        kind = _detect(data, offset)
        if kind == "none":
            members, end = _parse_cpio(data, offset, members_seen)
            segments.append(Segment("none", data[offset:end], members))
            members_seen += len(members)
            _spend(budget, end - offset)
            offset = end
            continue
        if kind in ("lz4", "lzo"):
            raise InitrdError(f"a {kind}-compressed segment at byte {offset}: reseal cannot "
                              "rewrite it (gzip, xz, lzma, bzip2 and zstd are supported)")
        if kind == "unknown":
            raise InitrdError(f"unknown data at byte {offset} (not cpio, not a known "
                              "compression)")
        plain, end = _decompress(kind, data, offset, budget)
        members = _parse_archives(plain, members_seen)
        segments.append(Segment(kind, data[offset:end], members))
        members_seen += len(members)
        offset = end
    return Initrd(segments)


def _spend(budget: list[int], amount: int) -> None:
    budget[0] -= amount
    if budget[0] < 0:
        raise InitrdError(f"unpacks to more than {MAX_UNPACKED >> 20} MiB")


def _zero_run(data: bytes, offset: int) -> int:
    end = offset
    while end < len(data) and data[end] == 0:
        end += 1
    return end - offset


def _detect(data: bytes, offset: int) -> str:
    head = data[offset:offset + 8]
    if head[:6] in (NEWC, NEWC_CRC):
        return "none"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"BZh":
        return "bzip2"
    if len(head) >= 4 and struct.unpack_from("<I", head)[0] == ZSTD_MAGIC:
        return "zstd"
    if head[:4] == b"\x02\x21\x4c\x18":
        return "lz4"
    if head[:4] == b"\x89LZO":
        return "lzo"
    if head[:3] == b"\x5d\x00\x00":
        return "lzma"
    return "unknown"


def _decompress(kind: str, data: bytes, offset: int, budget: list[int]) -> tuple[bytes, int]:
    """(plain bytes, offset just past this compressed stream)."""
    if kind == "zstd":
        end = offset + zstd_frame_length(data, offset)
        return _zstd_decompress(data[offset:end], budget), end
    factories: dict[str, Callable[[], _Decompressor]] = {
        "gzip": lambda: _ZlibAdapter(zlib.decompressobj(wbits=31)),
        "xz": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ),
        "lzma": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE),
        "bzip2": lambda: bz2.BZ2Decompressor(),
    }
    decompressor = factories[kind]()
    out = io.BytesIO()
    position = offset

    def take(chunk: bytes) -> None:
        piece = decompressor.decompress(chunk, CHUNK)
        _spend(budget, len(piece))
        out.write(piece)

    try:
        while not decompressor.eof:
            chunk = data[position:position + CHUNK]
            position += len(chunk)
            if not chunk and decompressor.needs_input:
                raise InitrdError(f"the {kind} stream at byte {offset} is truncated")
            take(chunk)
            while not decompressor.eof and not decompressor.needs_input:
                take(b"")
    except (zlib.error, lzma.LZMAError, OSError, EOFError) as exc:
        raise InitrdError(f"the {kind} stream at byte {offset} is damaged ({exc})") from exc
    end = position - len(decompressor.unused_data)
    return out.getvalue(), end


class _Decompressor(Protocol):  # the part of the lzma/bz2 decompressor API used here
    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _ZlibAdapter:
    """zlib's decompressobj speaks of unconsumed_tail; give it the lzma/bz2 shape."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pending = b""

    @property
    def eof(self) -> bool:
        return bool(self.inner.eof)

    @property
    def needs_input(self) -> bool:
        return not self.pending

    @property
    def unused_data(self) -> bytes:
        return bytes(self.inner.unused_data)

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        piece = self.inner.decompress(self.pending + data, max(max_length, 0))
        self.pending = self.inner.unconsumed_tail
        return piece


def zstd_frame_length(data: bytes, offset: int) -> int:
    """Bytes of the zstd frame (and any skippable frames right after it) at `offset`, from
    the frame and block headers alone (RFC 8878)."""
    position = offset
    try:
        magic = struct.unpack_from("<I", data, position)[0]
        if magic != ZSTD_MAGIC:
            raise InitrdError(f"no zstd frame at byte {offset}")
        descriptor = data[position + 4]
        position += 5
        fcs_flag, single, checksum, dict_flag = (descriptor >> 6, descriptor >> 5 & 1,
                                                 descriptor >> 2 & 1, descriptor & 3)
        if descriptor & 0x08:
            raise InitrdError(f"zstd frame at byte {offset} sets a reserved bit")
        position += (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
        position += (1 if single else 0, 2, 4, 8)[fcs_flag]
        while True:
            if position + 3 > len(data):
                raise InitrdError(f"the zstd frame at byte {offset} is truncated")
            header = int.from_bytes(data[position:position + 3], "little")
            last, block_type, size = header & 1, header >> 1 & 3, header >> 3
            if block_type == 3:
                raise InitrdError(f"zstd frame at byte {offset} has a reserved block type")
            position += 3 + (1 if block_type == 1 else size)
            if last:
                break
        position += 4 if checksum else 0
        while position + 8 <= len(data):  # skippable frames belong to no archive
            magic, size = struct.unpack_from("<II", data, position)
            if magic & 0xFFFFFFF0 != ZSTD_SKIPPABLE:
                break
            position += 8 + size
    except (struct.error, IndexError) as exc:
        raise InitrdError(f"the zstd frame at byte {offset} is truncated") from exc
    if position > len(data):
        raise InitrdError(f"the zstd frame at byte {offset} is truncated")
    return position - offset


def _zstd_decompress(frame: bytes, budget: list[int]) -> bytes:
    try:
        import zstandard
    except ImportError as exc:
        raise InitrdError("the zstandard module is not installed (pip install zstandard)"
                          ) from exc
    out = io.BytesIO()
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame),
                                                        read_across_frames=False) as reader:
            while True:
                piece = reader.read(CHUNK)
                if not piece:
                    break
                _spend(budget, len(piece))
                out.write(piece)
    except zstandard.ZstdError as exc:
        raise InitrdError(f"the zstd stream is damaged ({exc})") from exc
    return out.getvalue()


def _parse_archives(plain: bytes, members_before: int) -> list[Member]:
    """Every archive in one decompressed stream (zero padding between them)."""
    members: list[Member] = []
    position = 0
    while position < len(plain):
        position += _zero_run(plain, position)
        if position >= len(plain):
            break
        found, position = _parse_cpio(plain, position, members_before + len(members))
        members += found
    return members


def _parse_cpio(data: bytes, offset: int, members_before: int) -> tuple[list[Member], int]:
    """newc members from `offset` up to and including the trailer; returns (members, end)."""
    members: list[Member] = []
    position = offset
    while True:
        if members_before + len(members) >= MAX_MEMBERS:
            raise InitrdError(f"more than {MAX_MEMBERS} cpio members")
        header = data[position:position + HEADER_SIZE]
        if len(header) < HEADER_SIZE:
            raise InitrdError(f"cpio archive truncated at byte {position} (no trailer)")
        magic = header[:6]
        if magic not in (NEWC, NEWC_CRC):
            raise InitrdError(f"byte {position}: not a newc cpio header ({magic!r})")
        try:
            fields = [int(header[6 + 8 * n:14 + 8 * n], 16) for n in range(13)]
        except ValueError as exc:
            raise InitrdError(f"byte {position}: cpio header with non-hex fields") from exc
        (ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
         namesize, check) = fields
        if not 1 <= namesize <= MAX_NAME:
            raise InitrdError(f"byte {position}: cpio name size {namesize} out of range")
        name_end = position + HEADER_SIZE + namesize
        data_start = _align4(name_end)
        data_end = data_start + filesize
        if data_end > len(data):
            raise InitrdError(f"byte {position}: cpio member runs past the archive end")
        raw_name = data[position + HEADER_SIZE:name_end]
        if raw_name[-1:] != b"\0":
            raise InitrdError(f"byte {position}: cpio name is not NUL-terminated")
        name = raw_name[:-1].decode("utf-8", errors="surrogateescape")
        body = data[data_start:data_end]
        if magic == NEWC_CRC and sum(body) & 0xFFFFFFFF != check:
            raise InitrdError(f"{name}: cpio checksum does not match")
        members.append(Member(name, ino, mode, uid, gid, nlink, mtime, devmajor, devminor,
                              rdevmajor, rdevminor, body, magic))
        position = _align4(data_end)
        if name == TRAILER:
            return members, min(position, len(data))


def _align4(value: int) -> int:
    return (value + 3) & ~3


# ------------------------------------------------------------------ writing
def pack_members(members: list[Member]) -> bytes:
    out = io.BytesIO()
    for member in members:
        name = member.name.encode("utf-8", errors="surrogateescape") + b"\0"
        check = sum(member.data) & 0xFFFFFFFF if member.magic == NEWC_CRC else 0
        fields = (member.ino, member.mode, member.uid, member.gid, member.nlink, member.mtime,
                  len(member.data), member.devmajor, member.devminor, member.rdevmajor,
                  member.rdevminor, len(name), check)
        header = member.magic + b"".join(b"%08X" % value for value in fields)
        out.write(header + name)
        out.write(b"\0" * (_align4(out.tell()) - out.tell()))
        out.write(member.data)
        out.write(b"\0" * (_align4(out.tell()) - out.tell()))
    size = out.tell()
    out.write(b"\0" * ((-size) % 512))  # cpio pads its output to 512-byte blocks
    return out.getvalue()


def compress(kind: str, plain: bytes) -> bytes:
    """`plain` compressed as the kernel's decompressors expect it. Levels favour speed (a
    generic initrd is a few hundred MiB unpacked): the result is a little larger than
    mkinitramfs' own, never slower to boot."""
    if kind == "none":
        return plain
    if kind == "gzip":
        packer = zlib.compressobj(6, zlib.DEFLATED, 31)
        return packer.compress(plain) + packer.flush()
    if kind == "xz":  # the kernel's XZ decoder wants CRC32 (or none) and LZMA2 alone
        return lzma.compress(plain, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                             filters=[{"id": lzma.FILTER_LZMA2, "preset": 2}])
    if kind == "lzma":
        return lzma.compress(plain, format=lzma.FORMAT_ALONE)
    if kind == "bzip2":
        return bz2.compress(plain, 9)
    if kind == "zstd":
        try:
            import zstandard
        except ImportError as exc:
            raise InitrdError("the zstandard module is not installed (pip install zstandard)"
                              ) from exc
        return zstandard.ZstdCompressor(level=3, write_content_size=True,
                                        write_checksum=True, threads=-1).compress(plain)
    raise InitrdError(f"cannot write a {kind} segment")
