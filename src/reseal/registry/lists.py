"""Subkey lists (li, lf, lh and ri of leaves): read into entries, write back sorted.

An entry is (nk offset, hint): the lf/lh hint as stored, or None for li entries.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from reseal.errors import CorruptData
from reseal.registry.format import NIL, U16, lf_hint, lh_hash
from reseal.registry.storage import CellStore

LEAF_MAX = 1000  # entries in one leaf before the list becomes an ri of leaves
RI_LEAF = 500  # entries per li leaf under an ri, as Windows writes them
Entry = tuple[int, int | None]


def read_entries(store: CellStore, list_offset: int) -> list[Entry]:
    """All entries of a subkey list, in stored order; ri of ri is refused (not a format Windows writes)."""
    if list_offset == NIL:
        return []
    pos, length = store.cell(list_offset, "subkey list")
    buf = store.buf
    sig = bytes(buf[pos : pos + 2])
    count = U16.unpack_from(buf, pos + 2)[0]
    if sig == b"ri":
        if 4 + count * 4 > length:
            raise CorruptData(f"{store.label}: ri list at offset {list_offset:#x} is larger than its cell")
        entries: list[Entry] = []
        for (leaf,) in struct.iter_unpack("<I", bytes(buf[pos + 4 : pos + 4 + count * 4])):
            entries.extend(_read_leaf(store, leaf, allow_ri=False))
        return entries
    return _read_leaf(store, list_offset, allow_ri=False)


def _read_leaf(store: CellStore, offset: int, allow_ri: bool) -> list[Entry]:
    pos, length = store.cell(offset, "subkey list")
    buf = store.buf
    sig = bytes(buf[pos : pos + 2])
    count = U16.unpack_from(buf, pos + 2)[0]
    if sig in (b"lf", b"lh"):
        if 4 + count * 8 > length:
            raise CorruptData(f"{store.label}: {sig.decode()} list at offset {offset:#x} is larger than its cell")
        flat = struct.unpack_from(f"<{count * 2}I", buf, pos + 4)
        return [(flat[i], flat[i + 1]) for i in range(0, count * 2, 2)]
    if sig == b"li":
        if 4 + count * 4 > length:
            raise CorruptData(f"{store.label}: li list at offset {offset:#x} is larger than its cell")
        return [(o, None) for o in struct.unpack_from(f"<{count}I", buf, pos + 4)]
    raise CorruptData(
        f"{store.label}: bad subkey list signature {sig!r} at offset {offset:#x}"
        + ("" if allow_ri else " (expected li, lf or lh)")
    )


def hashed_leaves(store: CellStore, list_offset: int) -> set[int]:
    """nk offsets listed in lh leaves (whose hints are name hashes); empty for other lists."""
    if list_offset == NIL:
        return set()
    pos, length = store.cell(list_offset, "subkey list")
    sig = bytes(store.buf[pos : pos + 2])
    if sig == b"lh":
        return {child for child, _hint in _read_leaf(store, list_offset, allow_ri=False)}
    if sig != b"ri":
        return set()
    count = min(U16.unpack_from(store.buf, pos + 2)[0], (length - 4) // 4)
    out: set[int] = set()
    for leaf in struct.unpack_from(f"<{count}I", store.buf, pos + 4):
        lpos, _ = store.cell(leaf, "subkey list")
        if store.buf[lpos : lpos + 2] == b"lh":
            out.update(child for child, _hint in _read_leaf(store, leaf, allow_ri=False))
    return out


def list_cells(store: CellStore, list_offset: int) -> list[int]:
    """Every cell a subkey list occupies (the ri cell and its leaves), for freeing."""
    if list_offset == NIL:
        return []
    pos, length = store.cell(list_offset, "subkey list")
    sig = bytes(store.buf[pos : pos + 2])
    if sig != b"ri":
        return [list_offset]
    count = U16.unpack_from(store.buf, pos + 2)[0]
    count = min(count, (length - 4) // 4)
    leaves = list(struct.unpack_from(f"<{count}I", store.buf, pos + 4))
    return [list_offset, *leaves]


def leaf_payload(
    leaf_sig: bytes, entries: list[tuple[int, str, int | None]], name_of: Callable[[int], str] | None = None
) -> bytes:
    """A leaf cell payload; entries are (offset, name or "" if unknown, stored hint or None)."""
    if leaf_sig == b"li":
        return b"li" + U16.pack(len(entries)) + struct.pack(f"<{len(entries)}I", *(e[0] for e in entries))
    out = bytearray(b"" + leaf_sig + U16.pack(len(entries)))
    for offset, name, hint in entries:
        if hint is None:
            if not name and name_of is not None:
                name = name_of(offset)
            hint = lh_hash(name) if leaf_sig == b"lh" else lf_hint(name)
        out += struct.pack("<II", offset, hint)
    return bytes(out)


def write_list(
    store: CellStore, leaf_sig: bytes, entries: list[tuple[int, str, int | None]], name_of: Callable[[int], str]
) -> int:
    """Allocate a subkey list for sorted entries; returns its offset (NIL when empty)."""
    if not entries:
        return NIL
    if len(entries) <= LEAF_MAX:
        return store.alloc(leaf_payload(leaf_sig, entries, name_of))
    leaves = [
        store.alloc(leaf_payload(b"li", entries[i : i + RI_LEAF]))
        for i in range(0, len(entries), RI_LEAF)
    ]
    return store.alloc(b"ri" + U16.pack(len(leaves)) + struct.pack(f"<{len(leaves)}I", *leaves))
