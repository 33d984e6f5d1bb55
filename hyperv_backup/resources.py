"""Host-side resources as context managers, each recorded in the journal while it exists.

Every resource a backup creates on the host — a backup checkpoint, a staging folder, VSS
shadow copies (and the pause around them), the shares that expose shadow copies to an SMB
reader, suspended replication — is owned by a context manager here. Its exit undoes it
(awaiting a checkpoint's merge); a failure to undo is recorded as a warning and the journal
entry stays pending, so the next run retries it.
:meth:`HostResources.undo` is the same undo, driven by a dead run's journal entry.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from hyperv_backup.errors import HyperVBackupError, VMNotFoundError
from hyperv_backup.host import HyperVHost
from hyperv_backup.journal import Journal, JournalEntry
from hyperv_backup.models import VMInfo
from hyperv_backup.policy import BackupPolicy
from hyperv_backup.ps_scripts import (
    SCRIPTS,
    BackupCheckpoint,
    GetBackupLeftoversParams,
    NewBackupCheckpointParams,
    NewPausedShadowParams,
    NewStagingFolderParams,
    NewStagingShareParams,
    PausedShadow,
    RemovalResult,
    RemoveBackupCheckpointParams,
    RemoveShadowParams,
    RemoveStagingFolderParams,
    RemoveStagingShareParams,
    ReplicationChange,
    ReplicationParams,
    ResumeVMParams,
    ShadowCopy,
    StagingFolder,
    StagingShare,
)
from hyperv_backup.retry import RetryLog, conflicting_operation
from hyperv_backup.transfer import ShareMappingReader

__all__ = ["HostResources", "checkpoint_name", "shadow_share_name", "staging_folder_name"]

logger = logging.getLogger(__name__)

_MERGE_GRACE = 300.0  # the script's own deadline exceeds the merge deadline by this much


def checkpoint_name(prefix: str, job_id: str) -> str:
    """The name of a job's backup checkpoints: recognisable, and tied to the job."""
    return f"{prefix}-{job_id}"


def staging_folder_name(prefix: str, job_id: str) -> str:
    """The folder under the staging root that holds a job's per-VM folders."""
    return f"{prefix}-{job_id}"


_MAX_SHARE_NAME = 80  # Windows' limit


def shadow_share_name(prefix: str, job_id: str, vm_id: str, volume: str) -> str:
    """The share that exposes a VM's shadow copy of ``volume`` for one job:
    ``<prefix>-<job id>-<first 8 of the VM id>-<drive letter>``. A job id too long for a share
    name (80 characters) is replaced by a digest of it."""
    letter = volume.strip()[:1].upper()
    name = f"{prefix}-{job_id}-{vm_id[:8]}-{letter}"
    if len(name) > _MAX_SHARE_NAME:
        digest = hashlib.sha256(job_id.encode()).hexdigest()[:16]
        name = f"{prefix}-{digest}-{vm_id[:8]}-{letter}"
    return name


