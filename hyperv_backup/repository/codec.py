"""How bytes are made into stored form and back: chunk ids, blobs and sealed objects.

- **chunk id**: keyed BLAKE3 (32 bytes) of the plaintext under the repository's id key.
- **blob** (a chunk, or a list of chunk ids): zstd-compressed when that makes it smaller,
  else stored as is — the reader tells which by comparing the payload length with the
  recorded plaintext length (compressed is always strictly shorter). With encryption:
  ``nonce(12) ‖ AES-256-GCM(payload, associated data = blob id)``, so a blob cannot be
  swapped for another one unnoticed.
- **sealed object** (pack headers, indexes, snapshots, locks): zstd, then with encryption
  ``nonce ‖ AES-256-GCM(…, associated data = the object kind)``.

Every decode verifies: a blob's content must hash back to its id (:class:`IntegrityError`).
"""

from __future__ import annotations

import secrets
import threading

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyperv_backup.errors import IntegrityError
from hyperv_backup.repository.keys import KeySet

__all__ = ["BLOB_OVERHEAD", "Codec"]

_NONCE_BYTES = 12
BLOB_OVERHEAD = _NONCE_BYTES + 16
"""Bytes encryption adds to every blob (nonce + GCM tag)."""

_ZERO_CACHE_LIMIT = 8


class Codec:
    """Encodes and decodes for one repository; safe to share between threads."""

    def __init__(self, keys: KeySet, compression_level: int) -> None:
        self._id_key = keys.id_key
        self._aead = AESGCM(keys.data_key) if keys.data_key is not None else None
        self._level = compression_level
        self._local = threading.local()
        self._zero_ids: dict[int, bytes] = {}
        self._zero_lock = threading.Lock()

    @property
    def encrypted(self) -> bool:
        """True when blobs and objects are encrypted."""
        return self._aead is not None

    # zstd contexts are not thread-safe: one set per thread.
    def _compressor(self, *, checksum: bool = False) -> zstandard.ZstdCompressor:
        name = "object_compressor" if checksum else "blob_compressor"
        compressor: zstandard.ZstdCompressor | None = getattr(self._local, name, None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(level=self._level, write_checksum=checksum)
            setattr(self._local, name, compressor)
        return compressor

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor: zstandard.ZstdDecompressor | None = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = zstandard.ZstdDecompressor()
            self._local.decompressor = decompressor
        return decompressor

    # --- ids ----------------------------------------------------------------------------------

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """The keyed BLAKE3 id of ``data``."""
        return blake3.blake3(data, key=self._id_key).digest()

    def zero_id(self, length: int) -> bytes:
        """The id of ``length`` zero bytes, remembered: free disk space is mostly zeros."""
        known = self._zero_ids.get(length)
        if known is None:
            known = self.blob_id(bytes(length))
            with self._zero_lock:
                if len(self._zero_ids) >= _ZERO_CACHE_LIMIT:
                    self._zero_ids.clear()
                self._zero_ids[length] = known
        return known

    # --- blobs --------------------------------------------------------------------------------

    def encode_blob(self, blob_id: bytes, data: bytes | memoryview) -> bytes:
        """Stored form of a blob (compressed if smaller, then encrypted if the repository is).

        ``data`` may be a view into the chunker's buffer: it is not kept.
        """
        compressed = self._compressor().compress(data)
        payload: bytes | memoryview = compressed if len(compressed) < len(data) else data
        if self._aead is None:
            return bytes(payload)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, payload, blob_id)

    def decode_blob(self, blob_id: bytes, stored: bytes | memoryview, raw_length: int) -> bytes:
        """The plaintext of a blob, verified against its id."""
        payload: bytes | memoryview = stored
        if self._aead is not None:
            try:
                payload = self._aead.decrypt(
                    bytes(stored[:_NONCE_BYTES]), bytes(stored[_NONCE_BYTES:]), blob_id
                )
            except InvalidTag:
                raise IntegrityError(
                    f"blob {blob_id.hex()[:16]} is damaged: it does not decrypt"
                ) from None
        if len(payload) < raw_length:
            try:
                data = self._decompressor().decompress(payload, max_output_size=raw_length)
            except zstandard.ZstdError as err:
                raise IntegrityError(
                    f"blob {blob_id.hex()[:16]} is damaged: it does not decompress ({err})"
                ) from None
        else:
            data = bytes(payload)
        if len(data) != raw_length or self.blob_id(data) != blob_id:
            raise IntegrityError(
                f"blob {blob_id.hex()[:16]} is damaged: its content does not match its id"
            )
        return data

    # --- objects ------------------------------------------------------------------------------

    def seal(self, kind: str, plaintext: bytes) -> bytes:
        """Stored form of an object of ``kind`` (``index``, ``snapshot``, ``lock``, ...)."""
        # Objects carry a zstd checksum: in an unencrypted repository nothing else would
        # notice a flipped byte in an index or a snapshot (blobs are checked by their id).
        compressed = self._compressor(checksum=True).compress(plaintext)
        if self._aead is None:
            return compressed
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, compressed, kind.encode("ascii"))

    def unseal(self, kind: str, stored: bytes) -> bytes:
        """The plaintext of a sealed object; :class:`IntegrityError` when it is damaged."""
        payload = stored
        if self._aead is not None:
            try:
                payload = self._aead.decrypt(
                    stored[:_NONCE_BYTES], stored[_NONCE_BYTES:], kind.encode("ascii")
                )
            except InvalidTag:
                raise IntegrityError(
                    f"this {kind} object is damaged: it does not decrypt"
                ) from None
        try:
            return self._decompressor().decompress(payload)
        except zstandard.ZstdError as err:
            raise IntegrityError(f"this {kind} object is damaged: {err}") from None
