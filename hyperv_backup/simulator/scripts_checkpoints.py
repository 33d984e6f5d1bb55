"""The files of a VM, its backup checkpoint (taken and merged away), and leftover finding.

Hyper-V's rules as emulated: the checkpoint type comes from the VM's setting, which the
script changes for the duration and puts back; ``ProductionOnly`` needs a guest that can do
VSS (running, VSS integration service enabled and OK) or a VM that is off or saved, and never
works on a replica; ``Disabled`` refuses checkpoints. Removing a checkpoint merges its
differencing files into their parents, which takes the VM's ``merge_seconds``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from hyperv_backup.models import CheckpointType, VMState
from hyperv_backup.ps_scripts import (
    BackupCheckpoint,
    GetBackupLeftoversParams,
    GetVMFilesParams,
    HostFile,
    LeftoverCheckpoint,
    Leftovers,
    NewBackupCheckpointParams,
    RemovalResult,
    RemoveBackupCheckpointParams,
    VMFiles,
)
from hyperv_backup.simulator.hostfs import win_join
from hyperv_backup.simulator.hoststate import Call, HostState, ScriptFailedError
from hyperv_backup.simulator.vmstate import MergePlan, VMRuntime

__all__ = [
    "get_backup_leftovers",
    "get_vm_files",
    "new_backup_checkpoint",
    "remove_backup_checkpoint",
]

_CHECKPOINT_FQID = "OperationFailed,Microsoft.HyperV.PowerShell.Commands.CheckpointVM"


def get_vm_files(call: Call, params: GetVMFilesParams) -> VMFiles:
    """Every file of the VM now, with real sizes and its place in the Export-VM layout."""
    host = call.host
    with host.lock:
        vm = host.vm(params.vm_name)
        return VMFiles(
            vm_id=vm.id,
            files=[
                HostFile(
                    path=f.path,
                    relative_path=f.relative_path,
                    size=host.fs.size(f.path),
                    role=f.role,
                )
                for f in vm.all_files()
            ],
            active_disks=vm.active_disks(),
        )


def new_backup_checkpoint(call: Call, params: NewBackupCheckpointParams) -> BackupCheckpoint:
    """Checkpoint-VM with the VM's setting switched to the requested type meanwhile."""
    host = call.host
    with host.lock:
        vm = host.vm(params.vm_name)
        original = vm.checkpoint_type
        if original == CheckpointType.DISABLED:
            raise ScriptFailedError(
                "checkpoint",
                f"Checkpoint operation failed for '{vm.name}'. Checkpoints are disabled for "
                f"'{vm.name}'. (Virtual machine ID {str(vm.id).upper()})",
                vm.name,
                _CHECKPOINT_FQID,
            )
        requested = CheckpointType(params.checkpoint_type)
        changed = requested != original
        if changed:
            vm.checkpoint_type = requested
            host.emit(call.script, vm.name, "checkpoint_type_changed", to=requested.value)
        try:  # Checkpoint-VM, between Set-VM and the Set-VM that puts the setting back
            if vm.operation is not None:
                raise ScriptFailedError.conflicting_operation(vm.name, call.cmdlet)
            host.refuse_while_replicating(call.script, vm, call.cmdlet)
            if requested == CheckpointType.PRODUCTION_ONLY:
                _ensure_production_possible(vm)
            checkpoint = vm.take_checkpoint(
                host.fs, params.checkpoint_name, datetime.now(timezone.utc)
            )
            host.emit(
                call.script,
                vm.name,
                "checkpoint_created",
                id=str(checkpoint.id),
                name=checkpoint.name,
                type=requested.value,
                active_disks=vm.active_disks(),
            )
        finally:
            if changed:
                vm.checkpoint_type = original
                host.emit(call.script, vm.name, "checkpoint_type_restored", to=original.value)
        return BackupCheckpoint(
            id=checkpoint.id,
            name=checkpoint.name,
            snapshot_type=checkpoint.snapshot_type.value,
            created=checkpoint.created,
            original_checkpoint_type=original,
            active_disks=vm.active_disks(),
        )