class HostResources:
    """Creates and undoes one job's host-side resources through the host's scripts."""

    def __init__(
        self, host: HyperVHost, journal: Journal, job_id: str, policy: BackupPolicy
    ) -> None:
        self.host = host
        self.journal = journal
        self.job_id = job_id
        self.policy = policy

    # --- checkpoint ------------------------------------------------------------------------

    @contextmanager
    def backup_checkpoint(
        self,
        vm: VMInfo,
        checkpoint_type: Literal["ProductionOnly", "Standard"],
        retry_log: RetryLog,
        warnings: list[str],
    ) -> Iterator[BackupCheckpoint]:
        """Take the backup checkpoint (retrying conflicting operations); remove it on exit
        and wait for its merge."""
        name = checkpoint_name(self.policy.name_prefix, self.job_id)
        entry = self.journal.acquire(
            self.job_id, "checkpoint", vm_name=vm.name, vm_id=str(vm.id), checkpoint_name=name
        )
        params = NewBackupCheckpointParams(
            vm_name=vm.name, checkpoint_name=name, checkpoint_type=checkpoint_type
        )
        try:
            checkpoint: BackupCheckpoint = conflicting_operation(
                self.policy.retry,
                lambda: self.host.runner.run(SCRIPTS["new-backup-checkpoint"], params),
                what=f"checkpoint of VM {vm.name!r}",
                log=retry_log,
            )
        except BaseException:
            # The checkpoint may exist anyway (a timeout or dropped connection after the host
            # created it): look for it by name before letting the entry go.
            self._settle_failed_checkpoint(entry, vm, name, warnings)
            raise
        self.journal.update(entry, checkpoint_id=str(checkpoint.id))
        logger.info("%s: backup checkpoint %s taken (%s)", vm.name, checkpoint.id, checkpoint_type)
        try:
            yield checkpoint
        finally:
            self._undo_guarded(
                entry,
                warnings,
                f"removing backup checkpoint of {vm.name!r}",
                lambda: self._remove_checkpoint(vm.name, str(checkpoint.id)),
            )

    def _remove_checkpoint(self, vm_name: str, checkpoint_id: str) -> None:
        params = RemoveBackupCheckpointParams(
            vm_name=vm_name,
            checkpoint_id=checkpoint_id,  # type: ignore[arg-type]  # pydantic parses the UUID
            merge_timeout_seconds=self.policy.merge_timeout,
        )
        result = self.host.runner.run(
            SCRIPTS["remove-backup-checkpoint"],
            params,
            deadline=self.policy.merge_timeout + _MERGE_GRACE,
        )
        logger.info("%s: checkpoint removed, merge took %.1f s", vm_name, result.seconds)

    def _settle_failed_checkpoint(
        self, entry: str, vm: VMInfo, name: str, warnings: list[str]
    ) -> None:
        try:
            leftovers = self._find_checkpoints(name, vm_id=str(vm.id))
            for found in leftovers:
                self._remove_checkpoint(vm.name, found)
        except HyperVBackupError as err:
            warnings.append(
                f"could not check for a half-created checkpoint {name!r} on {vm.name!r}: {err}; "
                "the next run will look again"
            )
            return
        self.journal.release(entry)

    def _find_checkpoints(self, name: str, *, vm_id: str | None = None) -> list[str]:
        leftovers = self.host.runner.run(
            SCRIPTS["get-backup-leftovers"],
            GetBackupLeftoversParams(prefix=self.policy.name_prefix),
        )
        return [
            str(c.id)
            for c in leftovers.checkpoints
            if c.name == name and (vm_id is None or str(c.vm_id) == vm_id)
        ]

    # --- staging ---------------------------------------------------------------------------

    @contextmanager
    def staging_folder(
        self, vm: VMInfo, required_bytes: float, warnings: list[str]
    ) -> Iterator[StagingFolder]:
        """A per-job, per-VM folder under the staging root; deleted on exit."""
        root = self.policy.staging_root
        entry = self.journal.acquire(self.job_id, "staging", vm_name=vm.name, vm_id=str(vm.id))
        params = NewStagingFolderParams(
            root=root, job_id=self.job_id, vm_id=vm.id, required_bytes=required_bytes
        )
        try:
            folder: StagingFolder = self.host.runner.run(SCRIPTS["new-staging-folder"], params)
        except BaseException:
            # Nothing was created when the script refused (space, permissions); a sweep of
            # the staging root finds a folder made before a dropped connection.
            self.journal.release(entry)
            raise
        self.journal.update(entry, path=folder.path)
        try:
            yield folder
        finally:
            self._undo_guarded(
                entry,
                warnings,
                f"removing staging folder {folder.path}",
                lambda: self._remove_staging(folder.path),
            )

    def _remove_staging(self, path: str) -> None:
        self.host.runner.run(SCRIPTS["remove-staging-folder"], RemoveStagingFolderParams(path=path))

    # --- pause + VSS ----------------------------------------------------------------------

    @contextmanager
    def paused_shadow(
        self, vm: VMInfo, volumes: list[str], link_root: str, warnings: list[str]
    ) -> Iterator[PausedShadow]:
        """Pause (if running), shadow-copy ``volumes``, resume; remove the shadows on exit."""
        paused = self.journal.acquire(self.job_id, "paused_vm", vm_name=vm.name, vm_id=str(vm.id))
        shadows_entry = self.journal.acquire(
            self.job_id, "shadow", vm_name=vm.name, vm_id=str(vm.id), link_root=link_root
        )
        params = NewPausedShadowParams(vm_name=vm.name, volumes=volumes, link_root=link_root)
        try:
            result: PausedShadow = self.host.runner.run(SCRIPTS["new-paused-shadow"], params)
        except BaseException:
            # The script resumes the VM in its own finally; make sure of it all the same.
            self._undo_guarded(
                paused, warnings, f"resuming VM {vm.name!r}", lambda: self._resume_vm(vm.name)
            )
            self.journal.release(shadows_entry)
            raise
        if not result.resumed and result.pause_seconds > 0:
            warnings.append(f"the host did not confirm that {vm.name!r} was resumed")
        else:
            self.journal.release(paused)
        self.journal.update(
            shadows_entry,
            shadows=[{"id": str(s.id), "link_path": s.link_path} for s in result.shadows],
        )
        try:
            yield result
        finally:
            self._undo_guarded(
                shadows_entry,
                warnings,
                f"removing shadow copies of {vm.name!r}",
                lambda: self._remove_shadows(
                    [{"id": str(s.id), "link_path": s.link_path} for s in result.shadows]
                ),
            )

    @contextmanager
    def shadow_share(
        self,
        vm: VMInfo,
        shadow: ShadowCopy,
        *,
        read_access: str,
        reader: ShareMappingReader,
        warnings: list[str],
    ) -> Iterator[StagingShare]:
        """Share ``shadow``'s device read-only to ``read_access`` and have ``reader`` read the
        shadow's link path (``<staging>\\vss\\D``) through that share; unmap it and remove
        the share on exit — before the shadow copy goes.

        An SMB client cannot follow the link to the shadow copy (it resolves links on its own
        side, and the host's ``GLOBALROOT`` device is out of its reach), but the host can
        share the shadow device itself.
        """
        name = shadow_share_name(self.policy.name_prefix, self.job_id, str(vm.id), shadow.volume)
        device = shadow.device_object.rstrip("\\") + "\\"  # the root of the shadow volume
        entry = self.journal.acquire(
            self.job_id,
            "share",
            vm_name=vm.name,
            vm_id=str(vm.id),
            name=name,
            path=device,
            link_path=shadow.link_path,
        )
        params = NewStagingShareParams(name=name, path=device, read_access=read_access)
        what = f"removing share {name} of the shadow copy of {shadow.volume} ({vm.name!r})"
        try:
            share: StagingShare = self.host.runner.run(SCRIPTS["new-staging-share"], params)
        except BaseException:
            # The share may exist anyway (made before a dropped connection): remove it by
            # name, which is harmless when it does not.
            self._undo_guarded(entry, warnings, what, lambda: self._remove_share(name))
            raise
        logger.info("%s: shadow copy of %s shared as %s", vm.name, shadow.volume, share.name)
        try:
            reader.map_share(shadow.link_path, share.name)
            yield share
        finally:
            reader.unmap_share(shadow.link_path)
            self._undo_guarded(entry, warnings, what, lambda: self._remove_share(name))

    def _remove_share(self, name: str) -> bool:
        """Remove a ``hyperv-backup-*`` share; False when it was already gone."""
        result: RemovalResult = self.host.runner.run(
            SCRIPTS["remove-staging-share"], RemoveStagingShareParams(name=name)
        )
        return result.removed

    def _remove_shadows(self, shadows: list[dict[str, str]]) -> None:
        for shadow in shadows:
            self.host.runner.run(
                SCRIPTS["remove-shadow"],
                RemoveShadowParams(
                    shadow_id=shadow["id"],  # type: ignore[arg-type]  # pydantic parses it
                    link_path=shadow["link_path"],
                ),
            )

    def _resume_vm(self, vm_name: str) -> None:
        self.host.runner.run(SCRIPTS["resume-vm"], ResumeVMParams(vm_name=vm_name))

    # --- replication -----------------------------------------------------------------------

    @contextmanager
    def suspended_replication(self, vm: VMInfo, warnings: list[str]) -> Iterator[ReplicationChange]:
        """Suspend Hyper-V Replica for ``vm``; resume it on exit, always."""
        entry = self.journal.acquire(
            self.job_id, "replication_suspended", vm_name=vm.name, vm_id=str(vm.id)
        )
        try:
            change: ReplicationChange = self.host.runner.run(
                SCRIPTS["suspend-vm-replication"], ReplicationParams(vm_name=vm.name)
            )
        except BaseException:
            # It may have been suspended before the failure surfaced: resume to be sure.
            self._undo_guarded(
                entry,
                warnings,
                f"resuming replication of {vm.name!r}",
                lambda: self._resume_replication(vm.name),
            )
            raise
        logger.info(
            "%s: replication suspended (%s → %s)", vm.name, change.state_before, change.state_after
        )
        if change.state_before == "Suspended":
            # Someone else suspended it: resuming it afterwards would undo their decision.
            self.journal.release(entry)
            warnings.append(
                f"replication of {vm.name!r} was already suspended before the backup; "
                "it was left suspended"
            )
            yield change
            return
        try:
            yield change
        finally:
            self._undo_guarded(
                entry,
                warnings,
                f"resuming replication of {vm.name!r}",
                lambda: self._resume_replication(vm.name),
            )

    def _resume_replication(self, vm_name: str) -> None:
        self.host.runner.run(SCRIPTS["resume-vm-replication"], ReplicationParams(vm_name=vm_name))

    # --- undo ------------------------------------------------------------------------------

    def _undo_guarded(
        self, entry: str, warnings: list[str], what: str, undo: Callable[[], object]
    ) -> None:
        try:
            undo()
        except VMNotFoundError:
            logger.info("%s: the VM no longer exists; nothing to undo", what)
        except HyperVBackupError as err:
            warnings.append(
                f"{what} failed: {err}. It stays in the journal; the next run "
                "(or `hyperv-backup cleanup`) tries again."
            )
            logger.error("%s failed: %s", what, err)
            return
        self.journal.release(entry)

    def undo(self, entry: JournalEntry) -> str:
        """Undo a resource recorded by a dead run; returns what was done.

        Raises :class:`HyperVBackupError` when the host refuses; the entry then stays.
        """
        vm = entry.vm_name or "?"
        try:
            if entry.kind == "paused_vm":
                self._resume_vm(vm)
                done = f"resumed VM {vm!r} (paused by job {entry.job_id})"
            elif entry.kind == "share":
                name = str(entry.data.get("name", ""))
                removed = self._remove_share(name)
                state = "removed" if removed else "found already gone"
                done = f"{state} share {name} of {vm!r} (job {entry.job_id})"
            elif entry.kind == "shadow":
                self._remove_shadows(list(entry.data.get("shadows", [])))
                done = f"removed shadow copies of {vm!r} (job {entry.job_id})"
            elif entry.kind == "checkpoint":
                ids = (
                    [entry.data["checkpoint_id"]]
                    if "checkpoint_id" in entry.data
                    else (
                        self._find_checkpoints(
                            str(entry.data.get("checkpoint_name")), vm_id=entry.vm_id
                        )
                    )
                )
                for checkpoint_id in ids:
                    self._remove_checkpoint(vm, checkpoint_id)
                done = f"removed backup checkpoint of {vm!r} (job {entry.job_id})"
            elif entry.kind == "staging":
                if "path" in entry.data:
                    self._remove_staging(str(entry.data["path"]))
                done = f"removed staging folder {entry.data.get('path', '?')} (job {entry.job_id})"
            else:
                self._resume_replication(vm)
                done = f"resumed replication of {vm!r} (suspended by job {entry.job_id})"
        except VMNotFoundError:
            done = f"{entry.kind} of {vm!r}: the VM no longer exists"
        self.journal.release(entry.id)
        return done
