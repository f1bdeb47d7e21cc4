"""Structural check of a hive: the first fault found, with its file offset.

Faults: base block and bin damage, cells that do not tile their bin, bad cell references,
subkey lists that are unsorted or hold duplicates, wrong parent offsets, loops, counts that
disagree, values whose data lies past their cells, sk lists with wrong links or counts, and
"largest name / class / data" fields smaller than what the key holds (RegQueryInfoKey hands
them to programs as buffer sizes; larger is normal, Windows never shrinks them).
Every walk is bounded by the set of cells already seen, so a hostile hive cannot hang it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from reseal.errors import ResealError
from reseal.registry import lists
from reseal.registry.format import (
    BASE_BLOCK_SIZE,
    HBIN_HEADER_SIZE,
    I32,
    NIL,
    NK,
    NK_SIZE,
    U32,
    base_block_checksum,
    lh_hash,
    sort_key,
    upcase,
    utf16_length,
)
from reseal.registry.hive import Hive
from reseal.registry.nodes import Key, Value


@dataclass(frozen=True)
class Fault:
    offset: int  # file offset
    message: str

    def __str__(self) -> str:
        return f"offset {self.offset:#x}: {self.message}"


class _Found(Exception):
    def __init__(self, fault: Fault) -> None:
        self.fault = fault


def _fault(offset: int, message: str, relative: bool = True) -> None:
    raise _Found(Fault(offset + (BASE_BLOCK_SIZE if relative else 0), message))


def check_bytes(data: bytes, logs: list[bytes] | None = None, name: str = "hive") -> Fault | None:
    """Open (recovering from logs) and check; None when the hive is sound."""
    try:
        hive = Hive.from_bytes(data, logs, name)
    except ResealError as exc:
        return Fault(0, str(exc))
    return check_hive(hive)


def check_hive(hive: Hive) -> Fault | None:
    store = hive.store
    try:
        _check_base(hive)
        starts = _check_cells(hive)
        # every reference must name a cell where the bins' tiling has one: a reference into
        # the middle of a cell (cells that overlap) reads fine and is destroyed by the first
        # edit that frees or splits either cell
        read_cell = store.cell

        def tiled_cell(offset: int, what: str = "cell") -> tuple[int, int]:
            if offset not in starts and offset & 7 == 0 and 0 <= offset < store.hbins_size:
                _fault(offset, f"{what} offset {offset:#x} is not the start of a cell (cells "
                       "overlap)")
            return read_cell(offset, what)

        store.cell = tiled_cell  # type: ignore[method-assign]
        try:
            _check_tree(hive)
        finally:
            del store.cell
    except _Found as found:
        return found.fault
    except ResealError as exc:
        return Fault(0, str(exc))
    return None


def _check_base(hive: Hive) -> None:
    buf = hive.store.buf
    if U32.unpack_from(buf, 0x1FC)[0] != base_block_checksum(buf) and not hive.recovered:
        _fault(0x1FC, "base block checksum is wrong", relative=False)
    if U32.unpack_from(buf, 0x14)[0] != 1:
        _fault(0x14, "major version is not 1", relative=False)


def _check_cells(hive: Hive) -> set[int]:
    """The bins are tiled by cells; returns the offsets where cells start."""
    buf = hive.store.buf
    starts: set[int] = set()
    for start, size in hive.store.bins:
        pos = start + HBIN_HEADER_SIZE
        end = start + size
        while pos < end:
            cell_size = I32.unpack_from(buf, BASE_BLOCK_SIZE + pos)[0]
            length = abs(cell_size)
            if length < 8 or length % 8:
                _fault(pos, f"cell size {cell_size} is not a positive multiple of 8")
            if pos + length > end:
                _fault(pos, f"cell of {length} bytes runs past the end of its hive bin")
            starts.add(pos)
            pos += length
    return starts


def _check_tree(hive: Hive) -> None:
    store = hive.store
    seen: set[int] = set()
    sk_refs: dict[int, int] = {}
    sizes: list[tuple[int, tuple[int, ...], list[lists.Entry], tuple[int, int]]] = []
    stack: list[tuple[int, int | None]] = [(hive.root_offset, None)]
    while stack:
        offset, parent = stack.pop()
        if offset in seen:
            _fault(offset, "key reached twice: a loop or a key listed under two parents")
        seen.add(offset)
        pos, length = store.cell(offset, "key")
        if length < NK_SIZE or buf_sig(hive, pos) != b"nk":
            _fault(offset, "expected a key (nk) cell")
        fields = NK.unpack_from(store.buf, pos)
        nsub, sublist, nvalues, vlist, sk, cls_off = fields[5], fields[7], fields[9], fields[10], fields[11], fields[12]
        if parent is not None and fields[4] != parent:
            _fault(offset, f"parent offset {fields[4]:#x} is not the parent key {parent:#x}")
        if NK_SIZE + fields[18] > length:
            _fault(offset, "key name runs past its cell")
        if cls_off != NIL and fields[19]:
            _cpos, clen = store.cell(cls_off, "class name")
            if fields[19] > clen:
                _fault(cls_off, "class name is larger than its cell")
        if sk != NIL:
            sk_refs[sk] = sk_refs.get(sk, 0) + 1
        longest_value = _check_values(hive, offset, nvalues, vlist)
        entries = lists.read_entries(store, sublist) if nsub or sublist != NIL else []
        if len(entries) != nsub:
            _fault(offset, f"key says {nsub} subkeys, its list holds {len(entries)}")
        _check_order(hive, offset, sublist, entries)
        sizes.append((offset, fields, entries, longest_value))
        for child, _hint in reversed(entries):
            stack.append((child, offset))
    _check_security(hive, sk_refs)
    for size_fields in sizes:  # after the structure: a loop is the fault to report, not a size
        _check_largest(hive, *size_fields)


def buf_sig(hive: Hive, pos: int) -> bytes:
    return bytes(hive.store.buf[pos : pos + 2])


def _check_order(hive: Hive, offset: int, sublist: int, entries: list[lists.Entry]) -> None:
    previous: bytes | None = None
    leaf_is_lh = sublist != NIL and _leaf_kind(hive, sublist) == b"lh"
    for child, hint in entries:
        name = Key(hive, child, None).name
        key = sort_key(name)
        if previous is not None:
            if key == previous:
                _fault(child, f"duplicate subkey {name!r} under key at {BASE_BLOCK_SIZE + offset:#x}")
            if key < previous:
                _fault(sublist, f"subkey list is not sorted: {name!r} comes after a larger name")
        previous = key
        if leaf_is_lh and hint is not None and hint != lh_hash(name):
            _fault(sublist, f"lh hash of {name!r} is {hint:#x}, expected {lh_hash(name):#x}")


def _leaf_kind(hive: Hive, sublist: int) -> bytes:
    pos, _ = hive.store.cell(sublist, "subkey list")
    sig = buf_sig(hive, pos)
    if sig == b"ri":
        first = hive.store.u32(pos + 4)
        fpos, _ = hive.store.cell(first, "subkey list")
        return buf_sig(hive, fpos)
    return sig


def _check_largest(hive: Hive, offset: int, fields: tuple[int, ...], entries: list[lists.Entry],
                   longest_value: tuple[int, int]) -> None:
    name = class_len = 0
    for child, _hint in entries:
        child_pos, _ = hive.store.cell(child, "key")
        class_len = max(class_len, NK.unpack_from(hive.store.buf, child_pos)[19])
        name = max(name, utf16_length(Key(hive, child, None).name))
    stored = {"subkey name": fields[13] & 0xFFFF, "subkey class": fields[14],
              "value name": fields[15], "value data": fields[16]}
    actual = {"subkey name": name, "subkey class": class_len,
              "value name": longest_value[0], "value data": longest_value[1]}
    for what, real in actual.items():
        if stored[what] < real:
            _fault(offset, f"largest {what} length field says {stored[what]}, the key holds "
                   f"{real}")


def _check_values(hive: Hive, offset: int, nvalues: int, vlist: int) -> tuple[int, int]:
    """Checks the key's values; returns the longest value name (UTF-16 bytes) and data."""
    if not nvalues:
        return 0, 0
    pos, length = hive.store.cell(vlist, "value list")
    if nvalues * 4 > length:
        _fault(vlist, f"value list of {nvalues} entries is larger than its cell")
    names: set[str] = set()
    longest_name = longest_data = 0
    for value_offset in struct.unpack_from(f"<{nvalues}I", hive.store.buf, pos):
        value = Value(hive, value_offset)
        upper = upcase(value.name)
        if upper in names:
            _fault(value_offset, f"duplicate value name {value.name!r}")
        names.add(upper)
        hive.value_bytes(value)
        longest_name = max(longest_name, utf16_length(value.name))
        longest_data = max(longest_data, value.size_field & 0x7FFFFFFF)
    return longest_name, longest_data


def _check_security(hive: Hive, refs: dict[int, int]) -> None:
    cells = hive.security_cells
    if not refs:
        return
    start = next(iter(refs))
    ring = cells.all(start)
    for sk in ring:
        flink, blink, count, _d = cells.read(sk)
        if cells.read(flink)[1] != sk:
            _fault(sk, "security cell list is broken (flink/blink disagree)")
        if count < refs.get(sk, 0):
            _fault(sk, f"security cell is used by {refs.get(sk, 0)} keys but counts {count}")
    missing = set(refs) - set(ring)
    if missing:
        _fault(min(missing), "security cell used by a key is not in the security list")
