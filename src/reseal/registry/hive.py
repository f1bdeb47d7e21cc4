"""Hive: open (recovering from transaction logs when dirty), read, edit and write a regf hive."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from reseal.errors import BadInput, CorruptData
from reseal.fileio import atomic_write
from reseal.registry import lists
from reseal.registry.format import (
    BASE_BLOCK_SIZE,
    BIG_DATA_MIN_MINOR,
    BIG_DATA_SEGMENT,
    HBIN_ALIGN,
    HBIN_HEADER_SIZE,
    I32,
    KEY_COMP_NAME,
    KEY_HIVE_ENTRY,
    KEY_NO_DELETE,
    NIL,
    NK,
    NK_OFF_CLASS,
    NK_OFF_MAXCLASS,
    NK_OFF_MAXSUBNAME,
    NK_OFF_MAXVALDATA,
    NK_OFF_MAXVALNAME,
    NK_OFF_NSUB,
    NK_OFF_NVALUES,
    NK_OFF_PARENT,
    NK_OFF_SK,
    NK_OFF_SUBLIST,
    NK_OFF_TIME,
    NK_OFF_VALUELIST,
    NK_SIZE,
    U16,
    U32,
    VALUE_COMP_NAME,
    VK,
    VK_SIZE,
    base_block_checksum,
    decode_name,
    encode_name,
    lh_hash,
    now_filetime,
    sort_key,
    upcase,
    utf16_length,
)
from reseal.registry.logs import LOG_SUFFIXES, log_sequence, recover
from reseal.registry.nodes import Key, Value
from reseal.registry.security import SecurityCells, default_descriptor
from reseal.registry.storage import HBIN_HEADER, CellStore
from reseal.registry.types import ValueData, encode_data

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (10 ms at start-up)
if TYPE_CHECKING:
    from typing import NoReturn

    from reseal.registry.index import HiveIndex

MAX_NAME = 255
MAX_VALUE_NAME = 16383
ORIG_SUFFIX = ".reseal-orig"


class Hive:
    """A regf hive held in memory; edits change the bytes, `to_bytes`/`save` write them out."""

    def __init__(self, data: bytearray, name: str, warnings: list[str], recovered: bool, seq_floor: int) -> None:
        self.name = name
        self.warnings = warnings
        self.recovered = recovered
        self.path: Path | None = None
        self._seq_floor = seq_floor
        if len(data) < BASE_BLOCK_SIZE + HBIN_ALIGN:
            raise CorruptData(f"{name}: {len(data)} bytes is too short for a hive (base block + one hive bin)")
        hbins_size = U32.unpack_from(data, 0x28)[0]
        if hbins_size < HBIN_ALIGN or hbins_size % HBIN_ALIGN or BASE_BLOCK_SIZE + hbins_size > len(data):
            raise CorruptData(
                f"{name}: hive bins data size {hbins_size:#x} at offset 0x28 does not fit the file "
                f"({len(data)} bytes); the hive is truncated or damaged"
            )
        self.minor = U32.unpack_from(data, 0x18)[0]
        self.store = CellStore(data, hbins_size, name)
        self.security_cells = SecurityCells(self.store)
        self.root_offset = U32.unpack_from(data, 0x24)[0]
        self.root = Key(self, self.root_offset, None)
        self.leaf_sig = self._preferred_leaf()
        self._index: HiveIndex | None = None

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_bytes(cls, data: bytes | bytearray, logs: list[bytes] | None = None, name: str = "hive") -> Hive:
        """A hive from its file bytes (copied: the caller's object is never changed)."""
        return cls.from_buffer(bytearray(data), logs, name)

    @classmethod
    def from_buffer(cls, data: bytearray, logs: list[bytes] | None = None, name: str = "hive") -> Hive:
        """A hive whose buffer is `data` itself, recovered in place when dirty: the caller
        hands the bytearray over and must not use it afterwards (no copy of a 15 MB hive)."""
        if len(data) < 512 or data[:4] != b"regf":
            raise CorruptData(f"{name}: not a registry hive (no 'regf' signature at offset 0)")
        file_type = U32.unpack_from(data, 0x1C)[0]
        if file_type != 0:
            raise BadInput(f"{name}: file type {file_type} at offset 0x1c: a transaction log, not a hive")
        result = recover(data, [log for log in (logs or []) if log], name)
        seq_floor = max([U32.unpack_from(result.data, 4)[0], *(log_sequence(x) for x in logs or [])])
        recovered = result.data
        buf = recovered if isinstance(recovered, bytearray) else bytearray(recovered)
        return cls(buf, name, result.warnings, result.recovered, seq_floor)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Hive:
        path = Path(path)
        try:
            with open(path, "rb") as handle:
                data = bytearray(os.fstat(handle.fileno()).st_size)
                got = handle.readinto(data)  # straight into the hive's own buffer: no copy
        except OSError as exc:
            raise BadInput(f"cannot read hive {path}: {exc.strerror}") from None
        del data[got:]
        logs = [p.read_bytes() for p in find_logs(path)]
        hive = cls.from_buffer(data, logs, name=path.name)
        hive.path = path
        return hive

    @classmethod
    def new(cls, root_name: str = "ROOT", minor: int = 5) -> Hive:
        """An empty hive holding only its root key (regf 1.`minor`)."""
        base = bytearray(BASE_BLOCK_SIZE)
        struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", 1, 1, now_filetime(), 1, minor, 0, 1, 0x20, HBIN_ALIGN, 1)
        label = root_name.encode("utf-16-le")[-64:]
        base[0x30 : 0x30 + len(label)] = label
        hbin = bytearray(HBIN_ALIGN)
        HBIN_HEADER.pack_into(hbin, 0, b"hbin", 0, HBIN_ALIGN, 0, now_filetime(), 0)
        struct.pack_into("<i", hbin, 32, HBIN_ALIGN - 32)
        data = base + hbin
        U32.pack_into(data, 0x1FC, base_block_checksum(data))
        hive = cls.__new__(cls)
        hive.name = root_name
        hive.warnings = []
        hive.recovered = False
        hive.path = None
        hive._seq_floor = 1
        hive.minor = minor
        hive.store = CellStore(data, HBIN_ALIGN, root_name)
        hive.security_cells = SecurityCells(hive.store)
        hive.leaf_sig = b"lh" if minor >= 5 else b"lf"
        name_raw, compressed = encode_name(root_name)
        flags = KEY_HIVE_ENTRY | KEY_NO_DELETE | (KEY_COMP_NAME if compressed else 0)
        nk = NK.pack(b"nk", flags, now_filetime(), 0, 0, 0, 0, NIL, NIL, 0, NIL, NIL, NIL, 0, 0, 0, 0, 0, len(name_raw), 0)
        hive.root_offset = hive.store.alloc(nk + name_raw)  # first cell: some readers expect the root there
        sk = hive.security_cells.create_alone(default_descriptor())
        hive._nk_set(hive.root_offset, NK_OFF_SK, sk)
        U32.pack_into(data, 0x24, hive.root_offset)
        hive.root = Key(hive, hive.root_offset, None)
        hive._index = None
        return hive

    def index(self) -> HiveIndex:
        """The hive's ownership index (built by one walk on first use, then kept up to date by
        every edit); see `reseal.registry.index`."""
        if self._index is None:
            from reseal.registry.index import HiveIndex  # only runs that search need it

            self._index = HiveIndex(self)
        return self._index

    def corrupt(self, what: str, offset: int) -> NoReturn:
        raise CorruptData(f"{self.name}: {what} at offset {BASE_BLOCK_SIZE + offset:#x}; run `reseal hive check`")

    def _preferred_leaf(self) -> bytes:
        sublist = self._nk_u32(self.root_offset, NK_OFF_SUBLIST)
        try:
            if sublist != NIL:
                pos, _ = self.store.cell(sublist)
                sig = bytes(self.store.buf[pos : pos + 2])
                if sig == b"ri":
                    first = self.store.u32(pos + 4)
                    fpos, _ = self.store.cell(first)
                    sig = bytes(self.store.buf[fpos : fpos + 2])
                if sig in (b"lf", b"lh", b"li"):
                    return sig
        except CorruptData:
            pass
        return b"lh" if self.minor >= 5 else b"lf"

    # ---------------------------------------------------------------- nk helpers
    def _nk_pos(self, offset: int) -> int:
        pos, length = self.store.cell(offset, "key")
        if self.store.buf[pos : pos + 2] != b"nk" or length < NK_SIZE:
            self.corrupt("bad key cell", offset)
        return pos

    def _nk_u32(self, offset: int, field: int) -> int:
        return self.store.u32(self._nk_pos(offset) + field)

    def _nk_set(self, offset: int, field: int, value: int) -> None:
        self.store.put_u32(self._nk_pos(offset) + field, value)

    def _touch(self, offset: int) -> None:
        struct.pack_into("<Q", self.store.buf, self._nk_pos(offset) + NK_OFF_TIME, now_filetime())

    def _raise_max(self, offset: int, field: int, value: int, low16: bool = False) -> None:
        pos = self._nk_pos(offset) + field
        current = self.store.u32(pos)
        if low16:
            if (current & 0xFFFF) < value:
                self.store.put_u32(pos, (current & 0xFFFF0000) | min(value, 0xFFFF))
        elif current < value:
            self.store.put_u32(pos, value)

    # ------------------------------------------------------------------ reading
    def key(self, path: str) -> Key | None:
        current: Key | None = self.root
        for part in split_path(path):
            assert current is not None
            current = self.find_subkey(current, part)
            if current is None:
                return None
        return current

    def _entries(self, offset: int) -> list[lists.Entry]:
        return lists.read_entries(self.store, self._nk_u32(offset, NK_OFF_SUBLIST))

    def subkeys_of(self, key: Key) -> list[Key]:
        return key.subkeys()

    def find_subkey(self, key: Key, name: str) -> Key | None:
        """The subkey named `name` (case-insensitive). lh hashes pick the likely entry first,
        so a lookup in a list of 700 services decodes one name, not 700; a hive with wrong
        hashes is still answered right, by the full comparison that follows a miss."""
        wanted = upcase(name)
        entries = self._entries(key.offset)
        sublist = self._nk_u32(key.offset, NK_OFF_SUBLIST)
        hashed = lists.hashed_leaves(self.store, sublist)
        checked: set[int] = set()
        if hashed:
            wanted_hash = lh_hash(name)
            for child, hint in entries:
                if hint == wanted_hash and child in hashed:
                    checked.add(child)
                    sub = Key(self, child, key.path)
                    if upcase(sub.name) == wanted:
                        return sub
        for child, _hint in entries:
            if child in checked:
                continue
            sub = Key(self, child, key.path)
            if upcase(sub.name) == wanted:
                return sub
        return None

    def value_offsets(self, offset: int) -> list[int]:
        """vk offsets of the key at `offset`, in listing order."""
        return self._value_offsets(offset)

    def _value_offsets(self, offset: int, pos: int | None = None) -> list[int]:
        if pos is None or self.store.buf[pos : pos + 2] != b"nk":
            pos = self._nk_pos(offset)
        count = self.store.u32(pos + NK_OFF_NVALUES)
        if count == 0:
            return []
        vlist = self.store.u32(pos + NK_OFF_VALUELIST)
        lpos, length = self.store.cell(vlist, "value list")
        if count * 4 > length:
            self.corrupt(f"value list of {count} entries is larger than its cell", vlist)
        return list(struct.unpack_from(f"<{count}I", self.store.buf, lpos))

    def values_of(self, offset: int) -> list[Value]:
        return [Value(self, v) for v in self._value_offsets(offset)]

    def find_value(self, offset: int, name: str) -> Value | None:
        wanted = upcase(name)
        for value in self.values_of(offset):
            if upcase(value.name) == wanted:
                return value
        return None

    def value_bytes(self, value: Value) -> bytes:
        size = value.size_field
        if size & 0x80000000:
            length = min(size & 0x7FFFFFFF, 4)
            return U32.pack(value.data_field)[:length]
        if size == 0:
            return b""
        store = self.store
        buf = store.buf
        offset = value.data_field
        cell_size = 0
        if not (offset & 7 or offset < HBIN_HEADER_SIZE or offset + 8 > store.hbins_size):
            cell_size = -I32.unpack_from(buf, BASE_BLOCK_SIZE + offset)[0]
        if cell_size < 8 or offset + cell_size > store.hbins_size:
            store.cell(offset, "value data")  # raises the precise error
        pos, length = BASE_BLOCK_SIZE + 4 + offset, cell_size - 4
        if size <= length:
            return bytes(buf[pos : pos + size])
        if size > BIG_DATA_SEGMENT and self.minor >= BIG_DATA_MIN_MINOR and buf[pos : pos + 2] == b"db":
            return self._big_data(value.data_field, pos, length, size)
        if size > length:
            self.corrupt(f"value data of {size} bytes is larger than its cell ({length})", value.data_field)
        return bytes(buf[pos : pos + size])

    def _big_data(self, offset: int, pos: int, length: int, size: int) -> bytes:
        count = U16.unpack_from(self.store.buf, pos + 2)[0]
        seglist = self.store.u32(pos + 4)
        lpos, llen = self.store.cell(seglist, "big data segment list")
        if count * 4 > llen:
            self.corrupt("big data segment list is larger than its cell", seglist)
        out = bytearray()
        for segment in struct.unpack_from(f"<{count}I", self.store.buf, lpos):
            spos, slen = self.store.cell(segment, "big data segment")
            out += self.store.buf[spos : spos + min(slen, BIG_DATA_SEGMENT)]
        if len(out) < size:
            self.corrupt(f"big data holds {len(out)} of {size} bytes", offset)
        return bytes(out[:size])

    def class_name_of(self, offset: int) -> str | None:
        pos = self._nk_pos(offset)
        cls_off = self.store.u32(pos + NK_OFF_CLASS)
        cls_len = U16.unpack_from(self.store.buf, pos + 0x4A)[0]
        if cls_off == NIL or cls_len == 0:
            return None if cls_off == NIL else ""
        cpos, length = self.store.cell(cls_off, "class name")
        if cls_len > length:
            self.corrupt("class name is larger than its cell", cls_off)
        return bytes(self.store.buf[cpos : cpos + cls_len]).decode("utf-16-le", "replace")

    def security_of(self, offset: int) -> bytes:
        sk = self._nk_u32(offset, NK_OFF_SK)
        if sk == NIL:
            return b""
        return self.security_cells.read(sk)[3]

    def walk(self, start: Key | None = None) -> Iterator[Key]:
        """Every key below and including `start`, depth first, each once even if lists loop."""
        seen: set[int] = set()
        stack = [start or self.root]
        while stack:
            key = stack.pop()
            if key.offset in seen:
                self.corrupt("key reached twice (a loop in subkey lists)", key.offset)
            seen.add(key.offset)
            yield key
            stack.extend(reversed(key.subkeys()))

    def tree(self, start: Key | None = None) -> Iterator[tuple[str, list[tuple[str, int, bytes]]]]:
        """Every key below and including `start` as (path, [(value name, type, raw data)]),
        in `walk()` order: the whole hive read in one tight loop, without a Key or Value object
        per item (a full walk of a 15 MB hive in a fraction of the object walk's time). Every
        offset is checked as `walk()`, `Key.values()` and `Value.raw` check it; a check that
        fails is answered by the slow path, which raises the precise CorruptData."""
        root = start or self.root
        parent_path: str | None = None
        if root.offset != self.root_offset:
            parent_path = root.path.rpartition("\\")[0]
        try:
            yield from self._tree(root.offset, parent_path)
        except struct.error:
            self.corrupt("a structure runs past the end of the hive", 0)

    def _tree(self, start: int, start_parent: str | None) -> Iterator[tuple[str, list[tuple[str, int, bytes]]]]:
        store = self.store
        buf = store.buf
        limit = store.hbins_size
        base = BASE_BLOCK_SIZE + 4
        nk_unpack = NK.unpack_from
        vk_unpack = VK.unpack_from
        size_of = I32.unpack_from
        u32 = U32.unpack_from
        big_ok = self.minor >= BIG_DATA_MIN_MINOR
        read_entries = lists.read_entries
        seen: set[int] = set()
        stack: list[tuple[int, str | None]] = [(start, start_parent)]
        pop = stack.pop
        push = stack.append
        while stack:
            offset, parent = pop()
            if offset in seen:
                self.corrupt("key reached twice (a loop in subkey lists)", offset)
            seen.add(offset)
            cell = size_of(buf, base - 4 + offset)[0]
            pos = base + offset
            if offset & 7 or offset < HBIN_HEADER_SIZE or cell > -(4 + NK_SIZE) or offset - cell > limit \
                    or buf[pos : pos + 2] != b"nk":
                Key(self, offset, parent)  # raises the precise error
            fields = nk_unpack(buf, pos)
            name_len = fields[18]
            if NK_SIZE + name_len > -cell - 4:
                self.corrupt("key name runs past its cell", offset)
            if fields[1] & KEY_COMP_NAME:
                name = buf[pos + NK_SIZE : pos + NK_SIZE + name_len].decode("latin-1")
            else:
                name = decode_name(bytes(buf[pos + NK_SIZE : pos + NK_SIZE + name_len]), False)
            path = "" if parent is None else name if parent == "" else parent + "\\" + name
            values: list[tuple[str, int, bytes]] = []
            nvalues = fields[9]
            if nvalues:
                vlist = fields[10]
                lcell = size_of(buf, base - 4 + vlist)[0] if vlist + 4 <= limit else 0
                if vlist & 7 or vlist < HBIN_HEADER_SIZE or lcell > -8 or vlist - lcell > limit \
                        or nvalues * 4 > -lcell - 4:
                    self._value_offsets(offset)  # raises the precise error
                for vk in struct.unpack_from(f"<{nvalues}I", buf, base + vlist):
                    vcell = size_of(buf, base - 4 + vk)[0]
                    vpos = base + vk
                    if vk & 7 or vk < HBIN_HEADER_SIZE or vcell > -(4 + VK_SIZE) or vk - vcell > limit:
                        Value(self, vk)  # raises the precise error
                    sig, vname_len, size, data_off, vtype, flags, _spare = vk_unpack(buf, vpos)
                    if sig != b"vk" or VK_SIZE + vname_len > -vcell - 4:
                        Value(self, vk)
                    if flags & VALUE_COMP_NAME:
                        vname = buf[vpos + VK_SIZE : vpos + VK_SIZE + vname_len].decode("latin-1")
                    else:
                        vname = decode_name(bytes(buf[vpos + VK_SIZE : vpos + VK_SIZE + vname_len]), False)
                    if size & 0x80000000:
                        raw = u32(buf, vpos + 8)[0].to_bytes(4, "little")[: min(size & 0x7FFFFFFF, 4)]
                    elif not size:
                        raw = b""
                    else:
                        dcell = size_of(buf, base - 4 + data_off)[0] if data_off + 4 <= limit else 0
                        dpos = base + data_off
                        if data_off & 7 or data_off < HBIN_HEADER_SIZE or dcell > -8 or data_off - dcell > limit \
                                or size > -dcell - 4 or (size > BIG_DATA_SEGMENT and big_ok and buf[dpos : dpos + 2] == b"db"):
                            raw = self.value_bytes(Value(self, vk))  # big data, or the precise error
                        else:
                            raw = bytes(buf[dpos : dpos + size])
                    values.append((vname, vtype, raw))
            yield path, values
            sublist = fields[7]
            if sublist == NIL:
                continue
            scell = size_of(buf, base - 4 + sublist)[0] if sublist + 4 <= limit else 0
            spos = base + sublist
            sig = buf[spos : spos + 2]
            count = buf[spos + 2] | buf[spos + 3] << 8
            if sublist & 7 or sublist < HBIN_HEADER_SIZE or scell > -8 or sublist - scell > limit:
                read_entries(store, sublist)  # raises the precise error
            if sig == b"lh" or sig == b"lf":
                if 4 + count * 8 > -scell - 4:
                    read_entries(store, sublist)
                children = struct.unpack_from(f"<{count * 2}I", buf, spos + 4)[-2::-2]
            elif sig == b"li":
                if 4 + count * 4 > -scell - 4:
                    read_entries(store, sublist)
                children = struct.unpack_from(f"<{count}I", buf, spos + 4)[::-1]
            else:
                children = tuple(child for child, _hint in read_entries(store, sublist))[::-1]
            for child in children:
                push((child, path))

    # ------------------------------------------------------------------ security
    def security_descriptors(self) -> list[bytes]:
        start = self._nk_u32(self.root_offset, NK_OFF_SK)
        return [self.security_cells.read(o)[3] for o in self.security_cells.all(start)]

    def set_security(self, key: Key, descriptor: bytes) -> None:
        old = self._nk_u32(key.offset, NK_OFF_SK)
        start = old if old != NIL else self._nk_u32(self.root_offset, NK_OFF_SK)
        found = self.security_cells.find(start, descriptor) if start != NIL else None
        if found == old and old != NIL:
            return
        if found is not None:
            self.security_cells.add_ref(found)
            new = found
        else:
            if start == NIL:
                new = self.security_cells.create_alone(descriptor)
            else:
                new = self.security_cells.insert_after(start, descriptor, 1)
        self._nk_set(key.offset, NK_OFF_SK, new)
        if old != NIL:
            self.security_cells.add_ref(old, -1)
        self._touch(key.offset)

    def map_security_descriptors(self, fn: Callable[[bytes], bytes | None]) -> int:
        """Rewrite every sk cell through `fn` (None = keep); returns how many changed."""
        start = self._nk_u32(self.root_offset, NK_OFF_SK)
        moved: dict[int, int] = {}
        changed = 0
        for offset in self.security_cells.all(start):
            old = self.security_cells.read(offset)[3]
            new = fn(old)
            if new is None or new == old:
                continue
            changed += 1
            new_offset = self.security_cells.rewrite(offset, new)
            if new_offset != offset:
                moved[offset] = new_offset
        if moved:
            for key in self.walk():
                sk = self._nk_u32(key.offset, NK_OFF_SK)
                if sk in moved:
                    self._nk_set(key.offset, NK_OFF_SK, moved[sk])
        return changed

    # -------------------------------------------------------------------- values
    def _store_data(self, raw: bytes) -> tuple[int, int]:
        """(size field, data field) for value data, allocating cells as needed."""
        if len(raw) <= 4:
            return 0x80000000 | len(raw), U32.unpack(raw.ljust(4, b"\0"))[0]
        if len(raw) > BIG_DATA_SEGMENT and self.minor >= BIG_DATA_MIN_MINOR:
            segments = [
                self.store.alloc(raw[i : i + BIG_DATA_SEGMENT]) for i in range(0, len(raw), BIG_DATA_SEGMENT)
            ]
            seglist = self.store.alloc(struct.pack(f"<{len(segments)}I", *segments))
            return len(raw), self.store.alloc(b"db" + U16.pack(len(segments)) + U32.pack(seglist) + b"\0\0\0\0")
        return len(raw), self.store.alloc(raw)

    def _free_data(self, size: int, data_off: int) -> None:
        if size & 0x80000000 or size == 0 or data_off == NIL:
            return
        try:
            pos, _length = self.store.cell(data_off, "value data")
        except CorruptData:
            return  # dangling data offset: nothing of ours to free
        if size > BIG_DATA_SEGMENT and self.minor >= BIG_DATA_MIN_MINOR and self.store.buf[pos : pos + 2] == b"db":
            count = U16.unpack_from(self.store.buf, pos + 2)[0]
            seglist = self.store.u32(pos + 4)
            lpos, llen = self.store.cell(seglist, "big data segment list")
            for segment in struct.unpack_from(f"<{min(count, llen // 4)}I", self.store.buf, lpos):
                self.store.free(segment)
            self.store.free(seglist)
        self.store.free(data_off)

    def set_value(self, key: Key, name: str, value_type: int, data: ValueData) -> Value:
        if len(name) > MAX_VALUE_NAME or not 0 <= value_type <= 0xFFFFFFFF:
            raise BadInput(f"value name or type out of range for {key.path or '<root>'}\\{name}")
        raw = encode_data(value_type, data)
        existing = self.find_value(key.offset, name)
        size, data_off = self._store_data(raw)
        if existing is not None:
            self._free_data(existing.size_field, existing.data_field)
            pos, _ = self.store.cell(existing.offset, "value")
            struct.pack_into("<III", self.store.buf, pos + 4, size, data_off, value_type)
            vk_offset = existing.offset
        else:
            name_raw, compressed = encode_name(name)
            # the default value has no name and, as Windows writes it, no flags (impacket relies on it)
            flags = VALUE_COMP_NAME if compressed and name_raw else 0
            vk = VK.pack(b"vk", len(name_raw), size, data_off, value_type, flags, 0)
            vk_offset = self.store.alloc(vk + name_raw)
            offsets = [*self._value_offsets(key.offset), vk_offset]
            self._write_value_list(key.offset, offsets)
            self._raise_max(key.offset, NK_OFF_MAXVALNAME, utf16_length(name))
        self._raise_max(key.offset, NK_OFF_MAXVALDATA, len(raw))
        self._touch(key.offset)
        if self._index is not None:
            self._index.note_value(vk_offset, key.offset)
        return Value(self, vk_offset)

    def _write_value_list(self, offset: int, offsets: list[int]) -> None:
        old = self._nk_u32(offset, NK_OFF_VALUELIST) if self._nk_u32(offset, NK_OFF_NVALUES) else NIL
        payload = struct.pack(f"<{len(offsets)}I", *offsets)
        if not offsets:
            new = NIL
            if old != NIL:
                self.store.free(old)
        elif old == NIL:
            new = self.store.alloc(payload)
        else:
            new = self.store.realloc(old, payload)
        self._nk_set(offset, NK_OFF_VALUELIST, new)
        self._nk_set(offset, NK_OFF_NVALUES, len(offsets))

    def delete_value(self, key: Key, name: str) -> bool:
        existing = self.find_value(key.offset, name)
        if existing is None:
            return False
        offsets = [o for o in self._value_offsets(key.offset) if o != existing.offset]
        self._free_data(existing.size_field, existing.data_field)
        self.store.free(existing.offset)
        self._write_value_list(key.offset, offsets)
        self._touch(key.offset)
        return True

    # ---------------------------------------------------------------------- keys
    def _child_names(self, offset: int, skip: int = NIL) -> list[tuple[int, str, int | None]]:
        return [(child, Key(self, child, None).name, None) for child, _h in self._entries(offset) if child != skip]

    def _stored_hints(self, offset: int) -> list[tuple[int, str, int | None]] | None:
        """Entries with their stored hints when the list already has our leaf kind (no names read)."""
        sublist = self._nk_u32(offset, NK_OFF_SUBLIST)
        if sublist == NIL or self.leaf_sig == b"li":
            return None
        pos, _ = self.store.cell(sublist, "subkey list")
        sig = bytes(self.store.buf[pos : pos + 2])
        if sig != self.leaf_sig and sig != b"ri":
            return None
        entries = self._entries(offset)
        if sig == b"ri":  # li leaves carry no hints; they are computed if the list shrinks to one leaf
            return [(child, "", None) for child, _hint in entries]
        return [(child, "", hint) for child, hint in entries]

    def _insert_sorted(self, offset: int, child: int, name: str) -> None:
        """Add one subkey: binary search over the sorted list, reading only log(n) names."""
        entries = self._stored_hints(offset)
        if entries is None or len(entries) < 32:
            entries = self._child_names(offset)
            entries.append((child, name, None))
            self._rewrite_subkeys(offset, entries)
            return
        wanted = sort_key(name)
        low, high = 0, len(entries)
        while low < high:
            middle = (low + high) // 2
            if sort_key(Key(self, entries[middle][0], None).name) < wanted:
                low = middle + 1
            else:
                high = middle
        entries.insert(low, (child, name, None))
        self._rewrite_subkeys(offset, entries, presorted=True)

    def _remove_entry(self, offset: int, child: int) -> None:
        entries = self._stored_hints(offset)
        if entries is None:
            self._rewrite_subkeys(offset, self._child_names(offset, skip=child))
        else:
            self._rewrite_subkeys(offset, [e for e in entries if e[0] != child], presorted=True)

    def _rewrite_subkeys(self, offset: int, entries: list[tuple[int, str, int | None]], presorted: bool = False) -> None:
        if not presorted:
            entries.sort(key=lambda e: sort_key(e[1]))
        old = self._nk_u32(offset, NK_OFF_SUBLIST)
        cells = lists.list_cells(self.store, old)
        new = lists.write_list(self.store, self.leaf_sig, entries, lambda child: Key(self, child, None).name)
        for cell in cells:
            self.store.free(cell)
        self._nk_set(offset, NK_OFF_SUBLIST, new)
        self._nk_set(offset, NK_OFF_NSUB, len(entries))

    def create_key(self, path: str, class_name: str | None = None) -> Key:
        parts = split_path(path)
        if not parts:
            raise BadInput("create_key: an empty path names the root key, which always exists")
        current = self.root
        for index, part in enumerate(parts):
            child = self.find_subkey(current, part)
            if child is None:
                cls = class_name if index == len(parts) - 1 else None
                child = self._create_child(current, part, cls)
            current = child
        return current

    def _create_child(self, parent: Key, name: str, class_name: str | None) -> Key:
        if not name or len(name) > MAX_NAME or "\\" in name:
            raise BadInput(f"bad key name {name!r}: 1 to {MAX_NAME} characters, no backslash")
        cls_off, cls_len = NIL, 0
        if class_name is not None:
            cls_raw = class_name.encode("utf-16-le", "surrogatepass")
            cls_off, cls_len = self.store.alloc(cls_raw), len(cls_raw)
        sk = self._nk_u32(parent.offset, NK_OFF_SK)
        if sk != NIL:
            self.security_cells.add_ref(sk)
        name_raw, compressed = encode_name(name)
        nk = NK.pack(
            b"nk", KEY_COMP_NAME if compressed else 0, now_filetime(), 0, parent.offset, 0, 0, NIL, NIL, 0, NIL,
            sk, cls_off, 0, 0, 0, 0, 0, len(name_raw), cls_len,
        )
        offset = self.store.alloc(nk + name_raw)
        if self._index is not None:
            self._index.note_key(offset, parent.offset)
        self._insert_sorted(parent.offset, offset, name)
        self._raise_max(parent.offset, NK_OFF_MAXSUBNAME, utf16_length(name), low16=True)
        self._raise_max(parent.offset, NK_OFF_MAXCLASS, cls_len)
        self._touch(parent.offset)
        return Key(self, offset, parent.path)

    def _parent_of(self, path: str) -> tuple[Key, Key]:
        parts = split_path(path)
        if not parts:
            raise BadInput("the root key cannot be deleted or renamed this way")
        parent = self.key("\\".join(parts[:-1]))
        child = self.find_subkey(parent, parts[-1]) if parent is not None else None
        if parent is None or child is None:
            raise BadInput(f"key not found: {path}")
        return parent, child

    def delete_key(self, path: str) -> bool:
        if not split_path(path):
            raise BadInput("the root key cannot be deleted")
        try:
            parent, child = self._parent_of(path)
        except BadInput:
            return False
        for key in list(self.walk(child))[::-1]:
            self._free_key_cells(key.offset)
        self._remove_entry(parent.offset, child.offset)
        self._touch(parent.offset)
        return True

    def _free_key_cells(self, offset: int) -> None:
        for value in self.values_of(offset):
            self._free_data(value.size_field, value.data_field)
            self.store.free(value.offset)
        if self._nk_u32(offset, NK_OFF_NVALUES):
            self.store.free(self._nk_u32(offset, NK_OFF_VALUELIST))
        for cell in lists.list_cells(self.store, self._nk_u32(offset, NK_OFF_SUBLIST)):
            self.store.free(cell)
        cls_off = self._nk_u32(offset, NK_OFF_CLASS)
        if cls_off != NIL:
            self.store.free(cls_off)
        sk = self._nk_u32(offset, NK_OFF_SK)
        if sk != NIL:
            self.security_cells.add_ref(sk, -1)
        self.store.free(offset)

    def rename_key(self, path: str, new_name: str) -> Key:
        if not new_name or len(new_name) > MAX_NAME or "\\" in new_name:
            raise BadInput(f"bad key name {new_name!r}: 1 to {MAX_NAME} characters, no backslash")
        if not split_path(path):
            return self._rename_root(new_name)
        parent, child = self._parent_of(path)
        clash = self.find_subkey(parent, new_name)
        if clash is not None and clash.offset != child.offset:
            raise BadInput(f"cannot rename {path}: {parent.path or '<root>'} already has a key {new_name!r}")
        new_offset = self._rename_nk(child.offset, new_name)
        entries: list[tuple[int, str, int | None]] = [
            (new_offset if off == child.offset else off, new_name if off == child.offset else nm, None)
            for off, nm, _h in self._child_names_raw(parent.offset, child.offset, new_offset)
        ]
        self._rewrite_subkeys(parent.offset, entries)
        self._raise_max(parent.offset, NK_OFF_MAXSUBNAME, utf16_length(new_name), low16=True)
        self._touch(parent.offset)
        return Key(self, new_offset, parent.path)

    def _rename_root(self, new_name: str) -> Key:
        """Rename the root key (UsrClass.dat's root is named `<user SID>_Classes`)."""
        new_offset = self._rename_nk(self.root_offset, new_name)
        if new_offset != self.root_offset:
            self.root_offset = new_offset
            U32.pack_into(self.store.buf, 0x24, new_offset)
        self.root = Key(self, self.root_offset, None)
        return self.root

    def _rename_nk(self, offset: int, new_name: str) -> int:
        """Rewrite an nk cell with a new name (moving it when it grows); children follow."""
        pos = self._nk_pos(offset)
        header = bytearray(self.store.buf[pos : pos + NK_SIZE])
        name_raw, compressed = encode_name(new_name)
        flags = (U16.unpack_from(header, 2)[0] & ~KEY_COMP_NAME) | (KEY_COMP_NAME if compressed else 0)
        U16.pack_into(header, 2, flags)
        U16.pack_into(header, 0x48, len(name_raw))
        struct.pack_into("<Q", header, NK_OFF_TIME, now_filetime())
        new_offset = self.store.realloc(offset, bytes(header) + name_raw)
        if new_offset != offset:
            for child, _h in self._entries(new_offset):
                self._nk_set(child, NK_OFF_PARENT, new_offset)
        if self._index is not None:
            index = self._index
            parent = NIL if offset == self.root_offset else self._nk_u32(new_offset, NK_OFF_PARENT)
            index.note_key(new_offset, parent)
            if new_offset != offset:
                for child, _h in self._entries(new_offset):
                    index.note_key(child, new_offset)
                for value in self._value_offsets(new_offset):
                    index.note_value(value, new_offset)
        return new_offset

    def _child_names_raw(self, parent: int, old: int, new: int) -> list[tuple[int, str, int | None]]:
        out: list[tuple[int, str, int | None]] = []
        for child, _h in self._entries(parent):
            if child == old:
                out.append((old, "", None))
            else:
                out.append((child, Key(self, child, None).name, None))
        return out

    # ------------------------------------------------------------------- output
    def _finish(self) -> int:
        """Make the base block clean (sequence numbers equal, checksum right); returns the
        file length (base block plus hive bins)."""
        buf = self.store.buf
        seq = max(U32.unpack_from(buf, 4)[0], U32.unpack_from(buf, 8)[0], self._seq_floor) + 1
        seq &= 0xFFFFFFFF
        struct.pack_into("<IIQ", buf, 4, seq, seq, now_filetime())
        struct.pack_into("<IIII", buf, 0x14, 1, self.minor, 0, 1)
        U32.pack_into(buf, 0x24, self.root_offset)
        U32.pack_into(buf, 0x28, self.store.hbins_size)
        U32.pack_into(buf, 0x2C, 1)
        U32.pack_into(buf, 0x1FC, base_block_checksum(buf))
        self._seq_floor = seq
        return BASE_BLOCK_SIZE + self.store.hbins_size

    def to_bytes(self) -> bytes:
        """The hive as a clean file: sequence numbers equal, checksum right, one bin run."""
        end = self._finish()
        with memoryview(self.store.buf) as view:
            return view[:end].tobytes()

    def write_to(self, write: Callable[[memoryview], None]) -> None:
        """Hand the clean file to `write` as a view of the hive's own buffer (no copy of a
        15 MB hive); the view is released when `write` returns."""
        end = self._finish()
        with memoryview(self.store.buf) as view, view[:end] as data:
            write(data)

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        """Write atomically; keep PATH.reseal-orig from the first save; empty the logs beside it."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise BadInput("save: no path given and the hive was not opened from a file")
        logs = find_logs(target) if target.exists() else []
        for original in [target, *logs]:
            keep_original(original, original.with_name(original.name + ORIG_SUFFIX))
        self.write_to(lambda data: atomic_write(target, data))
        for log in logs:
            if log.stat().st_size:
                atomic_write(log, b"")


def keep_original(original: Path, keep: Path) -> None:
    """Keep the first version of `original` as `keep`: same bytes, same mode and owner (a
    SAM's copy holds the same password hashes, so it is never readable by more users than the
    SAM; a copy left wider by an earlier version is narrowed).

    A hard link costs nothing: the save that follows replaces `original` by a rename, so the
    old inode lives on under the second name. Where links are not possible, a copy is made.
    """
    if not original.exists() or keep.is_symlink():
        return
    st = original.stat()
    mode = stat.S_IMODE(st.st_mode)
    if keep.exists():
        if stat.S_IMODE(keep.stat().st_mode) & ~mode:
            os.chmod(keep, stat.S_IMODE(keep.stat().st_mode) & mode)
        return
    try:
        os.link(original, keep, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    atomic_write(keep, original.read_bytes(), mode=mode)
    with contextlib.suppress(OSError):
        os.chown(keep, st.st_uid, st.st_gid)


def split_path(path: str) -> list[str]:
    return [part for part in path.split("\\") if part] if path else []


def find_logs(path: Path) -> list[Path]:
    """PATH.LOG, PATH.LOG1, PATH.LOG2 beside the hive, names matched case-insensitively."""
    wanted = {(path.name + suffix).lower() for suffix in LOG_SUFFIXES}
    try:
        siblings = sorted(path.parent.iterdir())
    except OSError:
        return []
    return [p for p in siblings if p.name.lower() in wanted and p.is_file() and not p.is_symlink()]
