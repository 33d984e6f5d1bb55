"""The backup repository: content-addressed, deduplicating, optionally encrypted.

VM files are cut into content-defined chunks (FastCDC, 384 KiB average), named by keyed
BLAKE3, compressed with zstd, optionally encrypted with AES-256-GCM, and stored in packs of
~16 MiB on a :class:`~hyperv_backup.targets.Target`. One snapshot manifest per VM backup is
written last. :class:`Repository` is also a capture sink for :class:`~hyperv_backup.BackupJob`.

>>> from hyperv_backup.repository import Repository, RetentionPolicy
>>> from hyperv_backup.targets import LocalTarget
>>> repo = Repository.init(LocalTarget("/backups/repo"), password="…")     # doctest: +SKIP
>>> repo.check(read_data=True).ok                                            # doctest: +SKIP
>>> repo.forget(RetentionPolicy(keep_daily=7, keep_weekly=4), dry_run=False) # doctest: +SKIP
>>> repo.prune(dry_run=False)                                                # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hyperv_backup.repository.check import AffectedFile, CheckProblem, CheckReport
from hyperv_backup.repository.config import RepositoryConfig
from hyperv_backup.repository.lock import LockInfo
from hyperv_backup.repository.prune import PruneReport
from hyperv_backup.repository.repair import IndexRepairReport
from hyperv_backup.repository.repository import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PACK_MEMORY,
    DEFAULT_PACK_SIZE,
    Repository,
)
from hyperv_backup.repository.restore import RestoreReport, vm_folder_name
from hyperv_backup.repository.retention import ForgetReport, RetentionDecision, RetentionPolicy
from hyperv_backup.repository.snapshot import Snapshot, SnapshotFile, SnapshotStats
from hyperv_backup.repository.writer import SnapshotWriter

if TYPE_CHECKING:
    from hyperv_backup.repository.host_restore import HostRestoreReport, restore_to_host

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_PACK_MEMORY",
    "DEFAULT_PACK_SIZE",
    "AffectedFile",
    "CheckProblem",
    "CheckReport",
    "ForgetReport",
    "HostRestoreReport",
    "IndexRepairReport",
    "LockInfo",
    "PruneReport",
    "Repository",
    "RepositoryConfig",
    "RestoreReport",
    "RetentionDecision",
    "RetentionPolicy",
    "Snapshot",
    "SnapshotFile",
    "SnapshotStats",
    "SnapshotWriter",
    "restore_to_host",
    "vm_folder_name",
]


def __getattr__(name: str) -> Any:
    # Restoring onto a host needs PowerShell Remoting and SMB: loaded only when asked for.
    if name in ("HostRestoreReport", "restore_to_host"):
        from hyperv_backup.repository import host_restore  # noqa: PLC0415

        return getattr(host_restore, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
