"""Zero-fill what no reader of a hive sees: free cells and the slack of allocated cells.

Windows never clears a cell it frees, nor the bytes of a cell past what its owner uses (a value
whose data shrank keeps the old tail; a cell rounded up to 8 bytes keeps what was there). Those
bytes hold old names and SIDs. How much of every cell is used comes from the hive index's walk
(`HiveIndex.used`, one walk shared with the searches of the run); `scrub` then walks the cells
of every bin: a free cell keeps only its size, an allocated cell keeps its used part, a cell the
writer filled itself is already clean. Cells no key refers to are left as they are and counted
(a hive may hold structures reseal does not model; they are reported, never guessed at).

Used part of each cell, by what refers to it: key (nk) and value (vk) cells up to the end of
their names, value lists and subkey lists up to their last entry, class names and value data
up to their stored length, big-data (db) cells 8 bytes, their segment lists and segments up to
the data they carry, security (sk) cells up to the end of the descriptor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from reseal.registry.format import (
    BASE_BLOCK_SIZE,
    HBIN_HEADER_SIZE,
    I32,
)
from reseal.registry.index import BIG_USED

if TYPE_CHECKING:
    from reseal.registry.hive import Hive


class ScrubReport(NamedTuple):
    free_bytes: int  # non-zero bytes of free cells zeroed
    slack_bytes: int  # non-zero bytes past the used part of allocated cells zeroed
    unreferenced_cells: int  # allocated cells nothing refers to, left as they are


def scrub(hive: Hive) -> ScrubReport:
    """Zero every free cell's body and every allocated cell's unused tail (see module doc)."""
    index = hive.index().build()
    used = index.used
    store = hive.store
    written = store.written
    buf = store.buf
    unpack = I32.unpack_from
    free_bytes = slack_bytes = unreferenced = 0
    for start, size in store.bins:
        pos = start + HBIN_HEADER_SIZE
        end = start + size
        while pos < end:
            at = BASE_BLOCK_SIZE + pos
            cell_size = unpack(buf, at)[0]
            length = -cell_size if cell_size < 0 else cell_size
            if length < 8 or length % 8 or pos + length > end:
                hive.corrupt(f"bad cell size {cell_size}", pos)
            if cell_size > 0:
                first = at + 4
            elif pos in written:  # filled by this writer: zero past its payload already
                pos += length
                continue
            else:
                mark = used[pos >> 3]
                if mark == BIG_USED:
                    mark = index.used_big[pos >> 3]
                if not mark:
                    unreferenced += 1
                    pos += length
                    continue
                first = at + 4 + mark - 1
            last = at + length
            if first < last:
                dirty = last - first - buf.count(0, first, last)
                if dirty:
                    buf[first:last] = bytes(last - first)
                    if cell_size > 0:
                        free_bytes += dirty
                    else:
                        slack_bytes += dirty
            pos += length
    return ScrubReport(free_bytes, slack_bytes, unreferenced)
