"""Parameter and result models of every host script.

Each ``*Params`` model is what Python sends (field aliases are the PowerShell parameter
names); each result model is what the script's ``result`` object must look like. The
simulator validates incoming parameters with the same models, and the PowerShell gates check
each script's ``param()`` block against them.

Byte counts travel as ``float`` (``[double]``): pypsrp sends Python ints as 32-bit integers.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hyperv_backup.models import CheckpointType, VMInfo
from hyperv_backup.ps_scripts.spec import ScriptParams

__all__ = [
    "SHADOW_DEVICE_PATTERN",
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
    "ShadowCopy",
    "StagingFolder",
    "StagingShare",
    "VMConfigExportParams",
    "VMExportParams",
    "VMFiles",
    "VMStateChange",
    "VolumeSpace",
    "is_shadow_device_path",
]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- inventory -----------------------------------------------------------------------------


class GetHostInfoParams(ScriptParams):
    """``get-host-info`` takes no parameters."""


class GetInventoryParams(ScriptParams):
    """Which VMs to describe: exact names or wildcards (``*``, ``?``, ``[a-c]``); empty = all.

    An exact name that matches no VM is an error (``vm_not_found``); a wildcard that matches
    nothing is not. ``exact`` treats every name literally (a VM may be called ``web[1]``).
    """

    names: list[str] = Field(default_factory=list, alias="Name")
    exact: bool = Field(default=False, alias="Exact")


class InventoryResult(_Result):
    """The VMs that matched, in host order, each once."""

    vms: list[VMInfo]


# --- files of a VM -------------------------------------------------------------------------


class FileRole(str, enum.Enum):
    """What a captured file is, for the coverage report and for restore."""

    CONFIGURATION = "configuration"
    """The VM's configuration (.vmcx / .xml) and its guest state (.vmgs)."""
    RUNTIME_STATE = "runtime_state"
    """Memory / saved state (.vmrs, .bin, .vsv)."""
    CHECKPOINT_CONFIGURATION = "checkpoint_configuration"
    """A checkpoint's configuration and state files (Snapshots\\...)."""
    DISK = "disk"
    """A virtual disk file: base disk or a differencing (.avhdx) link of its chain."""
    OTHER = "other"


class HostFile(_Result):
    """One file on the host and where it belongs in the Export-VM folder layout."""

    path: str = Field(description="Absolute path on the host, e.g. D:\\Hyper-V\\web01\\x.vhdx.")
    relative_path: str = Field(
        description="Path inside the export layout, with backslashes: "
        "'Virtual Machines\\<id>.vmcx', 'Virtual Hard Disks\\x.vhdx', 'Snapshots\\<id>.vmrs'."
    )
    size: int = Field(ge=0)
    role: FileRole


class GetVMFilesParams(ScriptParams):
    """``get-vm-files``: every file that makes up the VM right now (config, disks, tree)."""

    vm_name: str = Field(alias="VMName")


class VMFiles(_Result):
    """All files of one VM: its configuration and runtime state, each checkpoint's files,
    and every file of every disk chain referenced by the VM or any checkpoint.

    ``active_disks`` are the files the running VM writes to now (the tips of its chains).
    """

    vm_id: UUID
    files: list[HostFile]
    active_disks: list[str] = Field(default_factory=list)


# --- checkpoints ---------------------------------------------------------------------------


class NewBackupCheckpointParams(ScriptParams):
    """``new-backup-checkpoint``: take the backup's own checkpoint of the VM.

    ``Checkpoint-VM`` has no type parameter: it uses the VM's checkpoint setting. The script
    sets the VM to ``checkpoint_type`` for the duration and puts the original setting back in
    its ``finally`` (host-side, so it happens even if the management box goes away).
    ``ProductionOnly`` fails rather than silently falling back to a standard checkpoint, which
    is how the achieved consistency is known for certain.
    """

    vm_name: str = Field(alias="VMName")
    checkpoint_name: str = Field(alias="CheckpointName", min_length=1)
    checkpoint_type: Literal["ProductionOnly", "Standard"] = Field(alias="CheckpointType")


class BackupCheckpoint(_Result):
    """The checkpoint taken for the backup."""

    id: UUID
    name: str
    snapshot_type: str
    created: datetime
    original_checkpoint_type: CheckpointType
    active_disks: list[str] = Field(
        description="Files the VM writes to after the checkpoint (new differencing disks); "
        "everything below them is frozen until the checkpoint is removed."
    )


