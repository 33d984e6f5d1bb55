"""Check: is every backup in the repository restorable? A report, never an exception for
damaged data.

Structure (always): every index object decodes; every pack an index names exists and is at
least as long as the blobs the index puts in it; every snapshot decodes, and every chunk of
every file is in the index (the chunk lists are read for that). Packs no index names are
warnings (an interrupted backup left them; prune removes them).

Data (``read_data=True``): every indexed pack is downloaded (a few in parallel), its hash
(BLAKE3, or SHA-256 in older repositories) compared with its name, its header with the
index, and every blob decrypted, decompressed and hashed back to its id. A damaged blob is
reported with the backups and files that use it, so the operator knows which VM backups are
hit: "web01 backup 1a2b3c4d of 2026-11-26 07:15, file 'Virtual Hard Disks/web01.vhdx'".
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from hyperv_backup.errors import HyperVBackupError, IntegrityError
from hyperv_backup.repository.index import INDEX_PREFIX, read_index
from hyperv_backup.repository.pack import (
    PACK_PREFIX,
    PackedBlob,
    blobs_end,
    pack_digest,
    pack_id_of_key,
    pack_key,
    read_pack_header,
)
from hyperv_backup.repository.restore import ChunkReader
from hyperv_backup.repository.snapshot import SnapshotFile, read_snapshot, snapshot_keys
from hyperv_backup.repository.store import BlobStore

__all__ = ["AffectedFile", "CheckProblem", "CheckReport", "check_repository"]

logger = logging.getLogger(__name__)

_ID_BYTES = 32


@dataclass(frozen=True)
class AffectedFile:
    """A file of a backup that a problem makes unrestorable."""

    snapshot_id: str
    vm_name: str
    time: datetime
    path: str

    def describe(self) -> str:
        """``web01 backup 1a2b3c4d of 2026-11-26 07:15:00+00:00: 'Virtual Hard Disks/…'``."""
        return (
            f"{self.vm_name} backup {self.snapshot_id[:8]} of "
            f"{self.time.isoformat(' ', 'seconds')}: {self.path!r}"
        )


@dataclass
class CheckProblem:
    """One thing wrong; ``affected`` lists the backup files it makes unrestorable."""

    kind: str
    message: str
    affected: list[AffectedFile] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.affected:
            return self.message
        return f"{self.message}; used by " + "; ".join(a.describe() for a in self.affected)


@dataclass
class CheckReport:
    """The outcome of a check: problems and what was looked at."""

    read_data: bool
    errors: list[CheckProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    snapshots: int = 0
    index_objects: int = 0
    packs: int = 0
    blobs: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        """No error was found (warnings allowed)."""
        return not self.errors

    @property
    def damaged_snapshots(self) -> set[str]:
        """Ids of snapshots that cannot be fully restored."""
        return {a.snapshot_id for problem in self.errors for a in problem.affected}


@dataclass
class _PackVerdict:
    pack_id: str
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)
    damaged: list[tuple[PackedBlob, str]] = field(default_factory=list)


def _verify_pack(store: BlobStore, pack_id: str, blobs: list[PackedBlob]) -> _PackVerdict:
    verdict = _PackVerdict(pack_id)
    name = f"pack {pack_id[:16]}"
    try:
        data = store.target.get(pack_key(pack_id))
    except FileNotFoundError:
        verdict.damaged = [(b, f"{name} is missing") for b in blobs]
        return verdict
    verdict.bytes_read = len(data)
    if pack_digest(store.pack_id_hash, data) != pack_id:
        verdict.problems.append(
            f"{name}: its content does not match its name ({store.pack_id_hash})"
        )
    try:
        header = {b.id: b for b in read_pack_header(data, store.codec, name=name)}
    except IntegrityError as err:
        verdict.problems.append(str(err))
        header = None
    view = memoryview(data)
    for blob in blobs:
        listed = header.get(blob.id) if header is not None else None
        if header is not None and (
            listed is None or (listed.offset, listed.length) != (blob.offset, blob.length)
        ):
            verdict.problems.append(f"{name}: the index and the pack header disagree")
        try:
            store.codec.decode_blob(
                blob.id, view[blob.offset : blob.offset + blob.length], blob.raw_length
            )
        except IntegrityError as err:
            verdict.damaged.append((blob, f"{name}: {err}"))
    return verdict


class _Checker:
    def __init__(
        self,
        store: BlobStore,
        read_data: bool,
        threads: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.progress = progress
        self.report = CheckReport(read_data=read_data)
        self.threads = max(1, threads)
        # Blob id → why it cannot be read (only blobs the dedup index would serve).
        self.damaged: dict[bytes, str] = {}

    def run(self) -> CheckReport:
        sizes = {
            named: info.size
            for info in self.store.target.list(PACK_PREFIX)
            if (named := pack_id_of_key(info.key)) is not None
        }
        indexed = self._check_index(sizes)
        for pack_id in sorted(set(sizes) - indexed):
            self.report.warnings.append(
                f"pack {pack_id[:16]} is in no index (left by an interrupted backup): "
                "repair_index makes its data reusable, prune removes it"
            )
        self._check_snapshots()
        return self.report

    def _index_packs(self) -> Iterator[tuple[str, list[PackedBlob]]]:
        keys = sorted(info.key for info in self.store.target.list(INDEX_PREFIX))
        for key in keys:
            self.report.index_objects += 1
            try:
                decoded = read_index(self.store.target, self.store.codec, key)
            except (HyperVBackupError, FileNotFoundError) as err:
                self.report.errors.append(
                    CheckProblem("index", f"index object {key} cannot be read: {err}")
                )
                continue
            yield from decoded.items()

    def _check_index(self, sizes: dict[str, int]) -> set[str]:
        indexed: set[str] = set()
        pending: list[Future[_PackVerdict]] = []
        with ThreadPoolExecutor(self.threads, "hyperv-backup-check") as pool:
            for pack_id, blobs in self._index_packs():
                if pack_id in indexed:
                    continue  # listed by two index objects (two writers): checked once
                indexed.add(pack_id)
                self.report.packs += 1
                self.report.blobs += len(blobs)
                size = sizes.get(pack_id)
                if size is None:
                    self._record(
                        _PackVerdict(
                            pack_id, damaged=[(b, f"pack {pack_id[:16]} is missing") for b in blobs]
                        )
                    )
                    continue
                if size < blobs_end(blobs):
                    self.report.errors.append(
                        CheckProblem("pack", f"pack {pack_id[:16]} is shorter than its index says")
                    )
                if self.report.read_data:
                    # Bounded: at most threads + 1 packs in memory at once.
                    if len(pending) > self.threads:
                        self._record(pending.pop(0).result())
                    pending.append(pool.submit(_verify_pack, self.store, pack_id, blobs))
            for future in pending:
                self._record(future.result())
        return indexed

    def _record(self, verdict: _PackVerdict) -> None:
        self.report.bytes_read += verdict.bytes_read
        if self.progress is not None and verdict.bytes_read:
            self.progress(verdict.bytes_read)
        for problem in verdict.problems:
            self.report.errors.append(CheckProblem("pack", problem))
        for blob, reason in verdict.damaged:
            served = self.store.locate(blob.id)
            if (
                served is not None
                and served[0] == verdict.pack_id
                and (served[1].offset == blob.offset)
            ):
                self.damaged[blob.id] = reason
            else:
                self.report.errors.append(
                    CheckProblem(
                        "pack",
                        f"{reason} (a duplicate copy of blob {blob.id.hex()[:16]}; backups "
                        "read another copy, prune drops this one)",
                    )
                )

    def _check_snapshots(self) -> None:
        reader = ChunkReader(self.store)
        affected: dict[bytes, list[AffectedFile]] = defaultdict(list)
        for key in sorted(snapshot_keys(self.store.target)):
            try:
                snapshot = read_snapshot(self.store.target, self.store.codec, key)
            except (HyperVBackupError, FileNotFoundError) as err:
                self.report.errors.append(
                    CheckProblem("snapshot", f"snapshot object {key} cannot be read: {err}")
                )
                continue
            self.report.snapshots += 1
            for entry in snapshot.files:
                where = AffectedFile(snapshot.id, snapshot.vm_name, snapshot.time, entry.path)
                self._check_file(reader, entry, where, affected)
        for blob_id, reason in self.damaged.items():
            users = affected.get(blob_id, [])
            self.report.errors.append(
                CheckProblem(
                    "data",
                    f"{reason}" + ("" if users else " (no backup uses it)"),
                    affected=users,
                )
            )

    def _check_file(
        self,
        reader: ChunkReader,
        entry: SnapshotFile,
        where: AffectedFile,
        affected: dict[bytes, list[AffectedFile]],
    ) -> None:
        missing = 0
        total = 0
        chunks = 0
        for list_hex in entry.chunk_lists:
            list_id = bytes.fromhex(list_hex)
            if list_id in self.damaged:
                affected[list_id].append(where)
                return
            try:
                ids = reader.read_blob(list_id)
            except (HyperVBackupError, FileNotFoundError) as err:
                self.report.errors.append(
                    CheckProblem("snapshot", f"the chunk list cannot be read: {err}", [where])
                )
                return
            for start in range(0, len(ids), _ID_BYTES):
                chunk_id = ids[start : start + _ID_BYTES]
                chunks += 1
                found = self.store.locate(chunk_id)
                if found is None:
                    missing += 1
                    continue
                total += found[1].raw_length
                if chunk_id in self.damaged and where not in affected[chunk_id]:
                    affected[chunk_id].append(where)
        if missing:
            self.report.errors.append(
                CheckProblem("snapshot", f"{missing} chunk(s) are missing from the index", [where])
            )
        elif chunks != entry.chunks or total != entry.size:
            self.report.errors.append(
                CheckProblem(
                    "snapshot",
                    f"the chunks add up to {total} bytes in {chunks} chunks, but the file had "
                    f"{entry.size} bytes in {entry.chunks}",
                    [where],
                )
            )


def check_repository(
    store: BlobStore,
    *,
    read_data: bool = False,
    threads: int = 2,
    progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Check the repository behind ``store`` (see the module docstring).

    ``progress``: with ``read_data``, called with the bytes of each pack once it is verified.
    """
    report = _Checker(store, read_data, threads, progress).run()
    logger.info(
        "check: %d snapshots, %d packs, %d blobs, %d errors",
        report.snapshots,
        report.packs,
        report.blobs,
        len(report.errors),
    )
    return report
