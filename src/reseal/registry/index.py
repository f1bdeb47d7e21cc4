"""HiveIndex: where every key, value and value-data cell of a hive lives, from one walk.

Finding an identity (a SID, a computer name, a GUID) in a hive used to mean decoding every
value of every key in Python, once per operation and once more per needle. The index turns it
around: needles are searched as byte strings over the whole hive buffer (C speed,
`bytes.find`), and only the few places they occur are mapped back to the key or value that
holds them. What the index keeps is small and flat (sorted arrays of cell offsets):

- key cells: nk offset -> parent nk offset (as the walk found it);
- value cells: vk offset -> nk offset of the key listing it;
- data cells: cell offset -> vk offset (big-data `db` cells, their segment lists and segments
  included).

The index follows the hive's own edits: the writer reports every cell it links in (a new data
cell, a new value, a moved or new key), and an entry left over from a freed cell is recognised
as stale because it no longer matches the hive (the cell is no longer that value's data, the
value is no longer in that key's list). Every answer is checked against the hive as it is now.

A match is an `Occurrence`: the file offset of the match and what the bytes there are:
`key name`, `value name`, `value data` (the value's data as long as it says, inline data
included), `slack` (inside an allocated cell, past what its owner uses), `free cell`, or
`other cell` (security descriptors, lists, class names, cells nothing refers to).
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from reseal.errors import CorruptData
from reseal.registry import lists
from reseal.registry.format import (
    BASE_BLOCK_SIZE,
    BIG_DATA_MIN_MINOR,
    BIG_DATA_SEGMENT,
    HBIN_HEADER_SIZE,
    I32,
    KEY_COMP_NAME,
    NIL,
    NK,
    NK_SIZE,
    SK,
    SK_SIZE,
    U16,
    U32,
    VALUE_COMP_NAME,
    VK,
    VK_SIZE,
    sort_key,
)

if TYPE_CHECKING:
    from reseal.registry.hive import Hive
    from reseal.registry.nodes import Key, Value

KEY_NAME = "key name"
VALUE_NAME = "value name"
VALUE_DATA = "value data"
SLACK = "slack"
FREE_CELL = "free cell"
OTHER_CELL = "other cell"
LIVE_KINDS = (KEY_NAME, VALUE_NAME, VALUE_DATA)

_LOW = 0xFFFFFFFF
BIG_USED = 0xFFFF
_CHUNK = 1 << 20  # case-insensitive search lowers the hive one chunk at a time


class Occurrence(NamedTuple):
    """One match of a needle in a hive."""

    needle: int  # index of the needle in the list given to `find`
    kind: str  # KEY_NAME, VALUE_NAME, VALUE_DATA, SLACK, FREE_CELL or OTHER_CELL
    file_offset: int  # where the match starts in the hive file
    cell: int  # offset of the cell holding it (relative to the first hive bin)
    key: int | None  # nk offset of the key concerned (its name, or the key owning the value)
    value: int | None  # vk offset of the value concerned


class Needle(NamedTuple):
    """Bytes to look for; with `ascii_nocase`, ASCII letters match in either case (give them
    in lower case)."""

    data: bytes
    ascii_nocase: bool = False


def _get(table: array, offset: int) -> int | None:  # type: ignore[type-arg]
    at = bisect_left(table, offset << 32)
    if at < len(table) and table[at] >> 32 == offset:
        return int(table[at] & _LOW)
    return None


def _put(table: array, offset: int, owner: int) -> None:  # type: ignore[type-arg]
    at = bisect_left(table, offset << 32)
    entry = offset << 32 | owner
    if at < len(table) and table[at] >> 32 == offset:
        table[at] = entry
    else:
        table.insert(at, entry)


class HiveIndex:
    """The ownership map of one hive; see the module docstring. Get it with `hive.index()`."""

    def __init__(self, hive: Hive) -> None:
        self._hive = hive
        self._keys = array("Q")  # nk << 32 | parent nk
        self._values = array("Q")  # vk << 32 | nk
        self._data = array("Q")  # data cell << 32 | vk
        self.wide_names: set[int] = set()  # nk and vk cells whose names are stored as UTF-16
        self.big_values: set[int] = set()  # vk cells whose data is split into db segments
        self.key_count = 0
        self.value_count = 0
        # per cell (offset // 8): 1 + the bytes of its body in use, 0 for cells the walk did not
        # reach, BIG_USED when the figure is in `used_big`; true for every cell except those the
        # writer filled since (CellStore.written)
        self.used = array("H")
        self.used_big: dict[int, int] = {}
        self._built = False

    # ------------------------------------------------------------------ building
    def build(self) -> HiveIndex:
        """Walk the hive now (otherwise the first question that needs the walk does it)."""
        if not self._built:
            self._build()
            self._built = True
        return self

    def _build(self) -> None:
        """One depth-first walk from the root: every key, its values and their data cells,
        and how much of every cell it reaches is in use (for `reseal.registry.scrub`)."""
        hive = self._hive
        store = hive.store
        buf = store.buf
        limit = store.hbins_size
        base = BASE_BLOCK_SIZE + 4
        nk_unpack = NK.unpack_from
        vk_unpack = VK.unpack_from
        size_of = I32.unpack_from
        big_ok = hive.minor >= BIG_DATA_MIN_MINOR
        used = array("H", [0]) * (limit // 8 + 1)
        used_big = self.used_big
        keys = array("Q")
        values = array("Q")
        data = array("Q")
        wide = self.wide_names

        def body(offset: int, what: str) -> int:
            """Body length of the allocated cell at `offset`, checked like `CellStore.cell`."""
            if offset & 7 or not HBIN_HEADER_SIZE <= offset <= limit - 8:
                hive.corrupt(f"{what} offset outside the hive bins", offset)
            size = size_of(buf, base - 4 + offset)[0]
            if size >= 0 or offset - size > limit or size > -8:
                hive.corrupt(f"{what} is not an allocated cell", offset)
            return -size - 4

        def allocated(offset: int) -> bool:
            if offset & 7 or not HBIN_HEADER_SIZE <= offset <= limit - 8:
                return False
            size = size_of(buf, base - 4 + offset)[0]
            return size <= -8 and offset - size <= limit

        def mark(offset: int, length: int, what: str) -> None:
            want = min(length, body(offset, what)) + 1
            slot = offset >> 3
            if want >= BIG_USED:
                used[slot] = BIG_USED
                used_big[slot] = max(want, used_big.get(slot, 0))
            elif used[slot] < want:
                used[slot] = want

        def mark_list(offset: int, parent: int) -> None:
            length = body(offset, "subkey list")
            pos = base + offset
            sig = bytes(buf[pos : pos + 2])
            count = buf[pos + 2] | buf[pos + 3] << 8
            if sig == b"ri":
                mark(offset, 4 + count * 4, "subkey list")
                leaves = struct.unpack_from(f"<{min(count, (length - 4) // 4)}I", buf, pos + 4)
                for leaf in reversed(leaves):
                    leaf_len = body(leaf, "subkey list")
                    if buf[base + leaf : base + leaf + 2] == b"ri":
                        hive.corrupt("an ri list inside an ri list", leaf)
                    mark_leaf(leaf, leaf_len, parent)
                return
            mark_leaf(offset, length, parent)

        def mark_leaf(offset: int, length: int, parent: int) -> None:
            pos = base + offset
            sig = bytes(buf[pos : pos + 2])
            count = buf[pos + 2] | buf[pos + 3] << 8
            if sig in (b"lf", b"lh"):
                if 4 + count * 8 > length:
                    hive.corrupt(f"{sig.decode()} list is larger than its cell", offset)
                children = struct.unpack_from(f"<{count * 2}I", buf, pos + 4)[::2]
                mark(offset, 4 + count * 8, "subkey list")
            elif sig == b"li":
                if 4 + count * 4 > length:
                    hive.corrupt("li list is larger than its cell", offset)
                children = struct.unpack_from(f"<{count}I", buf, pos + 4)
                mark(offset, 4 + count * 4, "subkey list")
            else:
                hive.corrupt(f"bad subkey list signature {sig!r} (expected li, lf or lh)", offset)
            stack.extend((child, parent) for child in reversed(children))

        seen: set[int] = set()
        stack = [(hive.root_offset, NIL)]
        while stack:
            offset, parent = stack.pop()
            if offset in seen:
                hive.corrupt("key reached twice (a loop in subkey lists)", offset)
            seen.add(offset)
            length = body(offset, "key")
            pos = base + offset
            if length < NK_SIZE or buf[pos : pos + 2] != b"nk":
                hive.corrupt("expected a key (nk) cell", offset)
            fields = nk_unpack(buf, pos)
            keys.append(offset << 32 | parent)
            used[offset >> 3] = min(NK_SIZE + fields[18], length) + 1  # at most 76 + 65535: fits
            if not fields[1] & KEY_COMP_NAME and fields[18]:
                wide.add(offset)
            if fields[12] != NIL and fields[19]:
                mark(fields[12], fields[19], "class name")
            nvalues = fields[9]
            if nvalues:
                vlist = fields[10]
                llen = body(vlist, "value list")
                if nvalues * 4 > llen:
                    hive.corrupt(f"value list of {nvalues} entries is larger than its cell", vlist)
                mark(vlist, nvalues * 4, "value list")
                for vk in struct.unpack_from(f"<{nvalues}I", buf, base + vlist):
                    # the checks of body() written out: this runs once per value of the hive
                    vcell = size_of(buf, base - 4 + vk)[0] if vk <= limit - 8 else 0
                    vpos = base + vk
                    if vk & 7 or vk < HBIN_HEADER_SIZE or vcell > -(4 + VK_SIZE) or vk - vcell > limit \
                            or buf[vpos : vpos + 2] != b"vk":
                        body(vk, "value")
                        hive.corrupt("expected a value (vk) cell", vk)
                    _sig, name_len, size, data_off, _t, flags, _s = vk_unpack(buf, vpos)
                    values.append(vk << 32 | offset)
                    vlen = -vcell - 4
                    used[vk >> 3] = (VK_SIZE + name_len if VK_SIZE + name_len < vlen else vlen) + 1
                    if name_len and not flags & VALUE_COMP_NAME:
                        wide.add(vk)
                    if not size or size & 0x80000000:
                        continue  # inline or empty
                    dcell = size_of(buf, base - 4 + data_off)[0] if data_off <= limit - 8 else 0
                    if data_off & 7 or data_off < HBIN_HEADER_SIZE or dcell > -8 or data_off - dcell > limit:
                        continue  # a dangling offset (reading the value says so)
                    dlen = -dcell - 4
                    data.append(data_off << 32 | vk)
                    dpos = base + data_off
                    if size > BIG_DATA_SEGMENT and big_ok and buf[dpos : dpos + 2] == b"db":
                        self._add_big(data, vk, data_off)
                        count = buf[dpos + 2] | buf[dpos + 3] << 8
                        seglist = U32.unpack_from(buf, dpos + 4)[0]
                        mark(data_off, 8, "big data")
                        mark(seglist, count * 4, "big data segment list")
                        slen = body(seglist, "big data segment list")
                        remaining = size
                        for segment in struct.unpack_from(f"<{min(count, slen // 4)}I", buf, base + seglist):
                            mark(segment, min(remaining, BIG_DATA_SEGMENT), "big data segment")
                            remaining = max(remaining - BIG_DATA_SEGMENT, 0)
                    else:
                        want = (size if size < dlen else dlen) + 1
                        if want >= BIG_USED:
                            mark(data_off, size, "value data")
                        elif used[data_off >> 3] < want:
                            used[data_off >> 3] = want
            if fields[7] != NIL:
                mark_list(fields[7], offset)
        sk_start = U32.unpack_from(buf, base + hive.root_offset + 0x2C)[0]
        if sk_start != NIL:
            for sk in hive.security_cells.all(sk_start):
                pos, _length = store.cell(sk, "security cell")
                mark(sk, SK_SIZE + SK.unpack_from(buf, pos)[5], "security cell")
        self.key_count = len(keys)
        self.value_count = len(values)
        self.used = used
        # sorted one at a time: the list sorted() makes is the largest thing held here
        self._keys = array("Q", sorted(keys))
        del keys
        self._values = array("Q", sorted(values))
        del values
        self._data = array("Q", sorted(data))

    def _add_big(self, data: array | list[int], vk: int, data_off: int) -> None:  # type: ignore[type-arg]
        """A value over 16,344 bytes: its db cell, segment list and segments belong to it."""
        store = self._hive.store
        try:
            pos, _length = store.cell(data_off, "value data")
        except CorruptData:
            return
        if store.buf[pos : pos + 2] != b"db":
            return
        self.big_values.add(vk)
        count = U16.unpack_from(store.buf, pos + 2)[0]
        seglist = store.u32(pos + 4)
        try:
            lpos, llen = store.cell(seglist, "big data segment list")
        except CorruptData:
            return
        data.append(seglist << 32 | vk)
        for segment in struct.unpack_from(f"<{min(count, llen // 4)}I", store.buf, lpos):
            data.append(segment << 32 | vk)

    # --------------------------------------------------- the writer reports here
    def note_key(self, offset: int, parent: int) -> None:
        """A key cell was created or moved (rename): `offset` now lies under `parent`."""
        _put(self._keys, offset, parent)
        if not self._built:
            return
        buf = self._hive.store.buf
        flags = U16.unpack_from(buf, BASE_BLOCK_SIZE + 4 + offset + 2)[0]
        if not flags & KEY_COMP_NAME and U16.unpack_from(buf, BASE_BLOCK_SIZE + 4 + offset + 0x48)[0]:
            self.wide_names.add(offset)

    def note_value(self, vk: int, key: int) -> None:
        """A value cell (new, or with new data) belongs to the key at `key`."""
        if not self._built:
            return
        hive = self._hive
        _put(self._values, vk, key)
        pos = BASE_BLOCK_SIZE + 4 + vk
        _sig, name_len, size, data_off, _type, flags, _spare = VK.unpack_from(hive.store.buf, pos)
        if not flags & VALUE_COMP_NAME and name_len:
            self.wide_names.add(vk)
        if size and not size & 0x80000000 and data_off != NIL:
            _put(self._data, data_off, vk)
            if size > BIG_DATA_SEGMENT and hive.minor >= BIG_DATA_MIN_MINOR:
                extra: list[int] = []
                self._add_big(extra, vk, data_off)
                for entry in extra:
                    _put(self._data, entry >> 32, entry & _LOW)

    # ----------------------------------------------------------------- checking
    def _live_key(self, nk: int) -> bool:
        """`nk` is a key of the tree now: an nk cell its parent lists (or the root)."""
        self.build()
        hive = self._hive
        if nk == hive.root_offset:
            return True
        parent = _get(self._keys, nk)
        if parent is None or not self._is_cell(nk, b"nk") or not self._is_cell(parent, b"nk"):
            return False
        sublist = hive.store.u32(BASE_BLOCK_SIZE + 4 + parent + 0x1C)
        try:
            return any(child == nk for child, _h in lists.read_entries(hive.store, sublist))
        except CorruptData:
            return False

    def _is_cell(self, offset: int, sig: bytes) -> bool:
        store = self._hive.store
        if offset & 7 or not HBIN_HEADER_SIZE <= offset <= store.hbins_size - 8:
            return False
        at = BASE_BLOCK_SIZE + offset
        return I32.unpack_from(store.buf, at)[0] < 0 and store.buf[at + 4 : at + 6] == sig

    def owner_key(self, vk: int) -> int | None:
        """The key that lists value `vk` now, or None (a stale or foreign cell)."""
        self.build()
        nk = _get(self._values, vk)
        if nk is None or not self._is_cell(vk, b"vk") or not self._live_key(nk):
            return None
        hive = self._hive
        pos = BASE_BLOCK_SIZE + 4 + nk
        count = hive.store.u32(pos + 0x24)
        if not count:
            return None
        try:
            lpos, llen = hive.store.cell(hive.store.u32(pos + 0x28), "value list")
        except CorruptData:
            return None
        listed = struct.unpack_from(f"<{min(count, llen // 4)}I", hive.store.buf, lpos)
        return nk if vk in listed else None

    def _data_owner(self, cell: int) -> int | None:
        """The value whose data (or big-data structure) is `cell`, checked against the hive."""
        self.build()
        vk = _get(self._data, cell)
        if vk is None or self.owner_key(vk) is None:
            return None
        store = self._hive.store
        pos = BASE_BLOCK_SIZE + 4 + vk
        size, data_off = struct.unpack_from("<II", store.buf, pos + 4)
        if size & 0x80000000 or not size:
            return None
        if data_off == cell:
            return vk
        if vk in self.big_values:
            extra: list[int] = []
            self._add_big(extra, vk, data_off)
            if any(entry >> 32 == cell for entry in extra):
                return vk
        return None

    # ------------------------------------------------------------------ finding
    def find(self, needles: Sequence[Needle]) -> list[Occurrence]:
        """Every place each needle occurs in the hive bins, overlapping matches included."""
        store = self._hive.store
        buf = store.buf
        start = BASE_BLOCK_SIZE
        end = BASE_BLOCK_SIZE + store.hbins_size
        hits: list[tuple[int, int, int]] = []  # (file offset, needle index, length)
        exact = [(i, n.data) for i, n in enumerate(needles) if n.data and not n.ascii_nocase]
        folded = [(i, n.data) for i, n in enumerate(needles) if n.data and n.ascii_nocase]
        for index, needle in exact:
            at = buf.find(needle, start, end)
            while at >= 0:
                hits.append((at, index, len(needle)))
                at = buf.find(needle, at + 1, end)
        if folded:
            overlap = max(len(n) for _i, n in folded) - 1
            chunk_at = start
            while chunk_at < end:
                chunk_end = min(chunk_at + _CHUNK, end)
                lowered = buf[chunk_at : min(chunk_end + overlap, end)].lower()
                for index, needle in folded:
                    at = lowered.find(needle)
                    while 0 <= at < chunk_end - chunk_at:
                        hits.append((chunk_at + at, index, len(needle)))
                        at = lowered.find(needle, at + 1)
                chunk_at = chunk_end
        hits.sort()
        cells: dict[int, array] = {}  # type: ignore[type-arg]
        return [self._classify(at, index, length, cells) for at, index, length in hits]

    def _cells_of_bin(self, rel: int, cache: dict[int, array]) -> tuple[array, int]:  # type: ignore[type-arg]
        store = self._hive.store
        bin_start, bin_size = store.bin_of(rel)
        starts = cache.get(bin_start)
        if starts is None:
            starts = array("I")
            pos = bin_start + HBIN_HEADER_SIZE
            end = bin_start + bin_size
            while pos < end:
                size = I32.unpack_from(store.buf, BASE_BLOCK_SIZE + pos)[0]
                length = -size if size < 0 else size
                if length < 8 or length % 8 or pos + length > end:
                    raise CorruptData(f"{store.label}: bad cell size {size} at offset "
                                      f"{BASE_BLOCK_SIZE + pos:#x}; run `reseal hive check`")
                starts.append(pos)
                pos += length
            cache[bin_start] = starts
        return starts, bin_start

    def _classify(self, at: int, needle: int, length: int, cache: dict[int, array]) -> Occurrence:  # type: ignore[type-arg]
        store = self._hive.store
        buf = store.buf
        rel = at - BASE_BLOCK_SIZE
        starts, bin_start = self._cells_of_bin(rel, cache)
        index = bisect_right(starts, rel) - 1
        if index < 0:  # inside the hive bin header
            return Occurrence(needle, OTHER_CELL, at, bin_start, None, None)
        cell = starts[index]
        size = I32.unpack_from(buf, BASE_BLOCK_SIZE + cell)[0]
        if size > 0:
            return Occurrence(needle, FREE_CELL, at, cell, None, None)
        body = cell + 4
        body_end = cell - size
        match_end = rel + length

        def region(kind: str, first: int, last: int, key: int | None, value: int | None) -> Occurrence:
            if first <= rel and match_end <= last:
                return Occurrence(needle, kind, at, cell, key, value)
            return Occurrence(needle, SLACK if rel >= first else OTHER_CELL, at, cell, key, value)

        vk = self._data_owner(cell)
        if vk is not None:
            key = self.owner_key(vk)
            if vk in self.big_values:
                return Occurrence(needle, VALUE_DATA, at, cell, key, vk)
            data_size = U32.unpack_from(buf, BASE_BLOCK_SIZE + 4 + vk + 4)[0]
            return region(VALUE_DATA, body, min(body + data_size, body_end), key, vk)
        kind = bytes(buf[BASE_BLOCK_SIZE + body : BASE_BLOCK_SIZE + body + 2])
        if kind == b"vk":
            key = self.owner_key(cell)
            if key is not None:
                name_len, size_field = struct.unpack_from("<HI", buf, BASE_BLOCK_SIZE + body + 2)
                name_at = body + VK_SIZE
                if size_field & 0x80000000 and body + 8 <= rel < body + 12:
                    inline = min(size_field & 0x7FFFFFFF, 4)
                    return region(VALUE_DATA, body + 8, body + 8 + inline, key, cell)
                if rel >= name_at:
                    return region(VALUE_NAME, name_at, min(name_at + name_len, body_end), key, cell)
                return Occurrence(needle, OTHER_CELL, at, cell, key, cell)
        elif kind == b"nk" and self._live_key(cell):
            name_len = U16.unpack_from(buf, BASE_BLOCK_SIZE + body + 0x48)[0]
            name_at = body + NK_SIZE
            if rel >= name_at:
                return region(KEY_NAME, name_at, min(name_at + name_len, body_end), cell, None)
            return Occurrence(needle, OTHER_CELL, at, cell, cell, None)
        return Occurrence(needle, OTHER_CELL, at, cell, None, None)

    # ----------------------------------------------------------------- answers
    def key_at(self, nk: int) -> Key:
        """The key whose cell is `nk`, with its path (found through the walk's parents)."""
        from reseal.registry.nodes import Key

        self.build()
        hive = self._hive
        names: list[str] = []
        current = nk
        for _ in range(4096):  # deeper than any real hive (Windows allows 512 levels)
            if current == hive.root_offset or current == NIL:
                break
            names.append(Key(hive, current, None).name)
            parent = _get(self._keys, current)
            if parent is None:
                hive.corrupt("key is not in the hive index", current)
            current = parent
        else:
            hive.corrupt("key path deeper than 4096 levels", nk)
        if current == NIL and nk != hive.root_offset:
            hive.corrupt("key is not below the root key", nk)
        key = Key(hive, nk, None)
        key.path = "\\".join(reversed(names))
        return key

    def value_at(self, vk: int) -> Value:
        from reseal.registry.nodes import Value

        return Value(self._hive, vk)

    def value_position(self, nk: int, vk: int) -> int:
        """Where value `vk` stands in the value list of key `nk` (listing order)."""
        return self._hive.value_offsets(nk).index(vk)

    def wide_keys(self) -> Iterable[Key]:
        """Live keys whose names are stored as UTF-16 (for needles that need Unicode folding)."""
        self.build()
        for offset in sorted(self.wide_names):
            if _get(self._keys, offset) is not None and self._is_cell(offset, b"nk") and self._live_key(offset):
                yield self.key_at(offset)

    def wide_values(self) -> Iterable[tuple[Key, Value]]:
        """Live values whose names are stored as UTF-16, with their keys."""
        self.build()
        for offset in sorted(self.wide_names):
            key = self.owner_key(offset) if _get(self._values, offset) is not None else None
            if key is None:
                continue
            yield self.key_at(key), self.value_at(offset)


def walk_order(path: str) -> tuple[bytes, ...]:
    """Sort key giving the order of `Hive.walk()` (depth first, subkeys in stored order) for a
    hive whose subkey lists are sorted, as Windows keeps them."""
    return tuple(sort_key(part) for part in path.split("\\")) if path else ()
