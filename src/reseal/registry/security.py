"""Security cells (sk): a circular doubly linked list of shared, reference-counted descriptors."""

from __future__ import annotations

import struct

from reseal.errors import CorruptData
from reseal.registry.format import NIL, SK, SK_SIZE
from reseal.registry.storage import CellStore


def _sid(authority: int, *subs: int) -> bytes:
    return struct.pack("<BB", 1, len(subs)) + authority.to_bytes(6, "big") + struct.pack(
        f"<{len(subs)}I", *subs
    )


def _ace(mask: int, sid: bytes, flags: int = 0x02) -> bytes:  # CONTAINER_INHERIT_ACE
    return struct.pack("<BBHI", 0, flags, 8 + len(sid), mask) + sid


def default_descriptor() -> bytes:
    """Self-relative descriptor for new hives: SYSTEM and Administrators full, Everyone read."""
    system = _sid(5, 18)
    admins = _sid(5, 32, 544)
    everyone = _sid(1, 0)
    aces = _ace(0xF003F, system) + _ace(0xF003F, admins) + _ace(0x20019, everyone)
    dacl = struct.pack("<BBHHH", 2, 0, 8 + len(aces), 3, 0) + aces
    owner_at = 20
    group_at = owner_at + len(admins)
    dacl_at = group_at + len(system)
    header = struct.pack("<BBHIIII", 1, 0, 0x8004, owner_at, group_at, 0, dacl_at)
    return header + admins + system + dacl


def sk_payload(flink: int, blink: int, refcount: int, descriptor: bytes) -> bytes:
    return SK.pack(b"sk", 0, flink, blink, refcount, len(descriptor)) + descriptor


class SecurityCells:
    """Reads and edits the sk list of one hive."""

    def __init__(self, store: CellStore) -> None:
        self.store = store

    def read(self, offset: int) -> tuple[int, int, int, bytes]:
        """(flink, blink, refcount, descriptor) of the sk cell at `offset`."""
        pos, length = self.store.cell(offset, "security cell")
        sig, _r, flink, blink, refs, size = SK.unpack_from(self.store.buf, pos)
        if sig != b"sk":
            raise CorruptData(f"{self.store.label}: bad security cell signature {sig!r} at offset {offset:#x}")
        if SK_SIZE + size > length:
            raise CorruptData(f"{self.store.label}: security descriptor at offset {offset:#x} is larger than its cell")
        return flink, blink, refs, bytes(self.store.buf[pos + SK_SIZE : pos + SK_SIZE + size])

    def all(self, start: int) -> list[int]:
        """Offsets of every sk cell, following flink from `start` until it comes back."""
        if start == NIL:
            return []
        seen: list[int] = []
        visited: set[int] = set()
        offset = start
        while offset not in visited:
            visited.add(offset)
            seen.append(offset)
            offset = self.read(offset)[0]
            if len(seen) > 1_000_000:
                break
        return seen

    def _set_field(self, offset: int, field_pos: int, value: int) -> None:
        pos, _ = self.store.cell(offset, "security cell")
        self.store.put_u32(pos + field_pos, value)

    def add_ref(self, offset: int, delta: int = 1) -> None:
        flink, blink, refs, descriptor = self.read(offset)
        refs = min(max(0, refs + delta), 0xFFFFFFFF)  # a count already at the top stays there
        if refs == 0:
            self.unlink(offset)
            return
        self._set_field(offset, 12, refs)

    def unlink(self, offset: int) -> None:
        flink, blink, _refs, _d = self.read(offset)
        if flink != offset:
            self._set_field(blink, 4, flink)
            self._set_field(flink, 8, blink)
        self.store.free(offset)

    def find(self, start: int, descriptor: bytes) -> int | None:
        for offset in self.all(start):
            if self.read(offset)[3] == descriptor:
                return offset
        return None

    def insert_after(self, anchor: int, descriptor: bytes, refcount: int) -> int:
        """New sk cell linked in after `anchor`."""
        flink = self.read(anchor)[0]
        new = self.store.alloc(sk_payload(flink, anchor, refcount, descriptor))
        self._set_field(anchor, 4, new)
        self._set_field(flink, 8, new)
        return new

    def create_alone(self, descriptor: bytes, refcount: int = 1) -> int:
        """A new sk cell that is the whole list (links to itself)."""
        offset = self.store.alloc(sk_payload(NIL, NIL, refcount, descriptor))
        self._set_field(offset, 4, offset)
        self._set_field(offset, 8, offset)
        return offset

    def rewrite(self, offset: int, descriptor: bytes) -> int:
        """Replace the descriptor of one sk cell; returns its offset (new if it had to move)."""
        flink, blink, refs, _old = self.read(offset)
        if flink == offset:
            flink = blink = NIL  # alone in the list: relinked to itself below
        payload = sk_payload(flink, blink, refs, descriptor)
        new = self.store.realloc(offset, payload)
        if flink == NIL:
            self._set_field(new, 4, new)
            self._set_field(new, 8, new)
        elif new != offset:
            self._set_field(blink, 4, new)
            self._set_field(flink, 8, new)
        return new