def _ensure_production_possible(vm: VMRuntime) -> None:
    declared = vm.spec.integration_service_infos()
    vss = next((s for s in declared if s.is_backup_service), None)
    reason = None
    if vm.spec.replication.mode.value in ("Replica", "ExtendedReplica", "TestReplica"):
        reason = "it is a Replica virtual machine"
    elif vm.state in (VMState.OFF, VMState.SAVED, VMState.FAST_SAVED):
        return
    elif vm.state != VMState.RUNNING:
        reason = f"it is {vm.state.value.lower()}"
    elif vss is None or not vss.enabled:
        reason = "the Backup (volume shadow copy) integration service is not enabled"
    elif not vss.is_healthy:
        reason = (
            "the Backup (volume shadow copy) integration service is not responding "
            f"({vss.primary_status or 'no status'})"
        )
    if reason is not None:
        raise ScriptFailedError(
            "production_checkpoint_failed",
            f"Checkpoint operation failed for '{vm.name}'. Production checkpoints cannot be "
            f"created for '{vm.name}' because {reason}. "
            f"(Virtual machine ID {str(vm.id).upper()})",
            vm.name,
            _CHECKPOINT_FQID,
        )


def remove_backup_checkpoint(call: Call, params: RemoveBackupCheckpointParams) -> RemovalResult:
    """Remove-VMSnapshot and wait (up to the timeout) for the merge to finish."""
    host = call.host
    started = time.monotonic()
    with host.lock:
        vm = host.vm(params.vm_name)
        checkpoint = vm.checkpoint(params.checkpoint_id)
        if checkpoint is None:
            return RemovalResult(removed=False)
        host.start_operation(vm, "merging", call.cmdlet)
        plan = vm.remove_checkpoint(host.fs, checkpoint)
        host.emit(call.script, vm.name, "checkpoint_removed", id=str(checkpoint.id))
        host.emit(call.script, vm.name, "merge_started", id=str(checkpoint.id))
    merge_seconds = vm.spec.merge_seconds
    timeout = float(params.merge_timeout_seconds)
    if merge_seconds <= timeout:
        try:
            host.sleep(merge_seconds)
        finally:
            _finish_merge(host, call.script, vm, plan)
        return RemovalResult(removed=True, seconds=round(time.monotonic() - started, 3))
    # Hyper-V goes on merging after the script stops waiting; the VM stays "Merging".
    try:
        host.sleep(timeout)
    except BaseException:
        _finish_merge(host, call.script, vm, plan)
        raise

    def merge_in_background() -> None:
        try:
            host.sleep(merge_seconds - timeout)
        finally:
            _finish_merge(host, call.script, vm, plan)

    host.in_background(f"merge-{vm.name}", merge_in_background)
    raise ScriptFailedError(
        "checkpoint",
        f"The checkpoint '{checkpoint.name}' of virtual machine '{vm.name}' was removed, but "
        f"its disks were still merging after {params.merge_timeout_seconds} seconds. Hyper-V "
        "goes on merging; wait until the VM's status no longer shows 'Merging'.",
        vm.name,
    )


def _finish_merge(host: HostState, script: str, vm: VMRuntime, plan: MergePlan) -> None:
    with host.lock:
        vm.finish_merge(host.fs, plan)
        vm.operation = None
        host.emit(
            script,
            vm.name,
            "merge_finished",
            id=str(plan.checkpoint.id),
            merged=[child.path for child, _ in plan.merges],
            active_disks=vm.active_disks(),
        )


def get_backup_leftovers(call: Call, params: GetBackupLeftoversParams) -> Leftovers:
    """Checkpoints named ``<Prefix>...`` on any VM; ``<root>\\<Prefix>-*`` staging folders;
    shares named ``<Prefix>-*``."""
    host = call.host
    prefix = params.prefix.casefold()
    with host.lock:
        checkpoints = [
            LeftoverCheckpoint(
                vm_name=vm.name,
                vm_id=vm.id,
                id=c.id,
                name=c.name,
                snapshot_type=c.snapshot_type.value,
                created=c.created,
            )
            for vm in host.vms
            for c in vm.checkpoints
            if c.name.casefold().startswith(prefix)
        ]
        folders = []
        for root in params.staging_roots:
            try:
                local = host.fs.local_path(root)
            except ValueError:
                continue  # a root on a drive the host lacks holds nothing
            if local.is_dir():
                folders += [
                    win_join(root, entry.name)
                    for entry in sorted(local.iterdir())
                    if entry.is_dir() and entry.name.casefold().startswith(prefix + "-")
                ]
        shares = [
            record.name
            for record in host.smb_shares.values()
            if record.name.casefold().startswith(prefix + "-")
        ]
        return Leftovers(checkpoints=checkpoints, staging_folders=folders, staging_shares=shares)
