"""Transaction log recovery of a dirty hive: old format (type 1/2) and new format (type 6).

Rules follow what Windows does: a log whose base block checksum is wrong, or whose dirty
vector or log entries are damaged, is not used; with two new-format logs the one with the lower
sequence number is applied first and the other only when its entries continue the sequence.
"""

from __future__ import annotations

import struct
import sys
from array import array

from reseal.errors import CorruptData, Refused
from reseal.registry.format import BASE_BLOCK_SIZE, HBIN_ALIGN, U32, base_block_checksum

LOG_SUFFIXES = (".LOG", ".LOG1", ".LOG2")
LOG_BASE_BLOCK = 512
MARVIN_SEED = 0x82EF4D887A4E55C5
_M32 = 0xFFFFFFFF


class Recovery:
    """The hive's bytes after recovery, what was done, and whether logs were applied."""

    __slots__ = ("data", "warnings", "recovered")

    def __init__(self, data: bytes | bytearray, warnings: list[str] | None = None, recovered: bool = False) -> None:
        self.data = data
        self.warnings = warnings or []
        self.recovered = recovered


def marvin32(data: bytes | bytearray | memoryview, seed: int = MARVIN_SEED) -> int:
    """Marvin32 hash, as used to protect new-format log entries.

    The rotations are written out (no helper calls) and the words come from one array:
    this loop is what recovering a dirty 15 MB hive spends its time on.
    """
    lo = seed & _M32
    hi = seed >> 32
    whole = len(data) // 4 * 4
    final = 0x80  # the tail bytes, then 0x80, then a zero word close the input
    for byte in reversed(bytes(data[whole:])):
        final = (final << 8) | byte
    words = array("I")
    words.frombytes(data[:whole])
    if sys.byteorder != "little":
        words.byteswap()
    words.append(final & _M32)
    words.append(0)
    mask = _M32
    for word in words:
        lo = (lo + word) & mask
        hi ^= lo
        lo = ((lo << 20 | lo >> 12) + hi) & mask
        hi = (hi << 9 | hi >> 23) & mask ^ lo
        lo = ((lo << 27 | lo >> 5) + hi) & mask
        hi = (hi << 19 | hi >> 13) & mask
    return (hi << 32) | lo


def log_sequence(log: bytes) -> int:
    """Highest sequence number a log's base block names (0 when it is not a log)."""
    if len(log) < LOG_BASE_BLOCK or log[:4] != b"regf":
        return 0
    return max(U32.unpack_from(log, 4)[0], U32.unpack_from(log, 8)[0])


class _Log:
    __slots__ = ("index", "data", "file_type", "seq")

    def __init__(self, index: int, data: bytes, file_type: int, seq: int) -> None:
        self.index = index
        self.data = data
        self.file_type = file_type
        self.seq = seq


def _checked_logs(logs: list[bytes], name: str) -> tuple[list[_Log], list[str]]:
    usable: list[_Log] = []
    problems: list[str] = []
    for index, log in enumerate(logs):
        label = f"{name} log #{index + 1}"
        if len(log) < LOG_BASE_BLOCK or log[:4] != b"regf":
            problems.append(f"{label}: no 'regf' signature at offset 0")
            continue
        if U32.unpack_from(log, 0x1FC)[0] != base_block_checksum(log):
            problems.append(f"{label}: bad base block checksum at offset 0x1fc")
            continue
        seq1, seq2 = U32.unpack_from(log, 4)[0], U32.unpack_from(log, 8)[0]
        file_type = U32.unpack_from(log, 0x1C)[0]
        if seq1 != seq2:
            problems.append(f"{label}: its own base block is dirty (sequence {seq1}/{seq2})")
            continue
        if file_type not in (1, 2, 6):
            problems.append(f"{label}: file type {file_type} at offset 0x1c is not a log")
            continue
        usable.append(_Log(index, log, file_type, seq1))
    return usable, problems


def recover(data: bytes | bytearray, logs: list[bytes], name: str) -> Recovery:
    """Apply the logs to a dirty hive; a clean hive comes back as it is. A bytearray is
    recovered in place (the hive's own buffer: no second copy of a 15 MB hive)."""
    valid = U32.unpack_from(data, 0x1FC)[0] == base_block_checksum(data)
    seq1, seq2 = U32.unpack_from(data, 4)[0], U32.unpack_from(data, 8)[0]
    if valid and seq1 == seq2:
        return Recovery(data)
    why = f"sequence numbers {seq1}/{seq2}" if valid else "bad base block checksum at offset 0x1fc"
    if not logs:
        return Recovery(data, [f"{name}: dirty hive ({why}), no logs: used as it is"])
    usable, problems = _checked_logs(logs, name)
    new_logs = [log for log in usable if log.file_type == 6]
    old_logs = [log for log in usable if log.file_type in (1, 2)]
    if new_logs:
        return _apply_new(data, valid, seq2, new_logs, name, problems)
    if old_logs:
        return _apply_old(data, old_logs[0], name, problems)
    raise Refused(
        f"{name}: dirty hive ({why}) and no usable transaction log ({'; '.join(problems)}); "
        "refusing to guess: restore the logs or work on a clean copy"
    )


