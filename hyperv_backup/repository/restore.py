"""Restore: a snapshot back into the Export-VM folder layout, ready for ``Import-VM``.

Files are streamed chunk by chunk: consecutive chunks of one pack are fetched with one range
read (up to 8 MiB), a few reads ahead on a small thread pool, each chunk decoded and checked
against its id. Every file's hash (BLAKE3; SHA-256 for backups made before it) is computed
as it is written and compared with the one recorded at backup; a file is written as
``<name>.partial`` and renamed only when it matches, so a damaged or interrupted restore
never leaves a plausible-looking wrong file. Runs of zero chunks are skipped with a seek, so
restored disks stay sparse.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hyperv_backup.errors import HyperVBackupError, IntegrityError, RepositoryError
from hyperv_backup.repository.chunk_table import ChunkLocation
from hyperv_backup.repository.pack import pack_key
from hyperv_backup.repository.snapshot import Snapshot, SnapshotFile
from hyperv_backup.repository.store import BlobStore
from hyperv_backup.sink import safe_relative_path

__all__ = ["ChunkReader", "RestoreReport", "restore_snapshot", "vm_folder_name"]

_ID_BYTES = 32
_MAX_RUN = 8 * 1024 * 1024
_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def vm_folder_name(vm_name: str) -> str:
    """A VM name made safe as a folder name on Windows and POSIX."""
    return _FORBIDDEN.sub("_", vm_name).strip(" .") or "vm"


@dataclass
class RestoreReport:
    """What a restore wrote."""

    snapshot_id: str
    folder: Path
    files: list[str] = field(default_factory=list)
    bytes: int = 0


@dataclass
class _Run:
    """Chunks to fetch with one read (``pack`` None: zero chunks, nothing to read)."""

    pack: str | None
    start: int
    end: int
    chunks: list[tuple[bytes, ChunkLocation]]


class ChunkReader:
    """Reads blobs back from the repository (used by restore and check)."""

    def __init__(self, store: BlobStore, *, threads: int = 3, prefetch: int = 4) -> None:
        self._store = store
        self._threads = threads
        self._prefetch = prefetch

    def read_blob(self, blob_id: bytes) -> bytes:
        """One blob's plaintext, verified; :class:`IntegrityError` if missing or damaged."""
        found = self._store.locate(blob_id)
        if found is None:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index")
        pack_id, location = found
        stored = self._store.target.get_range(pack_key(pack_id), location.offset, location.length)
        return self._store.codec.decode_blob(blob_id, stored, location.raw_length)

    def chunk_ids(self, entry: SnapshotFile) -> Iterator[bytes]:
        """A file's chunk ids, in order, one chunk list blob in memory at a time."""
        for list_id in entry.chunk_lists:
            ids = self.read_blob(bytes.fromhex(list_id))
            for start in range(0, len(ids), _ID_BYTES):
                yield ids[start : start + _ID_BYTES]

    def _runs(self, chunk_ids: Iterable[bytes]) -> Iterator[_Run]:
        codec = self._store.codec
        run: _Run | None = None
        for chunk_id in chunk_ids:
            found = self._store.locate(chunk_id)
            if found is None:
                raise IntegrityError(f"chunk {chunk_id.hex()[:16]} is not in the index")
            pack_id, location = found
            # Only a blob that compressed to almost nothing can be all zeros: the zero id is
            # computed for those alone (zstd makes 2 MiB of zeros ~80 bytes).
            maybe_zero = location.length <= location.raw_length // 1024 + 128
            is_zero = maybe_zero and chunk_id == codec.zero_id(location.raw_length)
            pack: str | None = None if is_zero else pack_id
            extends = (
                run is not None
                and run.pack == pack
                and (
                    pack is None
                    or (
                        location.offset == run.end
                        and location.offset + location.length - run.start <= _MAX_RUN
                    )
                )
            )
            if run is not None and extends:
                run.chunks.append((chunk_id, location))
                run.end = location.offset + location.length
                continue
            if run is not None:
                yield run
            run = _Run(pack, location.offset, location.offset + location.length, [])
            run.chunks.append((chunk_id, location))
        if run is not None:
            yield run

    def _fetch(self, run: _Run) -> list[bytes]:
        assert run.pack is not None
        data = self._store.target.get_range(pack_key(run.pack), run.start, run.end - run.start)
        if len(data) != run.end - run.start:
            raise IntegrityError(f"pack {run.pack[:16]} is shorter than the index says")
        view = memoryview(data)
        decode = self._store.codec.decode_blob
        return [
            decode(
                chunk_id,
                view[loc.offset - run.start : loc.offset - run.start + loc.length],
                loc.raw_length,
            )
            for chunk_id, loc in run.chunks
        ]

    def chunks(self, chunk_ids: Iterable[bytes]) -> Iterator[tuple[int, bytes | None]]:
        """(plain length, plaintext) of each chunk in order; plaintext None for all-zero."""
        runs = self._runs(chunk_ids)
        with ThreadPoolExecutor(self._threads, "hyperv-backup-read") as pool:
            pending: deque[tuple[_Run, Future[list[bytes]] | None]] = deque()

            def fill() -> None:
                while len(pending) < self._prefetch:
                    run = next(runs, None)
                    if run is None:
                        return
                    future = pool.submit(self._fetch, run) if run.pack is not None else None
                    pending.append((run, future))

            fill()
            while pending:
                run, future = pending.popleft()
                decoded = future.result() if future is not None else None
                fill()
                for index, (_chunk_id, location) in enumerate(run.chunks):
                    yield location.raw_length, decoded[index] if decoded is not None else None