class RemoveBackupCheckpointParams(ScriptParams):
    """``remove-backup-checkpoint``: remove a checkpoint and wait for its merge."""

    vm_name: str = Field(alias="VMName")
    checkpoint_id: UUID = Field(alias="CheckpointId")
    merge_timeout_seconds: int = Field(alias="MergeTimeoutSeconds", ge=1, le=86400)


class RemovalResult(_Result):
    """Whether something was removed (``False``: it was already gone) and how long it took."""

    removed: bool
    seconds: float = Field(ge=0, default=0.0)


# --- staging and export --------------------------------------------------------------------


class NewStagingFolderParams(ScriptParams):
    """``new-staging-folder``: ``<Root>\\hyperv-backup-<JobId>\\<VMId>``, after checking
    that the volume has ``RequiredBytes`` free (kind ``insufficient_space`` otherwise)."""

    root: str = Field(alias="Root", min_length=3)
    job_id: str = Field(alias="JobId", pattern=r"^[A-Za-z0-9-]{4,64}$")
    vm_id: UUID = Field(alias="VMId")
    required_bytes: float = Field(alias="RequiredBytes", ge=0)


class StagingFolder(_Result):
    """The folder created, and the free space of its volume."""

    path: str
    free_bytes: float


class RemoveStagingFolderParams(ScriptParams):
    """``remove-staging-folder``: delete a staging folder — a job's ``hyperv-backup-<job id>``
    folder or a folder directly inside one — and the job folder too once it is empty.
    Refuses any other path, so a wrong path can never delete user data."""

    path: str = Field(alias="Path", min_length=3)


class VMConfigExportParams(ScriptParams):
    """``export-vm-config``: in-place capture. Export only the configuration (no disks) as of
    the backup checkpoint, with every checkpoint's configuration and runtime state, through
    ``Msvm_VirtualSystemManagementService.ExportSystemDefinition`` (``CopyVmStorage`` off) —
    no cmdlet can export a configuration without copying the disks."""

    vm_name: str = Field(alias="VMName")
    checkpoint_id: UUID = Field(alias="CheckpointId")
    destination: str = Field(alias="Destination", min_length=3)


class VMExportParams(ScriptParams):
    """``export-vm``: export mode. ``Export-VM`` of the whole VM, all checkpoints included
    (the backup checkpoint marks the consistent point), into ``Destination``."""

    vm_name: str = Field(alias="VMName")
    destination: str = Field(alias="Destination", min_length=3)


class ExportResult(_Result):
    """What an export wrote: its folder (``<Destination>\\<VM name>``) and every file in it."""

    path: str
    files: list[HostFile]


# --- pause + host VSS ----------------------------------------------------------------------


class NewPausedShadowParams(ScriptParams):
    """``new-paused-shadow``: Suspend-VM, create a VSS shadow copy of each volume (WMI
    ``Win32_ShadowCopy.Create``), Resume-VM in a ``finally`` — all in one script so the pause
    lasts only as long as the shadows take. Each shadow is exposed as a symbolic link
    ``<LinkRoot>\\<volume letter>`` so it can be read like a folder."""

    vm_name: str = Field(alias="VMName")
    volumes: list[str] = Field(alias="Volume", min_length=1)
    link_root: str = Field(alias="LinkRoot", min_length=3)


class ShadowCopy(_Result):
    """One VSS shadow copy and where it is exposed."""

    id: UUID
    volume: str = Field(description="e.g. 'D:\\'.")
    device_object: str = Field(description="\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopyN")
    link_path: str


class PausedShadow(_Result):
    """The shadows, and how long the VM was paused."""

    shadows: list[ShadowCopy]
    pause_seconds: float = Field(ge=0)
    resumed: bool


class RemoveShadowParams(ScriptParams):
    """``remove-shadow``: delete the link and the shadow copy."""

    shadow_id: UUID = Field(alias="ShadowId")
    link_path: str = Field(alias="LinkPath", min_length=3)


class ResumeVMParams(ScriptParams):
    """``resume-vm``: resume a paused VM (a dead run's cleanup does this first)."""

    vm_name: str = Field(alias="VMName")


class VMStateChange(_Result):
    """The VM's state before and after."""

    state_before: str
    state_after: str


# --- replication ---------------------------------------------------------------------------