def _apply_old(data: bytes | bytearray, log: _Log, name: str, notes: list[str]) -> Recovery:
    raw = log.data
    label = f"{name}: log #{log.index + 1}"
    hbins_size = U32.unpack_from(raw, 0x28)[0]
    if hbins_size < HBIN_ALIGN or hbins_size % HBIN_ALIGN:
        raise Refused(f"{name}: old-format log has a bad hive bins data size {hbins_size:#x} at offset 0x28")
    _check_size_claim(label, hbins_size, 0x28, len(data), len(raw))
    vector_at = LOG_BASE_BLOCK
    if raw[vector_at : vector_at + 4] != b"DIRT":
        raise Refused(
            f"{name}: old-format log has a bad dirty vector signature {bytes(raw[vector_at:vector_at + 4])!r} "
            f"at offset {vector_at:#x}; refusing to recover from it"
        )
    bitmap_size = hbins_size // 4096  # one bit per 512-byte page
    if vector_at + 4 + bitmap_size > len(raw):
        raise CorruptData(
            f"{label}: its dirty vector of {bitmap_size} bytes at offset {vector_at + 4:#x} runs past the end "
            f"of the log ({len(raw)} bytes); the log is truncated or damaged: move it away to use the hive as it is"
        )
    bitmap = raw[vector_at + 4 : vector_at + 4 + bitmap_size]
    pages_at = (vector_at + 4 + bitmap_size + 511) // 512 * 512
    out = data if isinstance(data, bytearray) else bytearray(data)  # a bytearray is recovered in place
    if len(out) < BASE_BLOCK_SIZE + hbins_size:
        out.extend(bytes(BASE_BLOCK_SIZE + hbins_size - len(out)))
    page = 0
    applied = 0
    for bit in range(hbins_size // 512):
        if bitmap[bit // 8] >> (bit % 8) & 1:
            src = pages_at + page * 512
            if src + 512 > len(raw):
                raise Refused(f"{name}: old-format log is truncated at offset {src:#x}")
            dst = BASE_BLOCK_SIZE + bit * 512
            out[dst : dst + 512] = raw[src : src + 512]
            page += 1
            applied += 1
    base = bytearray(raw[:LOG_BASE_BLOCK].ljust(BASE_BLOCK_SIZE, b"\0"))
    if U32.unpack_from(data, 0x1FC)[0] == base_block_checksum(data):
        base = bytearray(data[:BASE_BLOCK_SIZE])
        for at in (0x0C, 0x18, 0x24, 0x28, 0x90):  # timestamp, minor, root, size, flags
            width = 8 if at == 0x0C else 4
            base[at : at + width] = raw[at : at + width]
    _finish_base(base, log.seq, hbins_size)
    out[:BASE_BLOCK_SIZE] = base
    return Recovery(out, [*notes, f"{name}: recovered {applied} pages from an old-format log"], True)


class _Entry:
    __slots__ = ("seq", "flags", "hbins_size", "pages")

    def __init__(self, seq: int, flags: int, hbins_size: int, pages: list[tuple[int, memoryview]]) -> None:
        self.seq = seq
        self.flags = flags
        self.hbins_size = hbins_size
        self.pages = pages


def _check_size_claim(label: str, hbins_size: int, where: int, hive_size: int, log_bytes: int) -> None:
    """A hive can only grow by what its logs carry: refuse a size no real log could claim
    (a crafted 1 GiB claim in a log of a few KiB must not allocate 1 GiB)."""
    limit = max(hive_size - BASE_BLOCK_SIZE, 0) + log_bytes
    if hbins_size > limit:
        raise CorruptData(
            f"{label}: claims a hive bins size of {hbins_size:#x} at offset {where:#x}, more than the hive "
            f"({hive_size} bytes) and its logs ({log_bytes} bytes) can hold; the log is damaged or "
            "crafted: move it away to use the hive as it is"
        )


def _entries(log: _Log, hive_size: int, log_bytes: int, name: str) -> list[_Entry]:
    raw = log.data
    view = memoryview(raw)
    pos = LOG_BASE_BLOCK
    expected = log.seq
    out: list[_Entry] = []
    while pos + 40 <= len(raw):
        sig, size, flags, seq, hbins_size, count, hash1, hash2 = struct.unpack_from("<4sIIIIIQQ", raw, pos)
        if sig != b"HvLE" or size < 512 or size % 512 or pos + size > len(raw):
            break
        if hbins_size < HBIN_ALIGN or hbins_size % HBIN_ALIGN or count == 0 or 40 + count * 8 > size:
            break
        if seq != expected:
            break
        if marvin32(view[pos : pos + 32]) != hash2 or marvin32(view[pos + 40 : pos + size]) != hash1:
            break
        _check_size_claim(f"{name} log #{log.index + 1}: entry at offset {pos:#x}", hbins_size, pos + 16,
                          hive_size, log_bytes)
        refs = struct.unpack_from(f"<{count * 2}I", raw, pos + 40)
        data_at = pos + 40 + count * 8
        pages: list[tuple[int, memoryview]] = []
        ok = True
        for i in range(0, count * 2, 2):
            offset, length = refs[i], refs[i + 1]
            if data_at + length > pos + size or offset + length > hbins_size:
                ok = False
                break
            pages.append((offset, view[data_at : data_at + length]))  # a view: no copy of the log
            data_at += length
        if not ok:
            break
        out.append(_Entry(seq, flags, hbins_size, pages))
        pos += size
        expected = (expected + 1) & 0xFFFFFFFF
    return out


def _starts_first(a: int, b: int) -> bool:
    """True when sequence `a` comes before `b` (with 32-bit wraparound)."""
    delta = (b - a) & 0xFFFFFFFF
    return delta != 0 and delta <= 0x7FFFFFFF


def _apply_new(data: bytes | bytearray, valid: bool, secondary: int, logs: list[_Log], name: str, notes: list[str]) -> Recovery:
    if len(logs) > 1:
        logs = sorted(logs[:2], key=lambda lg: lg.seq)
        if not _starts_first(logs[0].seq, logs[1].seq) and logs[0].seq != logs[1].seq:
            logs.reverse()
    if not valid:
        logs = logs[-1:]  # a damaged base block: only the latest log, as Windows does
    out = data if isinstance(data, bytearray) else bytearray(data)  # a bytearray is recovered in place
    last_seq: int | None = None
    applied_pages = 0
    used: list[_Log] = []
    hbins_size = U32.unpack_from(data, 0x28)[0]
    flags = U32.unpack_from(data, 0x90)[0]
    for log in logs:
        if valid and last_seq is None and _starts_first(log.seq, secondary):
            continue  # older than the hive: already applied
        if last_seq is not None and log.seq != ((last_seq + 1) & 0xFFFFFFFF):
            continue
        entries = _entries(log, len(data), sum(len(lg.data) for lg in logs), name)
        if not entries:
            continue
        for entry in entries:
            end = BASE_BLOCK_SIZE + entry.hbins_size
            if len(out) < end:
                out.extend(bytes(end - len(out)))
            for offset, page in entry.pages:
                at = BASE_BLOCK_SIZE + offset
                out[at : at + len(page)] = page
                applied_pages += 1
            hbins_size = entry.hbins_size
            flags = (flags & ~1) | (entry.flags & 1)
            last_seq = entry.seq
        used.append(log)
    if last_seq is None:
        raise Refused(
            f"{name}: dirty hive, but no log entry of its logs can be applied (bad hashes, "
            f"signatures or sequence numbers{'; ' + '; '.join(notes) if notes else ''}); refusing to guess"
        )
    if valid:
        base = bytearray(out[:BASE_BLOCK_SIZE])
    else:
        base = bytearray(used[-1].data[:LOG_BASE_BLOCK].ljust(BASE_BLOCK_SIZE, b"\0"))
    src = used[-1].data
    for at in (0x24, 0x18):  # root cell, minor version as the log knew them
        base[at : at + 4] = src[at : at + 4]
    U32.pack_into(base, 0x90, flags)
    _finish_base(base, last_seq, hbins_size)
    out[:BASE_BLOCK_SIZE] = base
    return Recovery(
        out, [*notes, f"{name}: recovered {applied_pages} pages from {len(used)} new-format log(s)"], True
    )


def _finish_base(base: bytearray, seq: int, hbins_size: int) -> None:
    struct.pack_into("<II", base, 4, seq, seq)
    U32.pack_into(base, 0x1C, 0)
    U32.pack_into(base, 0x28, hbins_size)
    U32.pack_into(base, 0x1FC, base_block_checksum(base))
