"""The PowerShell scripts hyperv-backup runs on the host, and their typed contracts.

Each ``<name>.ps1`` in this package starts with ``# hyperv-backup-script: <name>`` and a
``param()`` block, targets Windows PowerShell 5.1, and writes exactly one JSON envelope::

    {"ok": true,  "result": {...}}
    {"ok": false, "error": {"kind": "...", "message": "...", "fqid": "...", "target": "..."}}

The registry below pairs every script with a pydantic *param model* (validated before the
script is sent; each field's alias is the PowerShell parameter name) and a *result model*
(validated after it answers). Values travel as PSRP parameters, never inside the script text.

PowerShell parameter types follow the Python field types: ``str`` → ``[string]``,
``list[str]`` → ``[string[]]``, ``int`` → ``[int]``, ``float`` → ``[double]``,
``bool`` → ``[switch]``, ``UUID`` → ``[guid]``. The tests check each ``param()`` block
against its model with exactly this table.

Error kinds a script may report (mapped to exceptions in ``remote/classify.py``):
``vm_not_found``, ``unsupported_host``, ``checkpoint``, ``production_checkpoint_failed``,
``export``, ``insufficient_space``, ``shadow``, ``replication``, ``hook``, ``access_denied``,
``import``, and ``unexpected`` (then Hyper-V's own message and FullyQualifiedErrorId are
classified).
"""

from __future__ import annotations

from typing import Any

from hyperv_backup.models import HostInfo
from hyperv_backup.ps_scripts.contracts import (
    BackupCheckpoint,
    ExportResult,
    FileChunk,
    FileRole,
    FreeSpace,
    GetBackupLeftoversParams,
    GetFreeSpaceParams,
    GetHostInfoParams,
    GetInventoryParams,
    GetVMFilesParams,
    HookResult,
    HostFile,
    ImportedVM,
    ImportVMParams,
    InventoryResult,
    InvokeHookParams,
    LeftoverCheckpoint,
    Leftovers,
    NewBackupCheckpointParams,
    NewPausedShadowParams,
    NewStagingFolderParams,
    NewStagingShareParams,
    PausedShadow,
    ReadFileChunkParams,
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
    VMConfigExportParams,
    VMExportParams,
    VMFiles,
    VMStateChange,
    VolumeSpace,
    is_shadow_device_path,
)
from hyperv_backup.ps_scripts.spec import MARKER_PREFIX, ScriptParams, ScriptSpec, marker_of

__all__ = [
    "MARKER_PREFIX",
    "SCRIPTS",
    "BackupCheckpoint",
    "ExportResult",
    "FileChunk",
    "FileRole",
    "FreeSpace",
    "GetBackupLeftoversParams",
    "GetFreeSpaceParams",
    "GetHostInfoParams",
    "GetInventoryParams",
    "GetVMFilesParams",
    "HookResult",
    "HostFile",
    "ImportVMParams",
    "ImportedVM",
    "InventoryResult",
    "InvokeHookParams",
    "LeftoverCheckpoint",
    "Leftovers",
    "NewBackupCheckpointParams",
    "NewPausedShadowParams",
    "NewStagingFolderParams",
    "NewStagingShareParams",
    "PausedShadow",
    "ReadFileChunkParams",
    "RemovalResult",
    "RemoveBackupCheckpointParams",
    "RemoveShadowParams",
    "RemoveStagingFolderParams",
    "RemoveStagingShareParams",
    "ReplicationChange",
    "ReplicationParams",
    "ResumeVMParams",
    "ScriptParams",
    "ScriptSpec",
    "ShadowCopy",
    "StagingFolder",
    "StagingShare",
    "VMConfigExportParams",
    "VMExportParams",
    "VMFiles",
    "VMStateChange",
    "VolumeSpace",
    "is_shadow_device_path",
    "marker_of",
    "script_spec",
]

_HOUR = 3600.0

SCRIPTS: dict[str, ScriptSpec[Any, Any]] = {
    spec.name: spec
    for spec in (
        ScriptSpec("get-host-info", GetHostInfoParams, HostInfo),
        ScriptSpec("get-inventory", GetInventoryParams, InventoryResult),
        ScriptSpec("get-vm-files", GetVMFilesParams, VMFiles),
        ScriptSpec("new-backup-checkpoint", NewBackupCheckpointParams, BackupCheckpoint, _HOUR),
        # The merge deadline is a parameter; the script deadline only backs it up.
        ScriptSpec(
            "remove-backup-checkpoint", RemoveBackupCheckpointParams, RemovalResult, 24 * _HOUR
        ),
        ScriptSpec("new-staging-folder", NewStagingFolderParams, StagingFolder),
        ScriptSpec("remove-staging-folder", RemoveStagingFolderParams, RemovalResult, _HOUR),
        ScriptSpec("export-vm-config", VMConfigExportParams, ExportResult, _HOUR),
        ScriptSpec("export-vm", VMExportParams, ExportResult, 24 * _HOUR),
        ScriptSpec("new-paused-shadow", NewPausedShadowParams, PausedShadow),
        ScriptSpec("remove-shadow", RemoveShadowParams, RemovalResult),
        ScriptSpec("resume-vm", ResumeVMParams, VMStateChange),
        ScriptSpec("suspend-vm-replication", ReplicationParams, ReplicationChange),
        ScriptSpec("resume-vm-replication", ReplicationParams, ReplicationChange),
        ScriptSpec("invoke-hook", InvokeHookParams, HookResult, _HOUR),
        ScriptSpec("get-backup-leftovers", GetBackupLeftoversParams, Leftovers),
        ScriptSpec("new-staging-share", NewStagingShareParams, StagingShare),
        ScriptSpec("remove-staging-share", RemoveStagingShareParams, RemovalResult),
        ScriptSpec("read-file-chunk", ReadFileChunkParams, FileChunk),
        ScriptSpec("get-free-space", GetFreeSpaceParams, FreeSpace),
        # Import-VM -Copy copies every disk on the host: hours for a large VM.
        ScriptSpec("import-vm", ImportVMParams, ImportedVM, 24 * _HOUR),
    )
}
"""Every script hyperv-backup can run, by name."""


def script_spec(name: str) -> ScriptSpec[Any, Any]:
    """The registered script called ``name``; ``KeyError`` names the known ones."""
    try:
        return SCRIPTS[name]
    except KeyError:
        raise KeyError(f"unknown script {name!r}; known: {', '.join(sorted(SCRIPTS))}") from None
