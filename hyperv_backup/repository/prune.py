"""Prune: delete the packs no snapshot needs, and rewrite the index to match.

Runs under the exclusive lock (no backup can add a reference meanwhile). Steps, ordered so
that a crash at any point leaves every snapshot restorable:

1. Read every snapshot and the chunk lists of its files: the set of blobs still used. A
   snapshot that cannot be read, or a used blob missing from the index, stops prune (run
   ``check``): deleting with an incomplete picture could destroy the only copy.
2. Classify each indexed pack: unused (delete), partly used (keep, or repack when the unused
   share reaches ``repack_threshold``), used. A blob stored twice keeps one copy.
3. Repack: copy the used blobs (still encrypted, verified on the way) into new packs.
4. Write index objects for what remains, then delete the old index objects, then the packs
   (unused, repacked, and packs no index ever named: left by interrupted backups).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from hyperv_backup.errors import HyperVBackupError, IntegrityError, RepositoryError
from hyperv_backup.repository.chunk_table import ChunkLocation, ChunkTable
from hyperv_backup.repository.index import INDEX_PREFIX, read_index, write_index_objects
from hyperv_backup.repository.pack import (
    PACK_PREFIX,
    PackBuilder,
    PackedBlob,
    pack_id_of_key,
    pack_key,
)
from hyperv_backup.repository.restore import ChunkReader
from hyperv_backup.repository.snapshot import read_snapshot, snapshot_keys
from hyperv_backup.repository.store import BlobStore

__all__ = ["PruneReport", "prune_repository"]

logger = logging.getLogger(__name__)

_ID_BYTES = 32
_PRESENT = ChunkLocation(0, 0, 0, 0)


@dataclass
class PruneReport:
    """What prune deleted and rewrote (or, with ``dry_run``, would)."""

    dry_run: bool
    packs: int = 0
    packs_deleted: list[str] = field(default_factory=list)
    packs_repacked: list[str] = field(default_factory=list)
    unindexed_packs_deleted: list[str] = field(default_factory=list)
    packs_written: int = 0
    blobs_used: int = 0
    blobs_removed: int = 0
    bytes_freed: int = 0
    index_objects_removed: int = 0
    index_objects_written: int = 0
    uploads_aborted: int = 0
    """Unfinished uploads (multipart, temporary files) of killed writers that were removed."""


def _used_blobs(store: BlobStore) -> ChunkTable:
    """Every blob a snapshot needs (chunk lists and chunks), as a compact set."""
    used = ChunkTable()
    reader = ChunkReader(store)
    for key in snapshot_keys(store.target):
        try:
            snapshot = read_snapshot(store.target, store.codec, key)
        except (HyperVBackupError, FileNotFoundError) as err:
            raise RepositoryError(
                f"prune stopped before deleting anything: snapshot {key} cannot be read "
                f"({err}); run check"
            ) from err
        for entry in snapshot.files:
            for list_hex in entry.chunk_lists:
                list_id = bytes.fromhex(list_hex)
                try:
                    ids = reader.read_blob(list_id)
                except (HyperVBackupError, FileNotFoundError) as err:
                    raise RepositoryError(
                        f"prune stopped before deleting anything: {snapshot.describe()} file "
                        f"{entry.path!r} has an unreadable chunk list ({err}); run check "
                        "(and repair_index if it reports index problems)"
                    ) from err
                used.add(list_id, _PRESENT)
                for start in range(0, len(ids), _ID_BYTES):
                    chunk_id = ids[start : start + _ID_BYTES]
                    if chunk_id not in used and store.locate(chunk_id) is None:
                        raise RepositoryError(
                            f"prune stopped before deleting anything: {snapshot.describe()} "
                            f"file {entry.path!r} uses chunk {chunk_id.hex()[:16]}, which is "
                            "in no index; run check"
                        )
                    used.add(chunk_id, _PRESENT)
    return used


def _repack(
    store: BlobStore, moves: dict[str, list[PackedBlob]], new_packs: dict[str, list[PackedBlob]]
) -> int:
    """Copy the listed blobs of each pack into new packs; returns how many were written."""
    buffer = store.reserve()
    builder = PackBuilder(buffer)
    written = 0

    def upload() -> None:
        nonlocal builder, written
        pack_id, data = builder.build(store.codec, store.pack_id_hash)
        store.target.put(pack_key(pack_id), data, retain_until=store.retain_until())
        new_packs[pack_id] = builder.blobs
        builder = PackBuilder(buffer)
        written += 1

    try:
        for pack_id, blobs in moves.items():
            data = store.target.get(pack_key(pack_id))
            for blob in blobs:
                stored = data[blob.offset : blob.offset + blob.length]
                try:
                    store.codec.decode_blob(blob.id, stored, blob.raw_length)
                except IntegrityError as err:
                    raise RepositoryError(
                        f"prune stopped before deleting anything: pack {pack_id[:16]} holds a "
                        f"damaged blob ({err}); run check(read_data=True)"
                    ) from err
                if not builder.fits(len(stored)):
                    upload()
                builder.add(blob.type, blob.id, stored, blob.raw_length)
                if builder.size >= store.pack_size:
                    upload()
        if len(builder):
            upload()
    finally:
        store.release(buffer)
    return written


def prune_repository(
    store: BlobStore,
    *,
    dry_run: bool,
    repack_threshold: float | None,
    ensure_locked: Callable[[], None],
) -> PruneReport:
    """Prune the repository behind ``store`` (see the module docstring)."""
    report = PruneReport(dry_run=dry_run)
    if store.unreadable_index:
        # Without them, packs only they name would look unused and be deleted.
        raise RepositoryError(
            f"prune stopped before deleting anything: index object {store.unreadable_index[0]} "
            "cannot be read; run repair_index, then check"
        )
    used = _used_blobs(store)
    index_keys = sorted(info.key for info in store.target.list(INDEX_PREFIX))
    indexed: dict[str, list[PackedBlob]] = {}
    for key in index_keys:
        try:
            decoded = read_index(store.target, store.codec, key)
        except (HyperVBackupError, FileNotFoundError) as err:
            # Without it, packs only it names would look unused and be deleted.
            raise RepositoryError(
                f"prune stopped before deleting anything: index object {key} cannot be read "
                f"({err}); run repair_index, then check"
            ) from err
        for pack_id, blobs in decoded.items():
            indexed.setdefault(pack_id, blobs)
    sizes = {
        named: info.size
        for info in store.target.list(PACK_PREFIX)
        if (named := pack_id_of_key(info.key)) is not None
    }
    report.packs = len(indexed)
    kept_blobs = ChunkTable()
    keep: dict[str, list[PackedBlob]] = {}
    moves: dict[str, list[PackedBlob]] = {}
    for pack_id, blobs in indexed.items():
        size = sizes.get(pack_id)
        keepers = [b for b in blobs if b.id in used and b.id not in kept_blobs]
        if size is None:
            # A missing pack is dropped from the index; its used blobs must have another
            # copy (checked below), or prune stops.
            report.blobs_removed += len(blobs)
            continue
        for blob in keepers:
            kept_blobs.add(blob.id, _PRESENT)
        report.blobs_used += len(keepers)
        report.blobs_removed += len(blobs) - len(keepers)
        used_bytes = sum(b.length for b in keepers)
        if not keepers:
            report.packs_deleted.append(pack_id)
            report.bytes_freed += size
        elif repack_threshold is not None and 1 - used_bytes / size >= repack_threshold:
            report.packs_repacked.append(pack_id)
            moves[pack_id] = keepers
            report.bytes_freed += size - used_bytes
        else:
            keep[pack_id] = keepers
    if len(kept_blobs) < len(used):
        raise RepositoryError(
            "prune stopped before deleting anything: some used blobs are only in missing "
            "packs; run check"
        )
    report.unindexed_packs_deleted = sorted(set(sizes) - set(indexed))
    report.bytes_freed += sum(sizes[p] for p in report.unindexed_packs_deleted)
    changed = bool(
        report.packs_deleted
        or report.packs_repacked
        or report.unindexed_packs_deleted
        or report.blobs_removed
    )
    if dry_run or not changed:
        return report
    report.packs_written = _repack(store, moves, keep)
    ensure_locked()
    written = write_index_objects(store.target, store.codec, keep)
    report.index_objects_written = len(written)
    ensure_locked()
    for key in index_keys:
        if key not in written:  # same content → same key: never delete what we just wrote
            store.target.delete(key)
            report.index_objects_removed += 1
    for pack_id in (*report.packs_deleted, *report.packs_repacked, *report.unindexed_packs_deleted):
        store.target.delete(pack_key(pack_id))
    store.load_index()
    logger.info(
        "prune: %d packs deleted, %d repacked, %d unindexed removed, %d bytes freed",
        len(report.packs_deleted),
        len(report.packs_repacked),
        len(report.unindexed_packs_deleted),
        report.bytes_freed,
    )
    return report
