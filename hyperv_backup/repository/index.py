"""Index objects: which blobs each pack holds, so nobody has to read pack headers.

``index/<SHA-256 of the stored object>`` holds, sealed::

    b"HVI1" ‖ pack count (u32) ‖ per pack: pack id (32 bytes) ‖ blob count (u32) ‖
        per blob: type (u8) ‖ id (32 bytes) ‖ offset (u32) ‖ length (u32) ‖ plain length (u32)

Writers add an index object every few packs while a backup runs (not only at its end), so a
re-run after a crash finds — and skips — what the killed run already stored. Objects are
never modified; ``prune`` writes new ones and then deletes the ones they replace. A blob may
appear in several (two writers stored it at once): the first one read wins.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import threading
from collections.abc import Mapping, Sequence

from hyperv_backup.errors import HyperVBackupError, IntegrityError
from hyperv_backup.repository.codec import Codec
from hyperv_backup.repository.pack import BlobType, PackedBlob
from hyperv_backup.targets.base import Target

__all__ = [
    "INDEX_PREFIX",
    "IndexWriter",
    "decode_index",
    "encode_index",
    "read_index",
    "write_index",
    "write_index_objects",
]

logger = logging.getLogger(__name__)

INDEX_PREFIX = "index/"
_MAGIC = b"HVI1"
_COUNT = struct.Struct("<I")
_PACK = struct.Struct("<32sI")
_BLOB = struct.Struct("<B32sIII")
_KIND = "index"
_BLOBS_PER_OBJECT = 50_000  # ~2.5 MiB: small enough to load in parallel, few enough to list


def encode_index(packs: Mapping[str, Sequence[PackedBlob]]) -> bytes:
    """The plaintext of an index object."""
    parts = [_MAGIC, _COUNT.pack(len(packs))]
    for pack_id, blobs in packs.items():
        parts.append(_PACK.pack(bytes.fromhex(pack_id), len(blobs)))
        parts.extend(_BLOB.pack(b.type, b.id, b.offset, b.length, b.raw_length) for b in blobs)
    return b"".join(parts)


def decode_index(plaintext: bytes) -> dict[str, list[PackedBlob]]:
    """Pack id → its blobs; :class:`IntegrityError` when malformed."""
    try:
        if plaintext[:4] != _MAGIC:
            raise IntegrityError("an index object has an unknown format")
        (pack_count,) = _COUNT.unpack_from(plaintext, 4)
        offset = 4 + _COUNT.size
        packs: dict[str, list[PackedBlob]] = {}
        for _ in range(pack_count):
            raw_id, blob_count = _PACK.unpack_from(plaintext, offset)
            offset += _PACK.size
            blobs = []
            for blob_type, blob_id, start, length, raw_length in _BLOB.iter_unpack(
                plaintext[offset : offset + blob_count * _BLOB.size]
            ):
                blobs.append(PackedBlob(blob_id, BlobType(blob_type), start, length, raw_length))
            if len(blobs) != blob_count:
                raise IntegrityError("an index object is truncated")
            offset += blob_count * _BLOB.size
            packs[raw_id.hex()] = blobs
    except (struct.error, ValueError) as err:
        raise IntegrityError(f"an index object is malformed: {err}") from None
    if offset != len(plaintext):
        raise IntegrityError("an index object has trailing bytes")
    return packs


def write_index(target: Target, codec: Codec, packs: Mapping[str, Sequence[PackedBlob]]) -> str:
    """Store one index object; returns its key."""
    data = codec.seal(_KIND, encode_index(packs))
    key = INDEX_PREFIX + hashlib.sha256(data).hexdigest()
    target.put(key, data)
    return key


def write_index_objects(
    target: Target, codec: Codec, packs: Mapping[str, Sequence[PackedBlob]]
) -> list[str]:
    """Store ``packs`` as index objects of at most ~50,000 blobs each; their keys."""
    written: list[str] = []
    batch: dict[str, Sequence[PackedBlob]] = {}
    count = 0
    for pack_id, blobs in packs.items():
        batch[pack_id] = blobs
        count += len(blobs)
        if count >= _BLOBS_PER_OBJECT:
            written.append(write_index(target, codec, batch))
            batch, count = {}, 0
    if batch:
        written.append(write_index(target, codec, batch))
    return written


def read_index(target: Target, codec: Codec, key: str) -> dict[str, list[PackedBlob]]:
    """One index object, decoded."""
    return decode_index(codec.unseal(_KIND, target.get(key)))


class IndexWriter:
    """Gathers the blobs of uploaded packs and writes an index object every ``every_packs``.

    :meth:`flush` returns only once everything added before it is stored, so a snapshot
    written after it never points at blobs only an unwritten index knew about.
    """

    def __init__(self, target: Target, codec: Codec, every_packs: int) -> None:
        self._target = target
        self._codec = codec
        self._every = max(1, every_packs)
        self._pending: dict[str, list[PackedBlob]] = {}
        self._lock = threading.Lock()
        self.written: list[str] = []

    def add(self, pack_id: str, blobs: Sequence[PackedBlob]) -> None:
        """Record an uploaded pack; writes an index object when enough have gathered."""
        with self._lock:
            self._pending[pack_id] = list(blobs)
            if len(self._pending) < self._every:
                return
            try:
                self._flush_locked()
            except HyperVBackupError as err:
                # Kept pending: the next flush (at the latest the commit) tries again.
                logger.warning("could not write an index object yet: %s", err)

    def flush(self) -> str | None:
        """Write what is pending; returns the new object's key (None if nothing was)."""
        with self._lock:
            return self._flush_locked()

    def _flush_locked(self) -> str | None:
        if not self._pending:
            return None
        key = write_index(self._target, self._codec, self._pending)
        self._pending = {}
        self.written.append(key)
        return key
