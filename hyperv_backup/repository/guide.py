"""The previous backup of a file as a guide to where today's chunks are cut.

A next-day backup of a VM disk finds most of yesterday's chunks again. FastCDC finds each
cut by rolling a gear hash over the chunk; that scan was the largest cost of a next-day
backup after the hashes themselves (``bench/compare.py``: 0.6 of 3.4 CPU-s). With a guide,
the chunker first tries the chunk that started at the same place yesterday: it hashes that
many bytes with the keyed BLAKE3 id it computes for every chunk anyway, and takes the cut
when the id matches. Only where the guess fails does it run FastCDC.

The cut points are exactly those FastCDC gives without a guide: FastCDC decides a cut from
the chunk's own bytes only (its gear hash starts afresh at each chunk and never looks past
the maximum size), so equal bytes from the same start give the same cut. Yesterday's last
chunk is never guessed: the end of the file cut it, not its content. A wrong guess costs one
hash of the guessed length, and nothing else: a guide can make a backup slower, never
different. ``tests/test_guide.py`` checks the cuts against unguided chunking on edited data.

The guide follows a shift: an insert or a deletion moves everything after it. When a chunk
that FastCDC found is one of yesterday's near the expected place, the guide takes the
distance as the new shift (zero runs, which are all alike, are never used for that).

Memory: 24 bytes per chunk of the previous file (a 16-byte id key and an offset), about 64 MiB
for a 1 TiB disk at the default chunk size; the ids come from the previous snapshot's
chunk lists and the sizes from the repository's index.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable

__all__ = ["ChunkGuide"]

KEY_BYTES = 16
"""The leading bytes of an id the guide keeps (as the index does: 128 bits of keyed BLAKE3)."""

_SEARCH_CHUNKS = 4096
"""How far (in chunks, each way) the guide looks for a FastCDC chunk among yesterday's to
find a new shift: about 1.5 GiB at the default chunk size."""


class ChunkGuide:
    """Yesterday's chunks of one file (ids and sizes, in file order) for :class:`Chunker`.

    ``blob_id`` is the repository's chunk id function (keyed BLAKE3); the chunker calls it
    through :meth:`identify` for every chunk of a guided file.
    """

    def __init__(
        self, chunks: Iterable[tuple[bytes, int]], blob_id: Callable[[memoryview], bytes]
    ) -> None:
        keys = bytearray()
        starts = array("Q", [0])
        for chunk_id, length in chunks:
            if length <= 0 or len(chunk_id) < KEY_BYTES:
                raise ValueError("a chunk guide needs ids of 16 bytes or more and positive sizes")
            keys += chunk_id[:KEY_BYTES]
            starts.append(starts[-1] + length)
        self._keys = bytes(keys)
        self._starts = starts  # starts[i]: where chunk i began; the last entry is the file size
        self._count = len(starts) - 1
        self._blob_id = blob_id
        self._shift = 0  # today's offset minus yesterday's, for the part of the file at hand
        self.guesses = 0
        self.confirmed = 0

    def __len__(self) -> int:
        return self._count

    @property
    def memory_bytes(self) -> int:
        """Bytes the guide holds."""
        return len(self._keys) + self._starts.itemsize * len(self._starts)

    def blob_id(self, data: memoryview) -> bytes:
        """The repository's id of ``data``."""
        return self._blob_id(data)

    def _key(self, index: int) -> bytes:
        return self._keys[index * KEY_BYTES : (index + 1) * KEY_BYTES]

    def _index_at(self, old_offset: int) -> int | None:
        """The chunk that started at ``old_offset`` yesterday, if one did."""
        index = bisect_left(self._starts, old_offset, 0, self._count)
        return index if index < self._count and self._starts[index] == old_offset else None

    def guess(self, offset: int) -> tuple[bytes, int] | None:
        """(id key, size) of the chunk expected at ``offset`` of today's file, or None.

        Never yesterday's last chunk: the end of the file cut it.
        """
        index = self._index_at(offset - self._shift)
        if index is None or index >= self._count - 1:
            return None
        self.guesses += 1
        return self._key(index), self._starts[index + 1] - self._starts[index]

    def confirm(self) -> None:
        """The last guess was right (counted, for the log)."""
        self.confirmed += 1

    def follow(self, offset: int, chunk_id: bytes) -> None:
        """Today's chunk at ``offset``, found by FastCDC, is ``chunk_id``: keep the shift, or
        find a new one. Not for zero runs: all alike, they say nothing about where we are."""
        key = chunk_id[:KEY_BYTES]
        expected = bisect_left(self._starts, offset - self._shift, 0, self._count)
        if (
            expected < self._count
            and self._starts[expected] == offset - self._shift
            and self._key(expected) == key
        ):
            return  # still in step
        found = self._search(key, expected)
        if found is not None:
            self._shift = offset - self._starts[found]

    def _search(self, key: bytes, around: int) -> int | None:
        """The chunk with id ``key`` nearest to index ``around``, within the search window."""
        low = max(0, around - _SEARCH_CHUNKS) * KEY_BYTES
        high = min(self._count, around + _SEARCH_CHUNKS) * KEY_BYTES
        middle = min(max(around * KEY_BYTES, low), high)
        after = _aligned_find(self._keys, key, middle, high, forward=True)
        before = _aligned_find(self._keys, key, low, middle, forward=False)
        candidates = [i for i in (after, before) if i is not None]
        if not candidates:
            return None
        return min(candidates, key=lambda i: abs(i - around))


def _aligned_find(keys: bytes, key: bytes, low: int, high: int, *, forward: bool) -> int | None:
    """Index of a whole key equal to ``key`` in ``keys[low:high]`` (offsets multiple of the
    key size): the first one, or the last one when not ``forward``."""
    while low < high:
        position = keys.find(key, low, high) if forward else keys.rfind(key, low, high)
        if position < 0:
            return None
        if position % KEY_BYTES == 0:
            return position // KEY_BYTES
        if forward:
            low = position + 1
        else:
            high = position + KEY_BYTES - 1
    return None