class ReplicationParams(ScriptParams):
    """``suspend-vm-replication`` / ``resume-vm-replication``."""

    vm_name: str = Field(alias="VMName")


class ReplicationChange(_Result):
    """Replication state before and after the change."""

    state_before: str
    state_after: str


# --- hooks ---------------------------------------------------------------------------------


class InvokeHookParams(ScriptParams):
    """``invoke-hook``: run a user's before/after PowerShell command on the host.

    The command is the user's own configured text; the VM's name and id reach it only as the
    variables ``$VMName`` and ``$VMId`` (and ``$JobId``, ``$Phase``), never spliced into it.
    """

    command: str = Field(alias="Command", min_length=1)
    phase: Literal["before_job", "after_job", "before_vm", "after_vm"] = Field(alias="Phase")
    job_id: str = Field(alias="JobId")
    vm_name: str | None = Field(default=None, alias="VMName")
    vm_id: str | None = Field(default=None, alias="VMId")


class HookResult(_Result):
    """What the command wrote, as strings."""

    output: list[str] = Field(default_factory=list)


# --- leftovers -----------------------------------------------------------------------------


class GetBackupLeftoversParams(ScriptParams):
    """``get-backup-leftovers``: find what earlier runs left on the host — checkpoints whose
    name starts with ``Prefix`` (any snapshot type, Recovery included), folders named
    ``<Prefix>-*`` under each of ``StagingRoot``, and SMB shares named ``<Prefix>-*``."""

    prefix: str = Field(alias="Prefix", pattern=r"^[A-Za-z0-9-]{3,32}$")
    staging_roots: list[str] = Field(default_factory=list, alias="StagingRoot")


class LeftoverCheckpoint(_Result):
    """A checkpoint left by an earlier run."""

    vm_name: str
    vm_id: UUID
    id: UUID
    name: str
    snapshot_type: str
    created: datetime


class Leftovers(_Result):
    """Everything found."""

    checkpoints: list[LeftoverCheckpoint] = Field(default_factory=list)
    staging_folders: list[str] = Field(default_factory=list)
    staging_shares: list[str] = Field(
        default_factory=list,
        description="Names of shares named <Prefix>-* (staging shares and shadow-copy "
        "shares). Absent from older scripts' answers, hence the default.",
    )


# --- staging shares and reading files over PSRP ---------------------------------------------

STAGING_SHARE_PATTERN = r"^hyperv-backup-[A-Za-z0-9-]{1,66}$"
"""Staging share names: ``hyperv-backup-`` and letters, digits, '-' (80 characters at most,
Windows' limit for a share name). The prefix is what lets cleanup tell them from user shares."""

SHADOW_DEVICE_PATTERN = r"\\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy[0-9]+\\"
"""The one kind of share path that is not a folder: the root of a VSS shadow copy's device,
``\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopyN\\`` (the trailing backslash makes
it the shadow volume's root folder). Matched whole, case-insensitively."""


class NewStagingShareParams(ScriptParams):
    """``new-staging-share``: share ``Path`` as ``Name`` — a staging folder for export mode
    where the administrative shares are not allowed, or a VSS shadow copy's device
    (:data:`SHADOW_DEVICE_PATTERN`), so that the shadow can be read over SMB at all (an SMB
    client cannot follow the host's folder link to it). Temporary (gone when the host
    restarts), read-only, and for ``ReadAccess`` (the backup account, ``DOMAIN\\user``) only.
    A share of that name on the same path is taken as it is (a retry); on another path it is
    an error. Any other path that starts with ``\\`` or ``/`` (UNC, device, drive-relative)
    is refused, here and on the host."""

    name: str = Field(alias="Name", pattern=STAGING_SHARE_PATTERN)
    path: str = Field(alias="Path", min_length=3)
    read_access: str = Field(alias="ReadAccess", min_length=1)

    @field_validator("path")
    @classmethod
    def _folder_or_shadow_device(cls, value: str) -> str:
        # A folder is given with its drive; '\\' or '/' would start a UNC, device or
        # drive-relative path.
        if value.startswith(("\\", "/")) and not is_shadow_device_path(value):
            raise ValueError(
                f"{value!r}: the only share path that is not a folder on the host is a shadow "
                "copy's device, \\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy<N>\\"
            )
        return value


def is_shadow_device_path(path: str) -> bool:
    """True for ``\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy<digits>\\`` exactly."""
    return re.fullmatch(SHADOW_DEVICE_PATTERN, path, re.IGNORECASE | re.ASCII) is not None


