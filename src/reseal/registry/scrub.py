"""Zero-fill what no reader of a hive sees: free cells and the slack of allocated cells.

Windows never clears a cell it frees, nor the bytes of a cell past what its owner uses (a value
whose data shrank keeps the old tail; a cell rounded up to 8 bytes keeps what was there). Those
bytes hold old names and SIDs. `scrub` walks the tree once to learn how much of every cell is
used, then walks the cells of every bin: a free cell keeps only its size, an allocated cell
keeps its used part. Cells no key refers to are left as they are and counted (a hive may hold
structures reseal does not model; they are reported, never guessed at).

Used part of each cell, by what refers to it: key (nk) and value (vk) cells up to the end of
their names, value lists and subkey lists up to their last entry, class names and value data
up to their stored length, big-data (db) cells 8 bytes, their segment lists and segments up to
the data they carry, security (sk) cells up to the end of the descriptor.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from reseal.registry.format import (
    BASE_BLOCK_SIZE,
    BIG_DATA_MIN_MINOR,
    BIG_DATA_SEGMENT,
    HBIN_HEADER_SIZE,
    I32,
    NIL,
    NK,
    NK_SIZE,
    SK,
    SK_SIZE,
    U16,
    VK,
    VK_SIZE,
)

if TYPE_CHECKING:
    from reseal.registry.hive import Hive


class ScrubReport(NamedTuple):
    free_bytes: int  # non-zero bytes of free cells zeroed
    slack_bytes: int  # non-zero bytes past the used part of allocated cells zeroed
    unreferenced_cells: int  # allocated cells nothing refers to, left as they are


def used_lengths(hive: Hive) -> array:  # type: ignore[type-arg]
    """For every referenced cell, 1 + the bytes of its body in use, indexed by offset // 8."""
    store = hive.store
    buf = store.buf
    limit = store.hbins_size
    used = array("I", [0]) * (limit // 8 + 1)
    base = BASE_BLOCK_SIZE + 4
    big_ok = hive.minor >= BIG_DATA_MIN_MINOR
    size_of = I32.unpack_from

    def body(offset: int, what: str) -> int:
        """Length of the allocated cell at `offset` (checked the way `CellStore.cell` does)."""
        if offset & 7 or not HBIN_HEADER_SIZE <= offset < limit - 8:
            hive.corrupt(f"{what} offset outside the hive bins", offset)
        size = size_of(buf, base - 4 + offset)[0]
        if size >= 0 or offset - size > limit:
            hive.corrupt(f"{what} is not an allocated cell", offset)
        return -size - 4

    def mark(offset: int, length: int, what: str) -> None:
        want = min(length, body(offset, what)) + 1
        if used[offset >> 3] < want:
            used[offset >> 3] = want

    seen: set[int] = set()
    stack = [hive.root_offset]
    nk_unpack = NK.unpack_from
    vk_unpack = VK.unpack_from
    while stack:
        offset = stack.pop()
        if offset in seen:
            hive.corrupt("key reached twice (a loop in subkey lists)", offset)
        seen.add(offset)
        length = body(offset, "key")
        pos = base + offset
        if length < NK_SIZE or buf[pos : pos + 2] != b"nk":
            hive.corrupt("expected a key (nk) cell", offset)
        fields = nk_unpack(buf, pos)
        used[offset >> 3] = min(NK_SIZE + fields[18], length) + 1
        if fields[12] != NIL and fields[19]:
            mark(fields[12], fields[19], "class name")
        nvalues = fields[9]
        if nvalues:
            vlist = fields[10]
            llen = body(vlist, "value list")
            used[vlist >> 3] = min(nvalues * 4, llen) + 1
            for vk in struct.unpack_from(f"<{min(nvalues, llen // 4)}I", buf, base + vlist):
                vlen = body(vk, "value")
                vpos = base + vk
                if vlen < VK_SIZE or buf[vpos : vpos + 2] != b"vk":
                    hive.corrupt("expected a value (vk) cell", vk)
                _sig, name_len, size, data_off, _t, _f, _s = vk_unpack(buf, vpos)
                used[vk >> 3] = min(VK_SIZE + name_len, vlen) + 1
                if not size or size & 0x80000000 or data_off == NIL:
                    continue
                dlen = body(data_off, "value data")
                dpos = base + data_off
                if size > BIG_DATA_SEGMENT and big_ok and buf[dpos : dpos + 2] == b"db":
                    count = U16.unpack_from(buf, dpos + 2)[0]
                    seglist = store.u32(dpos + 4)
                    mark(data_off, 8, "big data")
                    mark(seglist, count * 4, "big data segment list")
                    slen = body(seglist, "big data segment list")
                    remaining = size
                    for segment in struct.unpack_from(f"<{min(count, slen // 4)}I", buf, base + seglist):
                        mark(segment, min(remaining, BIG_DATA_SEGMENT), "big data segment")
                        remaining = max(remaining - BIG_DATA_SEGMENT, 0)
                else:
                    want = min(size, dlen) + 1
                    if used[data_off >> 3] < want:
                        used[data_off >> 3] = want
        if fields[7] != NIL:
            _mark_list(hive, fields[7], mark, stack)
    sk_start = store.u32(base + hive.root_offset + 0x2C)
    if sk_start != NIL:
        for sk in hive.security_cells.all(sk_start):
            pos, _length = store.cell(sk, "security cell")
            size = SK.unpack_from(buf, pos)[5]
            mark(sk, SK_SIZE + size, "security cell")
    return used


def _mark_list(hive: Hive, offset: int, mark: Callable[[int, int, str], None], stack: list[int]) -> None:
    store = hive.store
    buf = store.buf
    pos, length = store.cell(offset, "subkey list")
    sig = bytes(buf[pos : pos + 2])
    count = U16.unpack_from(buf, pos + 2)[0]
    if sig == b"ri":
        mark(offset, 4 + count * 4, "subkey list")
        for leaf in struct.unpack_from(f"<{min(count, (length - 4) // 4)}I", buf, pos + 4):
            _mark_list(hive, leaf, mark, stack)
        return
    if sig in (b"lf", b"lh"):
        mark(offset, 4 + count * 8, "subkey list")
        entries = struct.unpack_from(f"<{min(count, (length - 4) // 8) * 2}I", buf, pos + 4)[::2]
    elif sig == b"li":
        mark(offset, 4 + count * 4, "subkey list")
        entries = struct.unpack_from(f"<{min(count, (length - 4) // 4)}I", buf, pos + 4)
    else:
        hive.corrupt(f"bad subkey list signature {sig!r}", offset)
    stack.extend(reversed(entries))


def scrub(hive: Hive) -> ScrubReport:
    """Zero every free cell's body and every allocated cell's unused tail (see module doc)."""
    used = used_lengths(hive)
    store = hive.store
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
            else:
                mark = used[pos >> 3]
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
