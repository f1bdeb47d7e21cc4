"""Registry value types and the conversion between Python values and value bytes."""

from __future__ import annotations

import enum
import struct

from reseal.errors import BadInput


class RegType(enum.IntEnum):
    REG_NONE = 0
    REG_SZ = 1
    REG_EXPAND_SZ = 2
    REG_BINARY = 3
    REG_DWORD = 4
    REG_DWORD_BIG_ENDIAN = 5
    REG_LINK = 6
    REG_MULTI_SZ = 7
    REG_RESOURCE_LIST = 8
    REG_FULL_RESOURCE_DESCRIPTOR = 9
    REG_RESOURCE_REQUIREMENTS_LIST = 10
    REG_QWORD = 11


ValueData = bytes | str | int | list[str]

_STRING_TYPES = (RegType.REG_SZ, RegType.REG_EXPAND_SZ)


def encode_data(value_type: int, data: ValueData) -> bytes:
    """Bytes stored for `data` of `value_type`; bytes are always stored as they are."""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, bool):
        raise BadInput("registry value data: a bool is not value data; give an int or bytes")
    if isinstance(data, int):
        try:
            if value_type == RegType.REG_QWORD:
                return struct.pack("<Q", data & 0xFFFFFFFFFFFFFFFF if data < 0 else data)
            if value_type == RegType.REG_DWORD_BIG_ENDIAN:
                return struct.pack(">I", data & 0xFFFFFFFF if data < 0 else data)
            if value_type in (RegType.REG_DWORD, RegType.REG_NONE, RegType.REG_BINARY):
                return struct.pack("<I", data & 0xFFFFFFFF if data < 0 else data)
        except struct.error as exc:
            raise BadInput(f"registry value data: {data} does not fit type {value_type}") from exc
        raise BadInput(f"registry value data: an int cannot be stored as type {value_type}; give bytes")
    if isinstance(data, str):
        if value_type == RegType.REG_LINK:
            return data.encode("utf-16-le", "surrogatepass")
        if value_type == RegType.REG_MULTI_SZ:
            return encode_data(value_type, [data])
        return (data + "\0").encode("utf-16-le", "surrogatepass")
    if isinstance(data, list):
        if not all(isinstance(item, str) for item in data):
            raise BadInput("registry value data: a REG_MULTI_SZ list must hold only strings")
        if any("\0" in item for item in data):
            raise BadInput("registry value data: a REG_MULTI_SZ string cannot contain NUL")
        return "".join(item + "\0" for item in data).encode("utf-16-le", "surrogatepass") + b"\0\0"
    raise BadInput(f"registry value data: unsupported Python type {type(data).__name__}")


def _utf16(raw: bytes) -> str:
    if len(raw) % 2:
        raw = raw[:-1]
    return raw.decode("utf-16-le", "replace")


def decode_data(value_type: int, raw: bytes) -> ValueData:
    """Decoded value: str for strings, list for MULTI_SZ, int for numbers, bytes otherwise."""
    if value_type in _STRING_TYPES:
        return _utf16(raw).split("\0", 1)[0]
    if value_type == RegType.REG_LINK:
        return _utf16(raw)
    if value_type == RegType.REG_MULTI_SZ:
        parts = _utf16(raw).split("\0")
        while parts and parts[-1] == "":
            parts.pop()
        return parts
    if value_type == RegType.REG_DWORD and len(raw) >= 4:
        return int(struct.unpack_from("<I", raw)[0])
    if value_type == RegType.REG_DWORD_BIG_ENDIAN and len(raw) >= 4:
        return int(struct.unpack_from(">I", raw)[0])
    if value_type == RegType.REG_QWORD and len(raw) >= 8:
        return int(struct.unpack_from("<Q", raw)[0])
    return raw


def parse_type(text: str) -> int:
    """A type given on the command line: REG_SZ, SZ, dword, 4, 0x10 (raw device-property types)."""
    name = text.strip().upper()
    if not name.startswith("REG_"):
        name = "REG_" + name
    if name in RegType.__members__:
        return int(RegType[name])
    try:
        number = int(text, 0)
    except ValueError:
        raise BadInput(
            f"unknown registry type {text!r}; use REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD, "
            "REG_QWORD, REG_BINARY, ... or a number"
        ) from None
    if not 0 <= number <= 0xFFFFFFFF:
        raise BadInput(f"registry type {text!r} is out of range 0..0xFFFFFFFF")
    return number
