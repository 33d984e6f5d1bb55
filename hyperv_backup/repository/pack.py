"""Packs: many blobs in one object, so a 1 TiB disk is ~65,000 objects, not 2 million.

Layout of ``data/<first 2 hex>/<pack id>`` (pack id = hex BLAKE3 of the whole object;
SHA-256 in repositories created before ``pack_id_hash`` was recorded in their config)::

    blob 0 ‖ blob 1 ‖ … ‖ blob n-1 ‖ header ‖ header length (u32 LE) ‖ b"HVP1"

The header is sealed (zstd, and encrypted when the repository is) and lists, per blob in
order: type (u8), id (32 bytes), stored length (u32), plaintext length (u32); offsets follow
from the order. The index repeats this, so a pack's header is needed only to rebuild a lost
index (``repair_index``, two range reads per pack) or to cross-check the index in ``check``.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from hyperv_backup.errors import IntegrityError
from hyperv_backup.repository.codec import Codec
from hyperv_backup.repository.config import PackIdHash
from hyperv_backup.targets.base import Target

__all__ = [
    "HEADER_ROOM",
    "PACK_PREFIX",
    "BlobType",
    "PackBuilder",
    "PackedBlob",
    "blobs_end",
    "fetch_pack_header",
    "pack_digest",
    "pack_id_of_key",
    "pack_key",
    "read_pack_header",
]

PACK_PREFIX = "data/"
_MAGIC = b"HVP1"
_TRAILER = struct.Struct("<I4s")
_ENTRY = struct.Struct("<B32sII")
_HEADER_KIND = "pack-header"

HEADER_ROOM = 64 * 1024
"""Room a pack buffer keeps behind its blobs for the header (41 bytes a blob) and trailer."""


class BlobType(enum.IntEnum):
    """What a blob holds."""

    DATA = 0
    """A chunk of a file."""
    CHUNK_LIST = 1
    """Concatenated 32-byte chunk ids: a run of a file's ordered chunk list."""


@dataclass(frozen=True)
class PackedBlob:
    """One blob of a pack: its id, type, byte range in the pack and plaintext length."""

    id: bytes
    type: BlobType
    offset: int
    length: int
    raw_length: int


def pack_digest(id_hash: PackIdHash, data: bytes | memoryview) -> str:
    """The id of a pack whose whole object is ``data``."""
    if id_hash == "blake3":
        return blake3.blake3(data).hexdigest()
    return hashlib.sha256(data).hexdigest()


def pack_key(pack_id: str) -> str:
    """The object key of a pack."""
    return f"{PACK_PREFIX}{pack_id[:2]}/{pack_id}"


def pack_id_of_key(key: str) -> str | None:
    """The pack id of ``data/xx/<id>``, or None for anything else."""
    name = key.rsplit("/", 1)[-1]
    if key.startswith(PACK_PREFIX) and len(name) == 64 and key == pack_key(name):
        return name
    return None


