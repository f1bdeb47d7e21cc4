"""Cell storage of a hive: bounds-checked reads, and an allocator over hive bins.

The allocator reuses free cells (best fit, split, coalesced with free neighbours in the same
bin), zero-fills every cell it frees so no old data lingers, and appends a new hive bin when
no free cell is large enough.
"""

from __future__ import annotations

import bisect
import struct

from reseal.errors import CorruptData
from reseal.registry.format import (
    BASE_BLOCK_SIZE,
    HBIN_ALIGN,
    HBIN_HEADER_SIZE,
    I32,
    U32,
    cell_size_for,
)

HBIN_HEADER = struct.Struct("<4sIIQQI")
SCAN_BUDGET = 64  # bins an allocation may learn before it gives up and appends a new bin


class CellStore:
    """The hive bins data of one hive (file offset 4096 onwards) in a bytearray."""

    def __init__(self, data: bytearray, hbins_size: int, label: str) -> None:
        self.buf = data  # whole file image, base block included
        self.hbins_size = hbins_size
        self.label = label
        self.bins: list[tuple[int, int]] = []  # (relative offset, size)
        self._bin_starts: list[int] = []
        # Free cells are learnt bin by bin, only as far as an allocation or a free needs them:
        # a one-value edit of a 15 MB hive looks at a few bins, not at 200,000 cells.
        self._free: dict[int, int] = {}  # offset -> size
        self._free_by_end: dict[int, int] = {}
        self._sizes: list[int] = []  # sorted distinct free sizes
        self._by_size: dict[int, set[int]] = {}
        self._scan_bins()
        self._scanned = bytearray(len(self.bins))
        self._cursor = 0
        # cells this writer filled (allocated, or rewritten in place): zero past their payload
        self.written: set[int] = set()

    # ---------------------------------------------------------------- reading
    def _scan_bins(self) -> None:
        pos = 0
        buf = self.buf
        end = self.hbins_size
        while pos < end:
            at = BASE_BLOCK_SIZE + pos
            if at + HBIN_HEADER_SIZE > len(buf):
                raise CorruptData(
                    f"{self.label}: hive bin at offset {at:#x} lies past the end of the file "
                    f"({len(buf)} bytes); the hive is truncated"
                )
            sig, rel, size, _r, _t, _s = HBIN_HEADER.unpack_from(buf, at)
            if sig != b"hbin":
                raise CorruptData(f"{self.label}: bad hive bin signature {sig!r} at offset {at:#x}")
            if rel != pos:
                raise CorruptData(
                    f"{self.label}: hive bin at offset {at:#x} says it is at {rel:#x}"
                )
            if size < HBIN_ALIGN or size % HBIN_ALIGN or pos + size > end:
                raise CorruptData(f"{self.label}: bad hive bin size {size:#x} at offset {at:#x}")
            if at + size > len(buf):
                raise CorruptData(
                    f"{self.label}: hive bin at offset {at:#x} runs past the end of the file"
                )
            self.bins.append((pos, size))
            self._bin_starts.append(pos)
            pos += size

    def bin_of(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self._bin_starts, offset) - 1
        if index < 0:
            raise CorruptData(f"{self.label}: cell offset {offset:#x} is before the first hive bin")
        return self.bins[index]

    def cell(self, offset: int, what: str = "cell") -> tuple[int, int]:
        """(file position of the cell data, data length) of an allocated cell, checked."""
        if offset & 7 or offset < HBIN_HEADER_SIZE or offset + 8 > self.hbins_size:
            raise CorruptData(
                f"{self.label}: {what} offset {offset:#x} is outside the hive bins or misaligned"
            )
        at = BASE_BLOCK_SIZE + offset
        size = I32.unpack_from(self.buf, at)[0]
        if size >= 0:
            raise CorruptData(f"{self.label}: {what} at offset {offset:#x} is a free cell")
        size = -size
        if size < 8 or offset + size > self.hbins_size:
            raise CorruptData(f"{self.label}: {what} at offset {offset:#x} has a bad size {size}")
        return at + 4, size - 4

    def read(self, offset: int, what: str = "cell") -> bytes:
        pos, length = self.cell(offset, what)
        return bytes(self.buf[pos : pos + length])

    def u32(self, pos: int) -> int:
        return int(U32.unpack_from(self.buf, pos)[0])

    def put_u32(self, pos: int, value: int) -> None:
        U32.pack_into(self.buf, pos, value)

    # -------------------------------------------------------------- allocator
    def _scan_bin(self, index: int) -> None:
        """Learn the free cells of one hive bin (done once per bin, when first needed)."""
        if self._scanned[index]:
            return
        self._scanned[index] = 1
        start, size = self.bins[index]
        buf = self.buf
        pos = start + HBIN_HEADER_SIZE
        end = start + size
        unpack = I32.unpack_from
        while pos < end:
            cell_size = unpack(buf, BASE_BLOCK_SIZE + pos)[0]
            length = -cell_size if cell_size < 0 else cell_size
            if length < 8 or length % 8 or pos + length > end:
                raise CorruptData(
                    f"{self.label}: bad cell size {cell_size} at offset {BASE_BLOCK_SIZE + pos:#x}; "
                    "run `reseal hive check` for details"
                )
            if cell_size > 0:
                self._add_free(pos, length)
            pos += length

    def _scan_more(self) -> bool:
        """Scan the next bin not scanned yet; False when every bin is known."""
        scanned = self._scanned
        while self._cursor < len(scanned) and scanned[self._cursor]:
            self._cursor += 1
        if self._cursor == len(scanned):
            return False
        self._scan_bin(self._cursor)
        return True

    def scan_all(self) -> None:
        """Learn every free cell (a whole-hive cell walk)."""
        while self._scan_more():
            pass

    def _ensure_bin_of(self, offset: int) -> None:
        index = bisect.bisect_right(self._bin_starts, offset) - 1
        if index >= 0:
            self._scan_bin(index)

    def free_cells(self) -> dict[int, int]:
        """offset -> size of every free cell."""
        self.scan_all()
        return dict(self._free)

    def _add_free(self, offset: int, size: int) -> None:
        self._free[offset] = size
        self._free_by_end[offset + size] = offset
        bucket = self._by_size.get(size)
        if bucket is None:
            self._by_size[size] = {offset}
            bisect.insort(self._sizes, size)
        else:
            bucket.add(offset)

    def _remove_free(self, offset: int) -> int:
        size = self._free.pop(offset)
        del self._free_by_end[offset + size]
        bucket = self._by_size[size]
        bucket.discard(offset)
        if not bucket:
            del self._by_size[size]
            del self._sizes[bisect.bisect_left(self._sizes, size)]
        return size

    def alloc(self, payload: bytes) -> int:
        """Store `payload` in a new allocated cell; returns its offset."""
        need = cell_size_for(len(payload))
        budget = SCAN_BUDGET
        while True:
            index = bisect.bisect_left(self._sizes, need)
            if index < len(self._sizes):
                offset = next(iter(self._by_size[self._sizes[index]]))
                break
            budget -= 1
            if budget < 0 or not self._scan_more():
                offset = self._grow(need)
                break
        size = self._remove_free(offset)
        rest = size - need
        if rest >= 8:
            self._write_free_cell(offset + need, rest)
            self._add_free(offset + need, rest)
            size = need
        at = BASE_BLOCK_SIZE + offset
        I32.pack_into(self.buf, at, -size)
        self.buf[at + 4 : at + size] = payload.ljust(size - 4, b"\0")
        self.written.add(offset)
        return offset

    def _write_free_cell(self, offset: int, size: int) -> None:
        at = BASE_BLOCK_SIZE + offset
        I32.pack_into(self.buf, at, size)
        self.buf[at + 4 : at + size] = bytes(size - 4)

    def _grow(self, need: int) -> int:
        size = (need + HBIN_HEADER_SIZE + HBIN_ALIGN - 1) // HBIN_ALIGN * HBIN_ALIGN
        start = self.hbins_size
        end_of_bins = BASE_BLOCK_SIZE + start
        del self.buf[end_of_bins:]  # drop any slack after the last bin
        self.buf.extend(bytes(size))
        HBIN_HEADER.pack_into(self.buf, end_of_bins, b"hbin", start, size, 0, 0, 0)
        self.bins.append((start, size))
        self._bin_starts.append(start)
        self._scanned.append(1)
        self.hbins_size += size
        cell_offset = start + HBIN_HEADER_SIZE
        self._write_free_cell(cell_offset, size - HBIN_HEADER_SIZE)
        self._add_free(cell_offset, size - HBIN_HEADER_SIZE)
        return cell_offset

    def free(self, offset: int) -> None:
        """Free an allocated cell: zero it, then merge it with free neighbours in its bin."""
        pos, length = self.cell(offset)
        self._ensure_bin_of(offset)
        size = length + 4
        bin_start, bin_size = self.bin_of(offset)
        following = offset + size
        if following < bin_start + bin_size and following in self._free:
            size += self._remove_free(following)
        previous = self._free_by_end.get(offset)
        if previous is not None and previous >= bin_start:
            size += self._remove_free(previous)
            offset = previous
        self._write_free_cell(offset, size)
        self._add_free(offset, size)

    def realloc(self, offset: int, payload: bytes) -> int:
        """Rewrite a cell with new payload, in place when it fits; returns the (new) offset."""
        pos, length = self.cell(offset)
        if cell_size_for(len(payload)) <= length + 4:
            self.buf[pos : pos + length] = payload.ljust(length, b"\0")
            self.written.add(offset)
            return offset
        new_offset = self.alloc(payload)
        self.free(offset)
        return new_offset

    def header_timestamp_pos(self) -> int:
        return BASE_BLOCK_SIZE + 0x14
