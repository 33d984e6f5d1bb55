"""A compact in-memory map from chunk id to where the chunk is stored.

The dedup index of a repository holds one entry per stored chunk: about 1.3 million per TiB
of unique data at the default chunk size. A Python ``dict`` of ``bytes`` keys and tuples
costs ~200 bytes an entry (260 MiB per TiB); this table costs 32 bytes a slot (~50 bytes an
entry at its load factor), so the index of a multi-TiB repository fits the memory budget.

Each slot of one ``bytearray`` is ``id[:16] ‖ pack u32 ‖ offset u32 ‖ length u32 ‖ raw u32``,
open addressing with linear probing. The key is the first 16 bytes of the keyed BLAKE3 id:
two different chunks share it with probability ~n²/2¹²⁹ — nil for any real repository — and
the key is secret, so no one can craft a collision. An all-zero key marks an empty slot.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["KEY_BYTES", "ChunkLocation", "ChunkTable"]

KEY_BYTES = 16
_SLOT = struct.Struct("<16sIIII")
_PROBE = struct.Struct("<QQ")
_EMPTY = bytes(KEY_BYTES)
_MAX_LOAD = 0.7


class ChunkLocation(NamedTuple):
    """Where a blob lies: pack number (see the store's pack list), byte range, plain size."""

    pack: int
    offset: int
    length: int
    raw_length: int


class ChunkTable:
    """id → :class:`ChunkLocation`; the first location added for an id wins. Not locked:
    the owner serialises access."""

    def __init__(self, expected: int = 0) -> None:
        capacity = 1024
        while capacity * _MAX_LOAD < expected:
            capacity *= 2
        self._capacity = capacity
        self._slots = bytearray(capacity * _SLOT.size)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def memory_bytes(self) -> int:
        """Bytes the table occupies."""
        return len(self._slots)

    def _find(self, key: bytes) -> tuple[int, bool]:
        """The slot offset holding ``key`` (True) or the empty slot where it would go (False)."""
        mask = self._capacity - 1
        index = int.from_bytes(key[:8], "little") & mask
        slots = self._slots
        while True:
            offset = index * _SLOT.size
            low, high = _PROBE.unpack_from(slots, offset)
            if low == 0 and high == 0:
                return offset, False
            if slots[offset : offset + KEY_BYTES] == key:
                return offset, True
            index = (index + 1) & mask

    def get(self, chunk_id: bytes) -> ChunkLocation | None:
        """Where the chunk is, or None."""
        key = chunk_id[:KEY_BYTES]
        offset, found = self._find(key)
        if not found:
            return None
        _key, pack, start, length, raw = _SLOT.unpack_from(self._slots, offset)
        return ChunkLocation(pack, start, length, raw)

    def __contains__(self, chunk_id: object) -> bool:
        return isinstance(chunk_id, bytes) and self._find(chunk_id[:KEY_BYTES])[1]

    def add(self, chunk_id: bytes, location: ChunkLocation) -> bool:
        """Record ``location``; False (and no change) when the id is already known."""
        key = chunk_id[:KEY_BYTES]
        if key == _EMPTY:
            return False  # never produced by BLAKE3 in practice; it would read as empty
        offset, found = self._find(key)
        if found:
            return False
        _SLOT.pack_into(self._slots, offset, key, *location)
        self._count += 1
        if self._count > self._capacity * _MAX_LOAD:
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._slots
        self._capacity *= 2
        self._slots = bytearray(self._capacity * _SLOT.size)
        self._count = 0
        for offset in range(0, len(old), _SLOT.size):
            key, *location = _SLOT.unpack_from(old, offset)
            if key != _EMPTY:
                target, _found = self._find(key)
                _SLOT.pack_into(self._slots, target, key, *location)
                self._count += 1

    def items(self) -> Iterator[tuple[bytes, ChunkLocation]]:
        """Every (16-byte key, location), in no particular order."""
        for offset in range(0, len(self._slots), _SLOT.size):
            key, pack, start, length, raw = _SLOT.unpack_from(self._slots, offset)
            if key != _EMPTY:
                yield key, ChunkLocation(pack, start, length, raw)
