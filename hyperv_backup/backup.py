"""Backup jobs: plan, then for each VM freeze, capture, store, clean up — and report.

>>> job = BackupJob(settings, BackupPolicy(), sink=DirectorySink("/backups"),
...                 reader=LocalPathReader({"D:\\\\": "/mnt/hv01-d"}))   # doctest: +SKIP
>>> result = job.run(Selection(all=True))                            # doctest: +SKIP
>>> result.status, [v.achieved for v in result.vms]                   # doctest: +SKIP

The life of one VM (see :mod:`hyperv_backup.consistency` for the choice of method):

1. before-VM hooks; optionally suspend Hyper-V Replica; wait out busy replication states.
2. Freeze: a backup checkpoint (production, falling back to standard when the policy allows;
   "conflicting operation" retried), or pause + host VSS shadow copies.
3. Capture: *in place* — export only the configuration as of the checkpoint and read the
   disks where they lie (they are frozen below the checkpoint); *export* — ``Export-VM`` into
   a staging folder; shadow copies are always read in place (through a share of each shadow
   copy when the reader reads over SMB, which cannot follow the host's links to them).
4. Store every file in the sink, hashing as it streams; a file whose size changed while it was
   read was not frozen, and fails the VM.
5. Undo everything (checkpoint removed and merge awaited, staging deleted, shares of shadow
   copies and the shadows deleted, replication resumed) — also on failure; after-VM hooks
   always run.

VMs run in parallel (``policy.parallel_vms``, one PSRP session each); one VM's failure never
stops the others. Every resource is journalled on the management box; the next run, or
:meth:`BackupJob.cleanup`, undoes what a killed run left.
"""

from __future__ import annotations

import logging
import ntpath
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Literal

from hyperv_backup.config import ConnectionSettings
from hyperv_backup.consistency import CaptureMethod, decide_consistency
from hyperv_backup.errors import (
    ConfigError,
    ConflictingOperationError,
    ConsistencyError,
    ExportError,
    HookError,
    HyperVBackupError,
    PassthroughDiskError,
    ProductionCheckpointError,
    RemoteScriptError,
)
from hyperv_backup.hooks import HookContext, run_hooks
from hyperv_backup.host import HyperVHost
from hyperv_backup.journal import UNDO_ORDER, HostLock, Journal, default_state_dir
from hyperv_backup.models import HostInfo, ReplicationMode, VMInfo
from hyperv_backup.plan import BackupPlan, capture_mode_for, make_plan, passthrough_exclusions
from hyperv_backup.policy import BackupPolicy, CaptureMode, PassthroughPolicy, Selection
from hyperv_backup.ps_scripts import (
    SCRIPTS,
    ExportResult,
    FileRole,
    GetBackupLeftoversParams,
    GetInventoryParams,
    GetVMFilesParams,
    HostFile,
    RemoveStagingFolderParams,
    VMConfigExportParams,
    VMExportParams,
)
from hyperv_backup.ps_scripts.contracts import STAGING_SHARE_PATTERN
from hyperv_backup.remote.classify import BUSY_REPLICATION_STATES, reclassify_for_replication
from hyperv_backup.resources import HostResources
from hyperv_backup.results import (
    CapturedFile,
    CleanupReport,
    JobResult,
    VMBackupResult,
    VMStatus,
)
from hyperv_backup.retry import RetryLog, conflicting_operation
from hyperv_backup.sink import CaptureSink, VMCapture
from hyperv_backup.transfer import FileReader, ShareMappingReader

__all__ = ["BackupJob", "ProgressEvent", "new_job_id"]

logger = logging.getLogger(__name__)

_CONFIG_EXPORT_SPACE = 256 * 1024 * 1024  # a configuration export is small; ask for headroom


