"""The previous backup of a VM, as chunk guides for its next one.

A VM's backup is guided by its parent: by default the newest snapshot of the same VM id in
the repository (a VM keeps its id when renamed or moved to another host). Each file of the
new backup that the parent also holds, under the same path, gets a
:class:`~hyperv_backup.repository.guide.ChunkGuide` built from the parent's chunk list and
the index's chunk sizes. A guide only saves work; when one cannot be built (a chunk list
that cannot be read, a chunk the loaded index does not know), the file is chunked without
it and the backup goes on.

Finding the newest snapshot of a VM reads every snapshot manifest once per open repository
(as listing the snapshots does); later lookups in the same process read only new ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from hyperv_backup.errors import HyperVBackupError
from hyperv_backup.repository.guide import ChunkGuide
from hyperv_backup.repository.restore import ChunkReader
from hyperv_backup.repository.snapshot import Snapshot, SnapshotFile
from hyperv_backup.repository.store import BlobStore

__all__ = ["ParentGuides"]

logger = logging.getLogger(__name__)


class _UnknownChunkError(Exception):
    """The parent's chunk is not in the loaded index: its size is unknown."""


class ParentGuides:
    """Chunk guides for the files of one VM backup; the parent is looked up on first use.

    ``find_parent`` returns the parent snapshot (or None); it is called at most once.
    """

    def __init__(self, store: BlobStore, find_parent: Callable[[], Snapshot | None]) -> None:
        self._store = store
        self._find_parent = find_parent
        self._lock = threading.Lock()
        self._looked = False
        self._files: dict[str, SnapshotFile] = {}

    def _parent_files(self) -> dict[str, SnapshotFile]:
        with self._lock:
            if not self._looked:
                self._looked = True
                try:
                    parent = self._find_parent()
                except (HyperVBackupError, OSError) as err:
                    logger.warning("no previous backup to guide the chunking: %s", err)
                    parent = None
                if parent is not None:
                    self._files = {entry.path: entry for entry in parent.files}
                    logger.debug("chunking guided by %s", parent.describe())
            return self._files

    def __call__(self, path: str) -> ChunkGuide | None:
        """The guide for the file at ``path`` (POSIX, relative), or None."""
        entry = self._parent_files().get(path)
        if entry is None or entry.chunks < 2:
            return None  # a file of one chunk has no cut to guess
        try:
            return ChunkGuide(self._sizes(entry), self._store.codec.blob_id)
        except _UnknownChunkError:
            logger.debug("%s: a chunk of the previous backup is not in the index", path)
        except (HyperVBackupError, OSError) as err:
            logger.warning("%s: chunked without the previous backup's guide: %s", path, err)
        return None

    def _sizes(self, entry: SnapshotFile) -> Iterator[tuple[bytes, int]]:
        """(id, size) of each chunk of the parent's file, in order."""
        for chunk_id in ChunkReader(self._store).chunk_ids(entry):
            found = self._store.locate(chunk_id)
            if found is None:
                raise _UnknownChunkError(chunk_id.hex())
            yield chunk_id, found[1].raw_length