class PackBuilder:
    """Lays out one pack in a fixed buffer, then hands it out as one view of that buffer.

    The buffer is reused pack after pack (see the store's buffer pool): a backup allocates
    its few pack buffers once instead of one large object per pack, which keeps the
    process's heap from fragmenting and growing.
    """

    def __init__(self, buffer: bytearray) -> None:
        self.buffer = buffer
        self.blobs: list[PackedBlob] = []
        self.size = 0

    def __len__(self) -> int:
        return len(self.blobs)

    def fits(self, length: int) -> bool:
        """True when a blob of ``length`` bytes still fits the buffer (and its header room)."""
        return self.size + length <= len(self.buffer) - HEADER_ROOM

    def add(self, blob_type: BlobType, blob_id: bytes, stored: bytes, raw_length: int) -> None:
        """Append one encoded blob (the caller checked :meth:`fits`)."""
        end = self.size + len(stored)
        self.buffer[self.size : end] = stored
        self.blobs.append(PackedBlob(blob_id, blob_type, self.size, len(stored), raw_length))
        self.size = end

    def build(self, codec: Codec, id_hash: PackIdHash) -> tuple[str, memoryview]:
        """The pack id and the whole pack object, to upload before the buffer is reused.

        The header and trailer are written into the buffer behind the blobs (it has room
        for them; see :data:`HEADER_ROOM`), so the object is a view of the buffer: no copy
        of the pack is made on its way to the target. Only a pack of very many small blobs,
        whose header does not fit, is joined into a new object.
        """
        header = b"".join(_ENTRY.pack(b.type, b.id, b.length, b.raw_length) for b in self.blobs)
        sealed = codec.seal(_HEADER_KIND, header)
        trailer = _TRAILER.pack(len(sealed), _MAGIC)
        end = self.size + len(sealed) + len(trailer)
        if end <= len(self.buffer):
            self.buffer[self.size : end] = sealed + trailer
            data = memoryview(self.buffer)[:end]
        else:
            data = memoryview(b"".join((memoryview(self.buffer)[: self.size], sealed, trailer)))
        return pack_digest(id_hash, data), data


def read_pack_header(data: bytes, codec: Codec, *, name: str = "pack") -> list[PackedBlob]:
    """The blobs a whole pack object says it holds (:class:`IntegrityError` if unreadable)."""
    if len(data) < _TRAILER.size:
        raise IntegrityError(f"{name} is truncated ({len(data)} bytes)")
    header_length = _header_length(data[-_TRAILER.size :], name)
    header_start = len(data) - _TRAILER.size - header_length
    if header_start < 0:
        raise IntegrityError(f"{name} has no valid trailer")
    return _parse_header(data[header_start : len(data) - _TRAILER.size], codec, header_start, name)


def fetch_pack_header(target: Target, codec: Codec, pack_id: str, size: int) -> list[PackedBlob]:
    """The blobs of a stored pack of ``size`` bytes, reading only its header (two ranges)."""
    name = f"pack {pack_id[:16]}"
    key = pack_key(pack_id)
    if size < _TRAILER.size:
        raise IntegrityError(f"{name} is truncated ({size} bytes)")
    header_length = _header_length(target.get_range(key, size - _TRAILER.size, _TRAILER.size), name)
    header_start = size - _TRAILER.size - header_length
    if header_start < 0:
        raise IntegrityError(f"{name} has no valid trailer")
    sealed = target.get_range(key, header_start, header_length)
    return _parse_header(sealed, codec, header_start, name)


def _header_length(trailer: bytes, name: str) -> int:
    header_length, magic = _TRAILER.unpack(trailer)
    if magic != _MAGIC:
        raise IntegrityError(f"{name} has no valid trailer")
    return int(header_length)


def _parse_header(sealed: bytes, codec: Codec, blobs_size: int, name: str) -> list[PackedBlob]:
    try:
        header = codec.unseal(_HEADER_KIND, sealed)
    except IntegrityError:
        raise IntegrityError(f"the header of {name} is damaged") from None
    if len(header) % _ENTRY.size:
        raise IntegrityError(f"the header of {name} has a partial entry")
    blobs: list[PackedBlob] = []
    offset = 0
    for blob_type, blob_id, length, raw_length in _ENTRY.iter_unpack(header):
        if blob_type not in BlobType._value2member_map_:
            raise IntegrityError(f"the header of {name} names an unknown blob type")
        blobs.append(PackedBlob(blob_id, BlobType(blob_type), offset, length, raw_length))
        offset += length
    if offset != blobs_size:
        raise IntegrityError(f"the header of {name} does not match its size")
    return blobs


def blobs_end(blobs: Sequence[PackedBlob]) -> int:
    """Where the last blob ends: a pack is at least this long plus its header."""
    return max((b.offset + b.length for b in blobs), default=0)
