"""The blob store: dedup state and uploads shared by every writer of one repository session.

Each writer (one per VM being backed up, in its own thread) has a :class:`Packer` that fills
its own pack — so a VM's data stays together, which keeps restores sequential and lets prune
free whole packs — while all packers share one :class:`BlobStore`:

- the **chunk table** of blobs already stored (loaded from the index at open, grown as packs
  upload), and the blobs **in flight**: claimed by some packer's open or uploading pack. A
  blob is stored once even when two VMs produce it at the same moment.
- a small **upload pool** and a **pool of pack buffers**: a packer takes a buffer before it
  opens a pack, and the buffer returns when that pack is uploaded, so open and queued packs
  together never exceed ``pack_memory`` bytes — however large the VMs, however many are
  written at once (a writer that would exceed it waits for an upload). Buffers are reused,
  so the process does not allocate (and fragment its heap with) one large object per pack.
- an **encoding pool**: new chunks are compressed and encrypted there while their writer
  goes on cutting and hashing (each writer keeps a few in flight, in order).
- the **index writer**: every uploaded pack is recorded, and an index object written every
  few packs.

A writer that reused a blob still in another writer's open pack depends on that pack: when it
commits it seals that pack itself (the other writer may be busy reading a slow stream) and
waits for its upload; if that upload failed, the commit fails rather than write a snapshot
pointing at missing data.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta

from hyperv_backup.errors import IntegrityError, RepositoryError
from hyperv_backup.repository.chunk_table import KEY_BYTES, ChunkLocation, ChunkTable
from hyperv_backup.repository.codec import Codec
from hyperv_backup.repository.config import PackIdHash
from hyperv_backup.repository.index import INDEX_PREFIX, IndexWriter, read_index
from hyperv_backup.repository.pack import (
    HEADER_ROOM,
    BlobType,
    PackBuilder,
    PackedBlob,
    pack_key,
)
from hyperv_backup.targets.base import Target, retain_until_for

__all__ = ["BlobStore", "Packer"]

logger = logging.getLogger(__name__)


class _PackSlot:
    """A pack being filled by one packer, then uploaded; ``done`` is set either way."""

    def __init__(self, owner: Packer, buffer: bytearray) -> None:
        self.owner = owner
        self.builder = PackBuilder(buffer)
        self.keys: list[bytes] = []
        self.done = threading.Event()
        self.error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.done.is_set() and self.error is not None


class BlobStore:
    """What is stored, what is in flight, and the uploads; see the module docstring."""

    def __init__(
        self,
        target: Target,
        codec: Codec,
        *,
        pack_size: int,
        max_blob_size: int,
        pack_id_hash: PackIdHash = "blake3",
        upload_threads: int = 3,
        encode_threads: int = 2,
        pack_memory: int = 96 * 1024 * 1024,
        index_every_packs: int = 4,
        retention: timedelta | None = None,
    ) -> None:
        self.target = target
        self.codec = codec
        self.pack_size = pack_size
        self.pack_id_hash: PackIdHash = pack_id_hash
        self.retention = retention
        self._upload_threads = max(1, upload_threads)
        # A pack is sealed once it reaches pack_size, so it never needs more than one blob
        # beyond it. At least two buffers: one being filled while another uploads.
        self._buffer_size = pack_size + max_blob_size + HEADER_ROOM
        self._permits = threading.Semaphore(max(2, pack_memory // self._buffer_size))
        self._free_buffers: list[bytearray] = []
        self._lock = threading.Lock()
        self._table = ChunkTable()
        self._packs: list[str] = []
        self._pack_numbers: dict[str, int] = {}
        self._pending: dict[bytes, _PackSlot] = {}
        self._pool: ThreadPoolExecutor | None = None
        self.encode_threads = max(1, encode_threads)
        self._encoders: ThreadPoolExecutor | None = None
        self.index = IndexWriter(target, codec, index_every_packs)
        self.unreadable_index: list[str] = []
        self._loaded: set[str] = set()
        self.uploaded_packs = 0
        self.uploaded_bytes = 0

    def retain_until(self) -> datetime | None:
        """Object Lock retain-until for a pack or snapshot written now (None: no retention)."""
        return retain_until_for(self.retention)

    # --- the index ----------------------------------------------------------------------------

    def _read_index(self, key: str) -> dict[str, list[PackedBlob]]:
        try:
            return read_index(self.target, self.codec, key)
        except (IntegrityError, FileNotFoundError) as err:
            # One damaged index object must not make the repository unusable: its blobs are
            # stored again by the next backup, and check reports what it leaves unreadable.
            logger.warning("skipping index object %s: %s", key, err)
            with self._lock:
                self.unreadable_index.append(key)
            return {}

    def load_index(self) -> None:
        """Rebuild the chunk table from every index object of the repository.

        Only while holding a lock, and with no writer of this store running: between two
        locks another process may have pruned, so what the table knew may be gone.
        """
        objects = sorted(self.target.list(INDEX_PREFIX), key=lambda info: info.key)
        # Sized up front (an index entry takes 45 bytes): growing rehashes every entry.
        table = ChunkTable(expected=sum(info.size for info in objects) // 45)
        with self._lock:
            self._table, self._packs, self._pack_numbers = table, [], {}
            self._loaded = set()
            self.unreadable_index = []
        self._merge([info.key for info in objects])

    def refresh_index(self) -> None:
        """Add the index objects written since the last load (by other processes, too).

        Safe while writers run: under a shared lock nothing is pruned, so entries are only
        ever added.
        """
        with self._lock:
            loaded = set(self._loaded)
        self._merge(
            sorted(info.key for info in self.target.list(INDEX_PREFIX) if info.key not in loaded)
        )

    def _merge(self, keys: list[str]) -> None:
        with ThreadPoolExecutor(4, "hyperv-backup-index") as pool:
            for key, decoded in zip(keys, pool.map(self._read_index, keys), strict=True):
                with self._lock:
                    self._loaded.add(key)
                    for pack_id, blobs in decoded.items():
                        number = self._register_pack(pack_id)
                        for blob in blobs:
                            location = ChunkLocation(
                                number, blob.offset, blob.length, blob.raw_length
                            )
                            self._table.add(blob.id, location)

    def _register_pack(self, pack_id: str) -> int:
        number = self._pack_numbers.get(pack_id)
        if number is None:
            number = self._pack_numbers[pack_id] = len(self._packs)
            self._packs.append(pack_id)
        return number

    def __len__(self) -> int:
        return len(self._table)

    def known_packs(self) -> set[str]:
        """Ids of every pack the loaded index names."""
        with self._lock:
            return set(self._packs)

    def locate(self, blob_id: bytes) -> tuple[str, ChunkLocation] | None:
        """(pack id, location) of a stored blob, or None."""
        with self._lock:
            location = self._table.get(blob_id)
            return None if location is None else (self._packs[location.pack], location)

    # --- dedup --------------------------------------------------------------------------------

    def find(self, key: bytes) -> ChunkLocation | _PackSlot | None:
        """Stored (its location), in flight (its pack slot), or unknown (None)."""
        with self._lock:
            return self._table.get(key) or self._pending.get(key)

    def claim(self, key: bytes, slot: _PackSlot) -> ChunkLocation | _PackSlot | None:
        """Make ``slot`` the home of ``key`` unless it is known already (then: where)."""
        with self._lock:
            known = self._table.get(key) or self._pending.get(key)
            if known is None:
                self._pending[key] = slot
            return known

    # --- uploads ------------------------------------------------------------------------------

    def reserve(self) -> bytearray:
        """A pack buffer, waiting while the memory budget is spent (see :meth:`release`)."""
        self._permits.acquire()
        with self._lock:
            if self._free_buffers:
                return self._free_buffers.pop()
        return bytearray(self._buffer_size)

    def release(self, buffer: bytearray) -> None:
        """Return a pack buffer to the pool."""
        with self._lock:
            self._free_buffers.append(buffer)
        self._permits.release()

    def submit(self, slot: _PackSlot) -> None:
        """Upload a sealed pack in the background; its buffer returns when it is done."""
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._upload_threads, "hyperv-backup-upload")
                pool = self._pool
            pool.submit(self._upload, slot)
        except BaseException:
            self.release(slot.builder.buffer)
            raise

    def _upload(self, slot: _PackSlot) -> None:
        try:
            pack_id, data = slot.builder.build(self.codec, self.pack_id_hash)
            size = len(data)
            # One PUT straight from the pack buffer: no copy, no multipart round trips.
            self.target.put(pack_key(pack_id), data, retain_until=self.retain_until())
            del data
            blobs = slot.builder.blobs
            # Indexed before the table knows it: anything a writer can dedup against is
            # then written by the next index flush, which every commit performs.
            self.index.add(pack_id, blobs)
            with self._lock:
                number = self._register_pack(pack_id)
                for blob in blobs:
                    location = ChunkLocation(number, blob.offset, blob.length, blob.raw_length)
                    self._table.add(blob.id, location)
                    self._pending.pop(blob.id[:KEY_BYTES], None)
                self.uploaded_packs += 1
                self.uploaded_bytes += size
        except BaseException as err:  # reported to every writer that needs this pack
            slot.error = err
            with self._lock:
                for key in slot.keys:
                    if self._pending.get(key) is slot:
                        del self._pending[key]
            logger.error("uploading a pack failed: %s", err)
        finally:
            slot.keys = []
            self.release(slot.builder.buffer)
            slot.done.set()

    def encode(self, blob_id: bytes, data: bytes) -> Future[bytes]:
        """Compress and encrypt a blob on the encoding pool (zstd and AES-GCM release the
        GIL, so this runs beside the reading, chunking and hashing of the writers)."""
        with self._lock:
            if self._encoders is None:
                self._encoders = ThreadPoolExecutor(self.encode_threads, "hyperv-backup-encode")
            encoders = self._encoders
        return encoders.submit(self.codec.encode_blob, blob_id, data)

    def close(self) -> None:
        """Wait for uploads to finish and stop the pools."""
        with self._lock:
            pool, self._pool = self._pool, None
            encoders, self._encoders = self._encoders, None
        for executor in (encoders, pool):
            if executor is not None:
                executor.shutdown(wait=True)


class Packer:
    """One writer's pack being filled; thread-safe only for :meth:`seal` from other writers."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._open: _PackSlot | None = None
        self._spare: bytearray | None = None  # a reserved pack buffer, not yet in a pack
        self._slots: list[_PackSlot] = []
        self._depends: set[_PackSlot] = set()

    def known(self, blob_id: bytes) -> bool:
        """True when the blob is stored or in flight (then this writer depends on its pack)."""
        known = self._store.find(blob_id[:KEY_BYTES])
        if known is None:
            return False
        self._note(known)
        return True

    def add(self, blob_type: BlobType, blob_id: bytes, data: bytes | memoryview) -> int:
        """Store a blob unless it is stored or in flight; returns the bytes it added."""
        if self.known(blob_id):
            return 0
        # Encoded outside the lock (it is the costly part).
        return self.add_encoded(
            blob_type, blob_id, self._store.codec.encode_blob(blob_id, data), len(data)
        )

    def add_encoded(
        self, blob_type: BlobType, blob_id: bytes, stored: bytes, raw_length: int
    ) -> int:
        """Put an encoded blob into the open pack unless another writer (or an earlier copy)
        claimed it meanwhile; returns the bytes it added."""
        key = blob_id[:KEY_BYTES]
        # Claimed and appended under the lock, so another writer sealing this pack never
        # sees a claim without its blob.
        while True:
            # Only this thread opens packs (others may only seal ours), and the wait for a
            # buffer happens outside the lock so a sealing writer is never held up by it.
            if self._open is None and self._spare is None:
                self._spare = self._store.reserve()
            with self._lock:
                slot = self._open
                if slot is not None and not slot.builder.fits(len(stored)):
                    self._seal_locked()
                    continue
                if slot is None:
                    if self._spare is None:
                        continue  # sealed by another writer just now: reserve again
                    slot = self._open = _PackSlot(self, self._spare)
                    self._spare = None
                    self._slots.append(slot)
                    if not slot.builder.fits(len(stored)):
                        raise RepositoryError(f"a blob of {len(stored)} bytes exceeds a pack")
                known = self._store.claim(key, slot)
                if known is not None:
                    self._note(known)
                    return 0
                slot.builder.add(blob_type, blob_id, stored, raw_length)
                slot.keys.append(key)
                if slot.builder.size >= self._store.pack_size:
                    self._seal_locked()
                return len(stored)

    def _note(self, known: ChunkLocation | _PackSlot) -> None:
        if isinstance(known, _PackSlot) and known.owner is not self:
            self._depends.add(known)

    def seal(self, slot: _PackSlot | None = None) -> None:
        """Send the open pack to upload (only if it is still ``slot``, when given)."""
        with self._lock:
            if self._open is not None and (slot is None or self._open is slot):
                self._seal_locked()

    def _seal_locked(self) -> None:
        slot, self._open = self._open, None
        assert slot is not None
        # Forget settled packs: a long backup must not accumulate one object per pack.
        self._slots = [s for s in self._slots if not s.done.is_set() or s.failed]
        self._depends = {s for s in self._depends if not s.done.is_set() or s.failed}
        if not slot.keys:
            self._store.release(slot.builder.buffer)
            slot.done.set()
            return
        self._store.submit(slot)
        failed = next((s for s in self._slots if s.failed), None)
        if failed is not None:  # stop reading a disk whose data can no longer be stored
            raise RepositoryError(
                f"a pack of this backup could not be stored: {failed.error}"
            ) from failed.error

    def finish(self) -> None:
        """Upload the open pack and wait for every pack this writer needs; raise on failure."""
        self.seal()
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            self._store.release(spare)
        for slot in list(self._slots):
            slot.done.wait()
        for slot in list(self._depends):
            slot.owner.seal(slot)
            slot.done.wait()
        failed = [s for s in (*self._slots, *self._depends) if s.error is not None]
        if failed:
            error = failed[0].error
            raise RepositoryError(
                f"{len(failed)} pack(s) of this backup could not be stored: {error}"
            ) from error
