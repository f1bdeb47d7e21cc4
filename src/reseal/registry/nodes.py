"""Key and Value: thin views on nk and vk cells of a Hive.

A Key is bound to the cell offset it was read from; after an edit that moves a key (a rename to
a longer name) use the Key that the edit returns.
"""

from __future__ import annotations

from datetime import datetime

from reseal.registry.format import (
    KEY_COMP_NAME,
    NK,
    NK_SIZE,
    U32,
    VALUE_COMP_NAME,
    VK,
    VK_SIZE,
    decode_name,
    filetime_to_datetime,
)
from reseal.registry.lists import read_entries
from reseal.registry.types import RegType, ValueData, decode_data

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (10 ms at start-up)
if TYPE_CHECKING:
    from reseal.registry.hive import Hive


class Value:
    """One value of a key. `type` is the stored type number, even when it is not a real type."""

    __slots__ = ("_hive", "offset", "name", "type", "size_field", "data_field", "flags")

    def __init__(self, hive: Hive, offset: int) -> None:
        self._hive = hive
        self.offset = offset
        buf = hive.store.buf
        pos, length = hive.store.cell(offset, "value")
        if length < VK_SIZE:
            hive.corrupt("value cell too small", offset)
        sig, name_len, size, data_off, vtype, flags, _spare = VK.unpack_from(buf, pos)
        if sig != b"vk":
            hive.corrupt(f"bad value signature {sig!r}", offset)
        if VK_SIZE + name_len > length:
            hive.corrupt("value name runs past its cell", offset)
        if flags & VALUE_COMP_NAME:
            self.name = buf[pos + VK_SIZE : pos + VK_SIZE + name_len].decode("latin-1")
        else:
            self.name = decode_name(bytes(buf[pos + VK_SIZE : pos + VK_SIZE + name_len]), False)
        self.type = vtype
        self.size_field = size
        self.data_field = data_off
        self.flags = flags

    @property
    def raw(self) -> bytes:
        """The stored data bytes, as long as the value says (not trimmed at a terminator)."""
        return self._hive.value_bytes(self)

    @property
    def data(self) -> ValueData:
        return decode_data(self.type, self.raw)

    @property
    def type_name(self) -> str:
        try:
            return RegType(self.type).name
        except ValueError:
            return f"0x{self.type:x}"

    def __repr__(self) -> str:
        return f"Value({self.name!r}, {self.type_name})"


class Key:
    """One key (nk cell)."""

    __slots__ = ("_hive", "offset", "name", "path", "_pos")

    def __init__(self, hive: Hive, offset: int, parent_path: str | None) -> None:
        self._hive = hive
        self.offset = offset
        buf = hive.store.buf
        pos, length = hive.store.cell(offset, "key")
        if length < NK_SIZE or buf[pos : pos + 2] != b"nk":
            hive.corrupt(f"bad key signature {bytes(buf[pos:pos + 2])!r}", offset)
        self._pos = pos
        flags = buf[pos + 2]
        name_len = buf[pos + 0x48] | (buf[pos + 0x49] << 8)
        if NK_SIZE + name_len > length:
            hive.corrupt("key name runs past its cell", offset)
        if flags & KEY_COMP_NAME:
            self.name = buf[pos + NK_SIZE : pos + NK_SIZE + name_len].decode("latin-1")
        else:
            self.name = decode_name(bytes(buf[pos + NK_SIZE : pos + NK_SIZE + name_len]), False)
        if parent_path is None:
            self.path = ""
        elif parent_path == "":
            self.path = self.name
        else:
            self.path = parent_path + "\\" + self.name

    def _fields(self) -> tuple[int, ...]:
        pos, _ = self._hive.store.cell(self.offset, "key")
        return tuple(NK.unpack_from(self._hive.store.buf, pos))

    @property
    def flags(self) -> int:
        return self._fields()[1]

    @property
    def last_written(self) -> datetime:
        return filetime_to_datetime(self._fields()[2])

    @property
    def class_name(self) -> str | None:
        return self._hive.class_name_of(self.offset)

    @property
    def security(self) -> bytes:
        return self._hive.security_of(self.offset)

    @property
    def subkey_count(self) -> int:
        return self._fields()[5]

    def subkeys(self) -> list[Key]:
        hive = self._hive
        path = self.path
        sublist = U32.unpack_from(hive.store.buf, self._pos + 0x1C)[0]
        if hive.store.buf[self._pos : self._pos + 2] != b"nk":
            hive.corrupt("key cell changed under a Key object (use the Key an edit returns)", self.offset)
        return [Key(hive, child, path) for child, _hint in read_entries(hive.store, sublist)]

    def subkey(self, name: str) -> Key | None:
        return self._hive.find_subkey(self, name)

    def values(self) -> list[Value]:
        hive = self._hive
        return [Value(hive, vk) for vk in hive._value_offsets(self.offset, self._pos)]

    def value(self, name: str) -> Value | None:
        return self._hive.find_value(self.offset, name)

    def set_value(self, name: str, value_type: RegType | int, data: ValueData) -> Value:
        return self._hive.set_value(self, name, int(value_type), data)

    def delete_value(self, name: str) -> bool:
        return self._hive.delete_value(self, name)

    def set_security(self, descriptor: bytes) -> None:
        self._hive.set_security(self, descriptor)

    def __repr__(self) -> str:
        return f"Key({self.path or '<root>'!r})"
