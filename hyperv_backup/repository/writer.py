"""Writing one VM's backup: the repository's :class:`~hyperv_backup.sink.VMCapture`.

Each file is streamed once: read → BLAKE3 (of the whole file, for the engine and restore;
on its own thread) → content-defined chunks → keyed BLAKE3 id → stored unless the
repository (or a pack in flight) has it: compressed and encrypted on the store's encoding
pool while the next chunks are cut, then added to the writer's pack in file order. The
file's ordered chunk ids go into ``chunk_list`` blobs; the manifest is written by
:meth:`SnapshotWriter.commit` after every pack and index object it needs.

When the VM has an earlier backup holding a file of the same path, that file's chunks guide
the chunker (:mod:`~hyperv_backup.repository.guide`): the same cuts, found with less work.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from datetime import timezone
from typing import BinaryIO

from hyperv_backup.errors import HyperVBackupError, RepositoryError
from hyperv_backup.models import VMInfo
from hyperv_backup.repository.chunker import Chunker, DigestingReader
from hyperv_backup.repository.guide import ChunkGuide
from hyperv_backup.repository.pack import BlobType
from hyperv_backup.repository.snapshot import (
    CHUNK_IDS_PER_LIST,
    SNAPSHOT_KIND,
    SNAPSHOT_PREFIX,
    Snapshot,
    SnapshotFile,
    SnapshotStats,
    aware,
)
from hyperv_backup.repository.store import BlobStore, Packer
from hyperv_backup.results import VMBackupResult
from hyperv_backup.sink import FileDigest, safe_relative_path

__all__ = ["SnapshotWriter"]

logger = logging.getLogger(__name__)

_ID_BYTES = 32
_ENCODING_DEPTH = 2
"""New chunks a writer keeps on the encoding pool per encoding thread."""


@dataclass(frozen=True)
class _Encoding:
    """A new chunk on its way through the encoding pool."""

    id: bytes
    length: int
    future: Future[bytes]


class SnapshotWriter:
    """One VM's backup being written; obtained from ``Repository.open_vm``.

    ``write_file`` may be called from one thread at a time; several writers of the same
    repository run concurrently and share its dedup state.
    """

    def __init__(
        self,
        *,
        repository_id: str,
        store: BlobStore,
        chunker: Chunker,
        job_id: str,
        vm: VMInfo,
        host: str,
        tags: Sequence[str],
        check_lock: Callable[[], None],
        on_close: Callable[[], None],
        guides: Callable[[str], ChunkGuide | None] | None = None,
    ) -> None:
        self._repository_id = repository_id
        self._store = store
        self._chunker = chunker
        self._packer = Packer(store)
        self._job_id = job_id
        self._vm = vm
        self._host = host
        self._tags = list(tags)
        self._check_lock = check_lock
        self._on_close = on_close
        self._guides = guides
        self._files: dict[str, SnapshotFile] = {}
        self._stats = SnapshotStats()
        self._state = "open"

    def __repr__(self) -> str:
        return f"SnapshotWriter({self._vm.name!r}, {self._state})"

    def _ensure_open(self) -> None:
        if self._state != "open":
            raise RepositoryError(f"the backup of {self._vm.name!r} is already {self._state}")

    def write_file(
        self,
        relative_path: str,
        stream: BinaryIO,
        progress: Callable[[int], None] | None = None,
    ) -> FileDigest:
        """Store ``stream`` (read to its end) as ``relative_path``; its size and BLAKE3."""
        self._ensure_open()
        path = safe_relative_path(relative_path).as_posix()
        guide = self._guides(path) if self._guides is not None else None
        reader = DigestingReader(stream, progress)
        chunk_ids = bytearray()
        chunk_lists: list[str] = []
        chunks = 0
        encoding: deque[_Encoding] = deque()
        try:
            for view, zero, known_id in self._chunker.cut(reader, guide):
                chunk_ids += self._store_chunk(view, zero, known_id, encoding)
                chunks += 1
                if len(chunk_ids) >= CHUNK_IDS_PER_LIST * _ID_BYTES:
                    chunk_lists.append(self._store_chunk_list(bytes(chunk_ids)))
                    chunk_ids = bytearray()
            self._settle(encoding, 0)
            if chunk_ids:
                chunk_lists.append(self._store_chunk_list(bytes(chunk_ids)))
        finally:
            reader.close()
            for pending in encoding:  # a failed file: let its encodings end, store nothing
                pending.future.cancel()
            wait([pending.future for pending in encoding])
        digest = FileDigest(size=reader.size, blake3=reader.hexdigest())
        if guide is not None:
            logger.debug(
                "%s: %s: %d of %d chunks cut where the previous backup's were guessed",
                self._vm.name,
                path,
                guide.confirmed,
                chunks,
            )
        self._files[path] = SnapshotFile(
            path=path,
            size=digest.size,
            blake3=digest.blake3,
            chunks=chunks,
            chunk_lists=chunk_lists,
        )
        self._stats.bytes += digest.size
        return digest

    def _store_chunk(
        self,
        data: memoryview,
        zero: bool,
        known_id: bytes | None,
        encoding: deque[_Encoding],
    ) -> bytes:
        # The view is only valid until the next chunk: hashed straight from the chunker's
        # buffer (unless a guided chunker did), and copied only when it is new and goes to
        # the encoding pool. Runs of zeros (free disk space) the chunker recognised are all
        # alike: their id is cached.
        codec = self._store.codec
        if known_id is not None:
            chunk_id = known_id
        else:
            chunk_id = codec.zero_id(len(data)) if zero else codec.blob_id(data)
        self._stats.chunks += 1
        if not self._packer.known(chunk_id) and not any(p.id == chunk_id for p in encoding):
            encoding.append(
                _Encoding(chunk_id, len(data), self._store.encode(chunk_id, bytes(data)))
            )
            self._settle(encoding, _ENCODING_DEPTH * self._store.encode_threads)
        return chunk_id

    def _settle(self, encoding: deque[_Encoding], keep: int) -> None:
        """Add encoded chunks to the pack, in order: every finished one, and then wait for
        the oldest until at most ``keep`` are in flight."""
        while encoding and (len(encoding) > keep or encoding[0].future.done()):
            pending = encoding.popleft()
            added = self._packer.add_encoded(
                BlobType.DATA, pending.id, pending.future.result(), pending.length
            )
            if added:
                self._stats.new_chunks += 1
                self._stats.new_bytes += pending.length
                self._stats.stored_bytes += added

    def _store_chunk_list(self, ids: bytes) -> str:
        list_id = self._store.codec.blob_id(ids)
        self._stats.stored_bytes += self._packer.add(BlobType.CHUNK_LIST, list_id, ids)
        return list_id.hex()

    def commit(self, result: VMBackupResult) -> str:
        """Wait for this backup's packs, write the index, then the manifest; its location."""
        self._ensure_open()
        self._state = "committing"
        try:
            self._packer.finish()
            self._store.index.flush()
            self._check_lock()  # a prune may run once our lock expired: then write nothing
            snapshot_id = secrets.token_hex(16)
            location = f"{self._repository_id}:{snapshot_id}"
            roles = {f.relative_path.replace("\\", "/"): f.role for f in result.files}
            files = [
                entry.model_copy(update={"role": roles.get(path)})
                for path, entry in self._files.items()
            ]
            snapshot = Snapshot(
                id=snapshot_id,
                time=aware(result.started_at).astimezone(timezone.utc),
                job_id=self._job_id,
                host=self._host,
                tags=self._tags,
                vm=self._vm,
                result=result.model_copy(update={"location": location}),
                files=files,
                stats=self._stats,
            )
            data = self._store.codec.seal(SNAPSHOT_KIND, snapshot.to_bytes())
            # Retained like its packs: with Object Lock, nobody (not even stolen credentials)
            # can remove the backup before the retention ends.
            stored = self._store.target.put(
                SNAPSHOT_PREFIX + snapshot_id,
                data,
                if_absent=True,
                retain_until=self._store.retain_until(),
            )
            if not stored:
                raise RepositoryError(f"snapshot id {snapshot_id} exists already; try again")
            self._state = "committed"
            logger.info(
                "%s: snapshot %s, %d new of %d chunks (%d bytes stored)",
                self._vm.name,
                snapshot.short_id,
                self._stats.new_chunks,
                self._stats.chunks,
                self._stats.stored_bytes,
            )
            return location
        except BaseException:
            self._state = "failed"
            raise
        finally:
            self._close()

    def abort(self) -> None:
        """Write no manifest. What was uploaded stays (indexed) for later dedup or prune."""
        if self._state in ("committed", "aborted"):
            return
        was_open = self._state == "open"
        self._state = "aborted"
        if not was_open:
            return  # a failed commit already closed
        try:
            # Finish the uploads anyway: another writer may have reused a blob of our pack.
            self._packer.finish()
            self._store.index.flush()
        except HyperVBackupError as err:
            logger.warning("while abandoning the backup of %s: %s", self._vm.name, err)
        finally:
            self._close()

    def _close(self) -> None:
        on_close, self._on_close = self._on_close, _nothing
        on_close()


def _nothing() -> None:
    pass