def _selected(path: str, prefixes: Sequence[str] | None) -> bool:
    if not prefixes:
        return True
    folded = path.casefold()
    for prefix in prefixes:
        wanted = prefix.replace("\\", "/").strip("/").casefold()
        if folded == wanted or folded.startswith(wanted + "/"):
            return True
    return False


def _restore_file(
    reader: ChunkReader,
    snapshot: Snapshot,
    entry: SnapshotFile,
    destination: Path,
    progress: Callable[[int], None] | None = None,
) -> None:
    partial = destination.with_name(destination.name + ".partial")
    digest = entry.hasher()
    written = 0
    try:
        with partial.open("wb") as out:
            for length, data in reader.chunks(reader.chunk_ids(entry)):
                if data is None:
                    digest.update(bytes(length))
                    out.seek(length, os.SEEK_CUR)
                else:
                    digest.update(data)
                    out.write(data)
                written += length
                if progress is not None:
                    progress(length)
            out.truncate(written)  # a file ending in zeros was only seeked over
            out.flush()
            os.fsync(out.fileno())
    except (HyperVBackupError, FileNotFoundError) as err:
        partial.unlink(missing_ok=True)
        raise IntegrityError(
            f"{entry.path!r} of {snapshot.describe()} cannot be restored: {err}; "
            "the partial file was removed. Run check(read_data=True)."
        ) from err
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if written != entry.size or not digest.matches():
        partial.unlink(missing_ok=True)
        raise IntegrityError(
            f"{entry.path!r} of {snapshot.describe()} does not match the {digest.name} "
            "recorded at backup; the partial file was removed. Run check(read_data=True)."
        )
    os.replace(partial, destination)


def restore_snapshot(
    store: BlobStore,
    snapshot: Snapshot,
    destination: Path,
    *,
    paths: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RestoreReport:
    """Write ``snapshot`` under ``destination/<VM name>/`` (see :meth:`Repository.restore`).

    ``progress`` is called with the byte count of each chunk written (zero chunks included).
    """
    folder = Path(destination) / vm_folder_name(snapshot.vm_name)
    chosen = [f for f in snapshot.files if _selected(f.path, paths)]
    if paths and not chosen:
        raise RepositoryError(
            f"{snapshot.describe()} has no file under {list(paths)}; "
            f"its files are: {[f.path for f in snapshot.files]}"
        )
    targets = [(f, folder.joinpath(*safe_relative_path(f.path).parts)) for f in chosen]
    existing = [str(p) for _f, p in targets if p.exists()]
    if existing and not overwrite:
        raise RepositoryError(
            f"refusing to overwrite {len(existing)} existing file(s), e.g. {existing[0]}; "
            "restore into an empty folder or pass overwrite=True"
        )
    reader = ChunkReader(store)
    report = RestoreReport(snapshot_id=snapshot.id, folder=folder)
    for entry, path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        _restore_file(reader, snapshot, entry, path, progress)
        report.files.append(entry.path)
        report.bytes += entry.size
    return report
