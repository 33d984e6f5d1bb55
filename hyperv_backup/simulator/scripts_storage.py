"""Staging folders and exports (Export-VM layout).

An export writes ``<Destination>\\<VM name>\\`` with ``Virtual Machines\\``, ``Snapshots\\``
and (``export-vm``) ``Virtual Hard Disks\\``, copying real bytes: configuration files are
byte-identical to the host's, disks too. A running VM's disk is copied as it was when the
export began, as Hyper-V's live export does. The export runs to its end even when the client
that started it has gone away.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass

from hyperv_backup.ps_scripts import (
    ExportResult,
    FileRole,
    HostFile,
    NewStagingFolderParams,
    RemovalResult,
    RemoveStagingFolderParams,
    StagingFolder,
    VMConfigExportParams,
    VMExportParams,
)
from hyperv_backup.simulator.hostfs import (
    drive_of,
    sanitize_file_name,
    win_join,
    win_name,
    win_parent,
)
from hyperv_backup.simulator.hoststate import Call, ScriptFailedError
from hyperv_backup.simulator.vmstate import VMFile, VMRuntime

__all__ = [
    "export_vm",
    "export_vm_config",
    "new_staging_folder",
    "remove_staging_folder",
]

_STAGING_PREFIX = "hyperv-backup-"


# --- staging -------------------------------------------------------------------------------


def new_staging_folder(call: Call, params: NewStagingFolderParams) -> StagingFolder:
    """``<Root>\\hyperv-backup-<JobId>\\<VMId>``, if the volume has the room."""
    host = call.host
    path = win_join(params.root, f"{_STAGING_PREFIX}{params.job_id}", str(params.vm_id))
    local = host.local(path)
    free = host.volume_free_bytes(path)
    if free < params.required_bytes:
        raise ScriptFailedError(
            "insufficient_space",
            f"Volume {drive_of(path)}: has {_gib(free)} free, but staging the backup needs "
            f"{_gib(params.required_bytes)} in {params.root}. Free space or choose another "
            "staging root.",
            params.root,
        )
    local.mkdir(parents=True, exist_ok=True)
    with host.lock:
        vm = next((v for v in host.vms if v.id == params.vm_id), None)
        if path not in host.staging_folders:
            host.staging_folders.append(path)
    host.emit(call.script, vm.name if vm else None, "staging_created", path=path)
    return StagingFolder(path=path, free_bytes=float(free))


def remove_staging_folder(call: Call, params: RemoveStagingFolderParams) -> RemovalResult:
    """Delete a staging folder (and its job folder once empty), or a whole job folder (the
    cleanup sweep); nothing else, ever."""
    host = call.host
    path = params.path.rstrip("\\/")
    in_job_folder = _is_job_folder_name(win_name(win_parent(path)))
    is_job_folder = _is_job_folder_name(win_name(path)) and not in_job_folder
    if not (is_job_folder or in_job_folder):
        raise ScriptFailedError(
            "unexpected",
            f"Refusing to delete '{params.path}': a staging folder is <staging root>\\"
            f"{_STAGING_PREFIX}<job id>[\\<VM id>], and neither this folder nor its parent is "
            f"named {_STAGING_PREFIX}*. Nothing was deleted.",
            params.path,
        )
    started = time.monotonic()
    local = host.local(path)
    if not local.exists() and not local.is_symlink():
        return RemovalResult(removed=False)
    if local.is_symlink():
        local.unlink()  # a link goes, never what it points to
    elif local.is_dir():
        shutil.rmtree(local)  # does not follow links inside it either
    else:
        raise ScriptFailedError(
            "unexpected",
            f"Refusing to delete '{params.path}': it is a file, not a staging folder. Nothing "
            "was deleted.",
            params.path,
        )
    parent = local.parent
    if not is_job_folder and parent.is_dir() and not any(parent.iterdir()):
        # Another VM of the job may create its folder at this very moment: then the job
        # folder stays for that VM's removal to take away, as on the real host.
        with contextlib.suppress(OSError):
            parent.rmdir()
    gone = path.casefold()
    with host.lock:
        host.staging_folders = [
            p
            for p in host.staging_folders
            if p.casefold() != gone and not p.casefold().startswith(gone + "\\")
        ]
    host.emit(call.script, None, "staging_removed", path=path)
    return RemovalResult(removed=True, seconds=round(time.monotonic() - started, 3))


def _is_job_folder_name(name: str) -> bool:
    return name.casefold().startswith(_STAGING_PREFIX)


def _gib(value: float) -> str:
    return f"{value / 2**30:,.2f} GiB"


# --- exports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    file: VMFile
    length: int


def export_vm_config(call: Call, params: VMConfigExportParams) -> ExportResult:
    """The configuration and every checkpoint's files, no disks."""
    host = call.host
    with host.lock:
        vm = host.vm(params.vm_name)
        if vm.checkpoint(params.checkpoint_id) is None:
            raise ScriptFailedError(
                "export",
                f"The backup checkpoint {{{params.checkpoint_id}}} of virtual machine "
                f"'{vm.name}' no longer exists.",
                vm.name,
            )
        host.start_operation(vm, "exporting", call.cmdlet)
        files = [f for f in vm.all_files() if f.role != FileRole.DISK]
        items = [_Item(f, host.fs.size(f.path)) for f in files]
    try:
        return _export(call, vm, params.destination, items, "config", remove_on_failure=True)
    finally:
        host.end_operation(vm)