def new_job_id() -> str:
    """Sortable and unique: ``20261126T071500Z-3f9a1c``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class ProgressEvent:
    """Progress for a UI: ``kind`` is vm_started, file_started, bytes, vm_finished.

    ``file_started`` and ``bytes`` name the ``file`` (relative path) and carry ``total``, the
    bytes of all the VM's files, and ``file_size``, the listed size of this file (a running
    VM's active disk read from a shadow copy may end up a little larger). ``bytes`` events
    carry in ``bytes`` the count just read (an increment, not a running sum); they come from
    the VM's worker thread, several VMs at once. ``vm_finished`` carries the ``result``.
    """

    kind: str
    vm_name: str
    file: str | None = None
    bytes: int = 0
    total: int = 0
    result: VMBackupResult | None = None
    file_size: int = 0


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class _ToRead:
    """A file of the backup and the host path to read it from (the shadow's, for VSS).

    ``check_size``: the listed size must be what is read — true for every frozen file.
    """

    file: HostFile
    read_path: str
    check_size: bool = True


def _now() -> datetime:
    return datetime.now(timezone.utc)


class BackupJob:
    """Backs up VMs of one host into a sink, reading the host's files with a reader.

    ``share_account``: the account (``DOMAIN\\user``) given read access to the temporary
    shares through which a share-mapping reader (:class:`~hyperv_backup.transfer.SMBReader`)
    reads shadow copies; by default the account the job connects as (``settings.username``).
    Set it when the reader logs in to SMB as another account.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        policy: BackupPolicy | None = None,
        *,
        sink: CaptureSink | None = None,
        reader: FileReader | None = None,
        state_dir: Path | None = None,
        progress: ProgressCallback | None = None,
        share_account: str | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or BackupPolicy()
        self.sink = sink
        self.reader = reader
        self.share_account = share_account
        self.state_dir = state_dir or default_state_dir()
        self.journal = Journal(self.state_dir, settings.host)
        self._progress = progress

    def __repr__(self) -> str:
        return f"BackupJob({self.settings.endpoint!r}, sink={self.sink!r})"

    # --- public ----------------------------------------------------------------------------

    def plan(self, selection: Selection) -> BackupPlan:
        """What :meth:`run` would do, without touching anything on the host."""
        with HyperVHost(self.settings) as host:
            info = host.ensure_supported()
            vms = self._inventory(host, selection)
        return make_plan(info, vms, selection, self.policy, self.reader)

    def run(self, selection: Selection, *, job_id: str | None = None) -> JobResult:
        """Back up the selected VMs. Never raises for a VM's failure: see the result."""
        if self.sink is None:
            raise ConfigError("BackupJob.run needs a sink (where the backup goes)")
        job_id = job_id or new_job_id()
        result = JobResult(job_id=job_id, host=self.settings.host, started_at=_now())
        try:
            with HostLock(self.state_dir, self.settings.host), HyperVHost(self.settings) as host:
                self._run_locked(host, selection, result)
        except HyperVBackupError as err:
            result.error = str(err)
            logger.error("job %s failed: %s", job_id, err)
        result.finished_at = _now()
        result.settle()
        return result

    def cleanup(self) -> CleanupReport:
        """Undo what killed runs left on the host (journal first, then a sweep by name)."""
        with HostLock(self.state_dir, self.settings.host), HyperVHost(self.settings) as host:
            host.ensure_supported()
            return self._cleanup(host)

    # --- the job ---------------------------------------------------------------------------

    def _run_locked(self, host: HyperVHost, selection: Selection, result: JobResult) -> None:
        info = host.ensure_supported()
        result.cleanup = self._cleanup(host)
        vms = self._inventory(host, selection)
        plan = make_plan(info, vms, selection, self.policy, self.reader)
        selected = {p.vm_id for p in plan.vms}
        vms = [vm for vm in vms if str(vm.id) in selected]
        if not vms:
            raise ConfigError("No VM matched the selection; nothing to back up.")
        context = HookContext(job_id=result.job_id, phase="before_job", host=self.settings.host)
        result.hooks += run_hooks(host, self.policy.hooks.before_job, context)
        try:
            if any(not h.ok for h in result.hooks):
                raise HookError(
                    "A before-job command failed, so no VM was touched: "
                    + "; ".join(f"{h.hook}: {h.error}" for h in result.hooks if not h.ok)
                )
            result.vms = self._run_vms(info, vms, result.job_id)
        finally:
            after = HookContext(job_id=result.job_id, phase="after_job", host=self.settings.host)
            result.hooks += run_hooks(host, self.policy.hooks.after_job, after)

    def _inventory(self, host: HyperVHost, selection: Selection) -> list[VMInfo]:
        return host.inventory([] if selection.all else selection.names)

    def _run_vms(self, info: HostInfo, vms: list[VMInfo], job_id: str) -> list[VMBackupResult]:
        local = threading.local()
        sessions: list[HyperVHost] = []
        sessions_lock = threading.Lock()

        def session() -> HyperVHost:
            # pypsrp pools are not thread-safe: one session per worker thread.
            host: HyperVHost | None = getattr(local, "host", None)
            if host is None:
                host = HyperVHost(self.settings)
                local.host = host
                with sessions_lock:
                    sessions.append(host)
            return host

        def work(vm: VMInfo) -> VMBackupResult:
            return self._backup_vm(session(), info, vm, job_id)

        try:
            with ThreadPoolExecutor(self.policy.parallel_vms, "hyperv-backup-vm") as pool:
                return list(pool.map(work, vms))
        finally:
            for host in sessions:
                host.close()

    # --- one VM ----------------------------------------------------------------------------

    def _backup_vm(
        self, host: HyperVHost, info: HostInfo, vm: VMInfo, job_id: str
    ) -> VMBackupResult:
        started = time.monotonic()
        result = VMBackupResult(
            vm_name=vm.name,
            vm_id=str(vm.id),
            requested=self.policy.consistency,
            replication_role=vm.replication.mode.value,
            excluded=passthrough_exclusions(vm),
            started_at=_now(),
        )
        self._emit(ProgressEvent("vm_started", vm.name))
        retry_log = RetryLog()
        capture: VMCapture | None = None
        try:
            self._check_policy(info, vm, result)
            context = HookContext(job_id, "before_vm", self.settings.host, vm)
            before = run_hooks(host, self.policy.hooks.before_vm, context)
            result.hooks += before
            if any(not h.ok for h in before):
                raise HookError(
                    f"A before-VM command failed, so {vm.name!r} was not touched: "
                    + "; ".join(f"{h.hook}: {h.error}" for h in before if not h.ok)
                )
            resources = HostResources(host, self.journal, job_id, self.policy)
            with ExitStack() as stack:
                if self.policy.suspend_replication and vm.replication.mode != ReplicationMode.NONE:
                    stack.enter_context(resources.suspended_replication(vm, result.warnings))
                    result.replication_suspended = True
                vm = self._wait_for_replication(host, vm, retry_log)
                files = self._freeze(
                    stack,
                    resources,
                    host=host,
                    info=info,
                    vm=vm,
                    result=result,
                    retry_log=retry_log,
                )
                assert self.sink is not None
                capture = self.sink.open_vm(
                    job_id, vm, host=self.settings.host, tags=self.policy.tags
                )
                self._transfer(vm, files, capture, result)
                result.status = VMStatus.SUCCESS
            # Committed after the host is cleaned up, so the report includes any warning.
            result.finished_at = _now()
            result.duration_seconds = time.monotonic() - started
            self._fill_retries(result, retry_log)
            result.location = capture.commit(result)
        except Exception as err:  # one VM's failure, whatever it is, never stops the others
            if not isinstance(err, HyperVBackupError):
                logger.exception("unexpected error backing up %s", vm.name)
            result.status = VMStatus.FAILED
            result.error = str(err)
            result.error_type = type(err).__name__
            if capture is not None:
                capture.abort()
        finally:
            context = HookContext(job_id, "after_vm", self.settings.host, vm, result)
            after = run_hooks(host, self.policy.hooks.after_vm, context)
            result.hooks += after
            result.warnings += [
                f"after-VM command {h.hook!r} failed: {h.error}" for h in after if not h.ok
            ]
            self._fill_retries(result, retry_log)
            result.finished_at = _now()
            result.duration_seconds = time.monotonic() - started
        self._emit(ProgressEvent("vm_finished", vm.name, result=result))
        achieved = result.achieved.value if result.achieved is not None else "nothing achieved"
        logger.info("%s: %s (%s)", vm.name, result.status.value, achieved)
        return result

    @staticmethod
    def _fill_retries(result: VMBackupResult, log: RetryLog) -> None:
        result.retries = log.retries
        result.retry_reasons = list(log.reasons)

    def _check_policy(self, info: HostInfo, vm: VMInfo, result: VMBackupResult) -> None:
        decision = decide_consistency(info, vm, self.policy.consistency)
        result.consistency_reason = decision.reason
        result.method = decision.method
        if decision.refusal is not None:
            raise ConsistencyError(f"{vm.name!r}: {decision.refusal}")
        if result.excluded and self.policy.passthrough == PassthroughPolicy.FAIL_VM:
            raise PassthroughDiskError(
                f"{vm.name!r} has {len(result.excluded)} pass-through disk(s), which Hyper-V "
                "cannot back up, and the policy is passthrough=fail_vm. Back the data up "
                "inside the guest, or convert the disks to VHDX; or use passthrough=skip_disk."
            )

    def _wait_for_replication(self, host: HyperVHost, vm: VMInfo, log: RetryLog) -> VMInfo:
        """Wait (bounded, with backoff) while replication is in a state that fails backups."""
        if vm.replication.mode == ReplicationMode.NONE:
            return vm

        def fresh_state() -> VMInfo:
            params = GetInventoryParams(names=[vm.name], exact=True)
            current: VMInfo = host.runner.run(SCRIPTS["get-inventory"], params).vms[0]
            if current.replication.state in BUSY_REPLICATION_STATES:
                raise ConflictingOperationError(
                    f"replication of {vm.name!r} is {current.replication.state}",
                    target=vm.name,
                )
            return current

        return conflicting_operation(
            self.policy.retry, fresh_state, what=f"replication of VM {vm.name!r}", log=log
        )

    # --- freezing ----------------------------------------------------------------------------

    def _freeze(
        self,
        stack: ExitStack,
        resources: HostResources,
        *,
        host: HyperVHost,
        info: HostInfo,
        vm: VMInfo,
        result: VMBackupResult,
        retry_log: RetryLog,
    ) -> list[_ToRead]:
        """Freeze the VM and list what to read: (file, host path to read it from)."""
        decision = decide_consistency(info, vm, self.policy.consistency)
        method = decision.method
        assert method is not None  # refusals were raised by _check_policy
        mode = capture_mode_for(vm, method, self.policy, self.reader)
        result.capture_mode = mode
        if not method.uses_checkpoint:
            result.method, result.achieved = method, decision.level
            return self._freeze_with_shadow(
                stack, resources, host=host, vm=vm, method=method, result=result
            )
        # The staging folder (and its free-space preflight) comes first: a full volume should
        # fail the VM before a checkpoint is taken, not after.
        if mode == CaptureMode.IN_PLACE:
            required = float(_CONFIG_EXPORT_SPACE)
        else:
            estimate = sum(d.file_size for disk in vm.virtual_disks for d in disk.chain)
            estimate += vm.memory_assigned + _CONFIG_EXPORT_SPACE
            required = estimate * self.policy.staging_headroom
        staging = stack.enter_context(resources.staging_folder(vm, required, result.warnings))
        try:
            checkpoint = stack.enter_context(
                resources.backup_checkpoint(
                    vm, self._checkpoint_type(method), retry_log, result.warnings
                )
            )
            achieved = decision.level
        except ProductionCheckpointError as err:
            if decision.fallback is None:
                raise ConsistencyError(
                    f"{vm.name!r}: the production checkpoint failed ({err}) and the policy "
                    "requires application consistency (app_required), so no crash-consistent "
                    "fallback was taken. Check the guest's VSS integration service and its "
                    "VSS writers (vssadmin list writers in the guest)."
                ) from err
            result.consistency_reason += (
                f"; the production checkpoint failed ({err}), so a standard checkpoint "
                "was taken instead"
            )
            method, achieved = decision.fallback, decision.fallback_level
            checkpoint = stack.enter_context(
                resources.backup_checkpoint(vm, "Standard", retry_log, result.warnings)
            )
        result.method, result.achieved = method, achieved
        if mode == CaptureMode.IN_PLACE:
            params = VMConfigExportParams(
                vm_name=vm.name, checkpoint_id=checkpoint.id, destination=staging.path
            )
            exported = self._backup_operation(host, vm, "export-vm-config", params, retry_log)
            listing = host.runner.run(SCRIPTS["get-vm-files"], GetVMFilesParams(vm_name=vm.name))
            active = {p.casefold() for p in [*checkpoint.active_disks, *listing.active_disks]}
            # Below the checkpoint every disk file is frozen; the new tips take the writes.
            disks = [
                f
                for f in listing.files
                if f.role == FileRole.DISK and f.path.casefold() not in active
            ]
            return [_ToRead(f, f.path) for f in [*exported.files, *disks]]
        params_export = VMExportParams(vm_name=vm.name, destination=staging.path)
        exported = self._backup_operation(host, vm, "export-vm", params_export, retry_log)
        return [_ToRead(f, f.path) for f in exported.files]

    @staticmethod
    def _checkpoint_type(method: CaptureMethod) -> Literal["ProductionOnly", "Standard"]:
        return "ProductionOnly" if method == CaptureMethod.PRODUCTION_CHECKPOINT else "Standard"

    def _backup_operation(
        self,
        host: HyperVHost,
        vm: VMInfo,
        script: str,
        params: VMConfigExportParams | VMExportParams,
        log: RetryLog,
    ) -> ExportResult:
        def attempt() -> ExportResult:
            try:
                exported: ExportResult = host.runner.run(SCRIPTS[script], params)
            except RemoteScriptError as err:
                raise reclassify_for_replication(err, vm.replication.state) from err
            return exported

        return conflicting_operation(
            self.policy.retry, attempt, what=f"{script} of VM {vm.name!r}", log=log
        )

    def _freeze_with_shadow(
        self,
        stack: ExitStack,
        resources: HostResources,
        *,
        host: HyperVHost,
        vm: VMInfo,
        method: CaptureMethod,
        result: VMBackupResult,
    ) -> list[_ToRead]:
        # An SMB client cannot follow the links to the shadow copies (it resolves links on its
        # own side, and the host's GLOBALROOT devices are out of its reach): for a reader that
        # maps shares, each shadow copy is shared itself, readable by this account.
        share_reader = self.reader if isinstance(self.reader, ShareMappingReader) else None
        share_account = self._share_account() if share_reader is not None else ""
        # The list is taken before the shadow: it names what the shadow must contain.
        listing = host.runner.run(SCRIPTS["get-vm-files"], GetVMFilesParams(vm_name=vm.name))
        volumes = sorted({_volume_of(f.path) for f in listing.files})
        staging = stack.enter_context(resources.staging_folder(vm, 0, result.warnings))
        link_root = ntpath.join(staging.path, "vss")
        shadows = stack.enter_context(
            resources.paused_shadow(vm, volumes, link_root, result.warnings)
        )
        if method == CaptureMethod.PAUSE_AND_VSS:
            result.pause_seconds = shadows.pause_seconds
        if share_reader is not None:
            # The reader reads each link's path through its shadow copy's share; the stack
            # removes the shares before the shadow copies.
            for shadow in shadows.shadows:
                stack.enter_context(
                    resources.shadow_share(
                        vm,
                        shadow,
                        read_access=share_account,
                        reader=share_reader,
                        warnings=result.warnings,
                    )
                )
        links = {s.volume.casefold(): s.link_path for s in shadows.shadows}
        active = {p.casefold() for p in listing.active_disks}
        files: list[_ToRead] = []
        for f in listing.files:
            volume = _volume_of(f.path)
            if volume.casefold() not in links:
                raise ExportError(f"no shadow copy of volume {volume} holding {f.path}")
            # The listing predates the shadow; a running VM's active disk grew since, so its
            # size is whatever the shadow holds.
            read_path = ntpath.join(links[volume.casefold()], f.path[len(volume) :])
            files.append(_ToRead(f, read_path, check_size=f.path.casefold() not in active))
        return files

    def _share_account(self) -> str:
        """Who may read the shares of shadow copies: the account the reader logs in as."""
        account = (
            self.share_account or self.settings.username or getattr(self.reader, "username", None)
        )
        if not account:
            raise ConfigError(
                "Reading a shadow copy through the reader needs a share for it, readable by "
                "the reader's account, and no account is known (Kerberos without a user "
                "name). Give BackupJob share_account='DOMAIN\\user'."
            )
        return str(account)

    # --- reading -----------------------------------------------------------------------------

    def _transfer(
        self,
        vm: VMInfo,
        files: list[_ToRead],
        capture: VMCapture,
        result: VMBackupResult,
    ) -> None:
        if self.reader is None:
            raise ConfigError(
                "No reader is configured, so the VM's files cannot be read from the host. "
                "Give BackupJob a reader (e.g. LocalPathReader with the host's volumes)."
            )
        total = sum(item.file.size for item in files)
        for item in files:
            host_file, read_path = item.file, item.read_path
            relative = host_file.relative_path.replace("\\", "/")
            size = host_file.size
            self._emit(ProgressEvent("file_started", vm.name, relative, 0, total, file_size=size))

            def on_bytes(count: int, name: str = relative, size: int = size) -> None:
                self._emit(ProgressEvent("bytes", vm.name, name, count, total, file_size=size))

            with self._open(read_path) as stream:
                digest = capture.write_file(relative, stream, on_bytes)
            if item.check_size and digest.size != host_file.size:
                raise ExportError(
                    f"{host_file.path} changed while it was read ({host_file.size} bytes listed, "
                    f"{digest.size} read): it was not frozen, so the backup of {vm.name!r} "
                    "would be inconsistent."
                )
            result.files.append(
                CapturedFile(
                    relative_path=relative,
                    host_path=host_file.path,
                    role=host_file.role,
                    size=digest.size,
                    sha256=digest.sha256,
                    blake3=digest.blake3,
                )
            )
            result.bytes += digest.size

    @contextmanager
    def _open(self, host_path: str) -> Iterator[BinaryIO]:
        assert self.reader is not None
        try:
            stream = self.reader.open(host_path)
        except OSError as err:
            raise ExportError(f"cannot read {host_path} from the host: {err}") from err
        try:
            yield stream
        finally:
            stream.close()

    # --- cleanup -----------------------------------------------------------------------------

    def _cleanup(self, host: HyperVHost) -> CleanupReport:
        report = CleanupReport()
        resources = HostResources(host, self.journal, "cleanup", self.policy)
        pending = sorted(self.journal.pending(), key=lambda e: UNDO_ORDER.index(e.kind))
        for entry in pending:
            try:
                report.undone.append(resources.undo(entry))
            except HyperVBackupError as err:
                report.errors.append(
                    f"{entry.kind} of {entry.vm_name!r} (job {entry.job_id}): {err}"
                )
        try:
            self._sweep(host, resources, report)
        except HyperVBackupError as err:
            report.errors.append(f"searching the host for leftovers failed: {err}")
        self.journal.compact()
        for line in report.undone:
            logger.warning("cleanup: %s", line)
        return report

    def _sweep(self, host: HyperVHost, resources: HostResources, report: CleanupReport) -> None:
        """Remove what carries our prefix but no journal knows (e.g. the journal was lost)."""
        params = GetBackupLeftoversParams(
            prefix=self.policy.name_prefix, staging_roots=[self.policy.staging_root]
        )
        leftovers = host.runner.run(SCRIPTS["get-backup-leftovers"], params)
        # Shares first: one may serve a staging folder, or a shadow copy.
        for share in leftovers.staging_shares:
            if not re.fullmatch(STAGING_SHARE_PATTERN, share):
                # <prefix>-* but not a name hyperv-backup makes: someone else's; left alone.
                logger.info("cleanup: share %r is not a staging share; left alone", share)
                continue
            try:
                resources._remove_share(share)
                report.undone.append(f"removed leftover share {share}")
            except HyperVBackupError as err:
                report.errors.append(f"share {share}: {err}")
        for checkpoint in leftovers.checkpoints:
            try:
                resources._remove_checkpoint(checkpoint.vm_name, str(checkpoint.id))
                report.undone.append(
                    f"removed leftover checkpoint {checkpoint.name!r} of {checkpoint.vm_name!r}"
                )
            except HyperVBackupError as err:
                report.errors.append(
                    f"checkpoint {checkpoint.name!r} of {checkpoint.vm_name!r}: {err}"
                )
        for folder in leftovers.staging_folders:
            try:
                host.runner.run(
                    SCRIPTS["remove-staging-folder"], RemoveStagingFolderParams(path=folder)
                )
                report.undone.append(f"removed leftover staging folder {folder}")
            except HyperVBackupError as err:
                report.errors.append(f"staging folder {folder}: {err}")

    def _emit(self, event: ProgressEvent) -> None:
        if self._progress is not None:
            try:
                self._progress(event)
            except Exception:  # a UI callback must never break a backup
                logger.exception("progress callback failed")


def _volume_of(path: str) -> str:
    drive, _ = ntpath.splitdrive(path)
    return drive + "\\"