class StagingShare(_Result):
    """The share: its name, the folder it serves, its UNC path, and whether this call made it
    (False: it existed already, on the same folder)."""

    name: str
    path: str
    unc_path: str
    created: bool


class RemoveStagingShareParams(ScriptParams):
    """``remove-staging-share``: ``Remove-SmbShare -Force`` (connected readers are cut off).
    A share that does not exist is not an error (``removed=False``); a name without the
    ``hyperv-backup-`` prefix is refused on the host too, so no user share can be removed."""

    name: str = Field(alias="Name", pattern=STAGING_SHARE_PATTERN)


class ReadFileChunkParams(ScriptParams):
    """``read-file-chunk``: up to ``Length`` bytes of ``Path`` from ``Offset`` (the PSRP
    fallback reader; SMB is the fast path). The file is opened for reading and shared for
    reading and writing, so a file Hyper-V holds open can still be read."""

    path: str = Field(alias="Path", min_length=3)
    offset: float = Field(alias="Offset", ge=0, le=2**53)
    length: int = Field(alias="Length", ge=1, le=16 * 2**20)


class FileChunk(_Result):
    """``data``: the bytes read, base64; ``eof``: nothing follows them (as of this read);
    ``size``: the file's length now. Kind ``file_not_found`` when there is no such file."""

    data: str
    eof: bool
    size: float = Field(ge=0)


# --- restoring onto the host -----------------------------------------------------------------

_DRIVE_PATH = re.compile(r"^[A-Za-z]:\\")


def _drive_path(value: str) -> str:
    # A folder on one of the host's drives: a UNC or device path would reach past the host.
    if not _DRIVE_PATH.match(value):
        raise ValueError(f"{value!r} is not a folder on a drive of the host (e.g. D:\\Restore)")
    return value


class GetFreeSpaceParams(ScriptParams):
    """``get-free-space``: the free space of the volume (or share) that holds each ``Path``,
    measured at the nearest folder that exists (a restore's destination may not exist yet).
    A path on no volume the host can reach fails with kind ``unexpected``."""

    paths: list[str] = Field(alias="Path", min_length=1)


class VolumeSpace(_Result):
    """One path of ``get-free-space``, the volume that holds it and that volume's free bytes."""

    path: str = Field(description="The path as given.")
    volume: str = Field(
        description="The volume's identity: the same for two paths on one volume "
        "(\\\\?\\Volume{GUID}\\, or \\\\server\\share for a share)."
    )
    free_bytes: float = Field(ge=0)


class FreeSpace(_Result):
    """One entry per path, in the order given."""

    volumes: list[VolumeSpace]


class ImportVMParams(ScriptParams):
    """``import-vm``: import a VM restored into the Export-VM layout at ``Path`` as a new VM.

    ``Compare-VM`` first (every incompatibility it reports fails the import, kind
    ``import``, before anything is imported); then ``Import-VM -Copy -GenerateNewId`` with
    every file of the new VM under ``VirtualMachinePath`` (``Virtual Machines``,
    ``Snapshots``, ``Virtual Hard Disks``), which must be empty or absent; then
    ``Rename-VM`` to ``NewName``. A VM of the resulting name on the host is refused (kind
    ``import``): a copy never takes the name, nor the id, of a VM that exists."""

    path: str = Field(alias="Path", min_length=3)
    virtual_machine_path: str = Field(alias="VirtualMachinePath", min_length=3)
    new_name: str | None = Field(default=None, alias="NewName", min_length=1, max_length=100)

    @field_validator("path", "virtual_machine_path")
    @classmethod
    def _on_a_drive(cls, value: str) -> str:
        return _drive_path(value)


class ImportedVM(_Result):
    """The VM ``import-vm`` made: its new id and name, and where its files are."""

    id: UUID
    name: str
    original_id: UUID = Field(description="The id in the restored configuration.")
    original_name: str = Field(description="The name in the restored configuration.")
    path: str = Field(description="The new VM's folder (VirtualMachinePath).")
    disks: list[str] = Field(
        default_factory=list, description="The virtual-disk files its drives use now."
    )
    state: str
    warnings: list[str] = Field(
        default_factory=list,
        description="What was changed on the copy for safety, e.g. pass-through drives "
        "detached (the copy must never share a physical disk with the original).",
    )