def export_vm(call: Call, params: VMExportParams) -> ExportResult:
    """Export-VM: configuration, every checkpoint, every file of every disk chain."""
    host = call.host
    with host.lock:
        vm = host.vm(params.vm_name)
        host.refuse_while_replicating(call.script, vm, call.cmdlet)
        host.start_operation(vm, "exporting", call.cmdlet)
        items = [_Item(f, host.fs.size(f.path)) for f in vm.all_files()]
    try:
        return _export(call, vm, params.destination, items, "full")
    finally:
        host.end_operation(vm)


def _export(
    call: Call,
    vm: VMRuntime,
    destination: str,
    items: list[_Item],
    kind: str,
    *,
    remove_on_failure: bool = False,
) -> ExportResult:
    host = call.host
    folder = win_join(destination, sanitize_file_name(vm.name))
    local_folder = host.local(folder)
    if local_folder.is_dir() and any(local_folder.iterdir()):
        raise ScriptFailedError(
            "export",
            f"Failed to export virtual machine '{vm.name}': the folder '{folder}' already "
            "exists and is not empty.",
            vm.name,
            "OperationFailed,Microsoft.HyperV.PowerShell.Commands.ExportVM",
        )
    total = sum(item.length for item in items)
    free = host.volume_free_bytes(folder)
    if total > free:
        raise ScriptFailedError(
            "insufficient_space",
            f"Failed to export virtual machine '{vm.name}': there is not enough space on the "
            f"disk ({_gib(total)} needed, {_gib(free)} free). (0x80070070)",
            vm.name,
        )
    delay = call.paced_delay()
    host.emit(call.script, vm.name, "export_started", kind=kind, path=folder, bytes=total)

    def pace(copied: int) -> None:
        # A slow export stays visibly in progress: files appear one chunk at a time.
        host.sleep(delay * copied / total if total else 0.0)

    written = []
    try:
        for index, item in enumerate(items):
            if index == len(items) // 2:
                call.fault_point("midway")
            target = win_join(folder, item.file.relative_path)
            host.fs.copy_to(item.file.path, host.local(target), item.length, pace)
            written.append(
                HostFile(
                    path=target,
                    relative_path=item.file.relative_path,
                    size=item.length,
                    role=item.file.role,
                )
            )
        if total == 0:
            host.sleep(delay)
    except ScriptFailedError:
        # export-vm-config removes a failed export so that a retry does not trip over it;
        # Export-VM leaves its partial folder behind.
        if remove_on_failure:
            shutil.rmtree(local_folder, ignore_errors=True)
        host.emit(call.script, vm.name, "export_failed", kind=kind, path=folder)
        raise
    host.emit(call.script, vm.name, "export_finished", kind=kind, files=len(written))
    return ExportResult(path=folder, files=written)
