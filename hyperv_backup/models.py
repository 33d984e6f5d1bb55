"""Domain models: what a Hyper-V host and its virtual machines look like to hyperv-backup.

These are the validated shapes of what the host's scripts report (``get-host-info`` and
``get-inventory``); the rest of the library works with these objects, never with raw dicts.
Field names match the JSON keys the scripts write.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CheckpointInfo",
    "CheckpointType",
    "DiskChainLink",
    "HardDisk",
    "HostInfo",
    "IntegrationService",
    "ReplicationInfo",
    "ReplicationMode",
    "SnapshotType",
    "VMInfo",
    "VMState",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VMState(str, enum.Enum):
    """``Microsoft.HyperV.PowerShell.VMState`` names."""

    OTHER = "Other"
    RUNNING = "Running"
    OFF = "Off"
    STOPPING = "Stopping"
    SAVED = "Saved"
    PAUSED = "Paused"
    STARTING = "Starting"
    RESET = "Reset"
    SAVING = "Saving"
    PAUSING = "Pausing"
    RESUMING = "Resuming"
    FAST_SAVED = "FastSaved"
    FAST_SAVING = "FastSaving"
    FORCE_SHUTDOWN = "ForceShutdown"
    FORCE_REBOOT = "ForceReboot"
    HIBERNATED = "Hibernated"
    COMPONENT_SERVICING = "ComponentServicing"
    RUNNING_CRITICAL = "RunningCritical"
    OFF_CRITICAL = "OffCritical"
    STOPPING_CRITICAL = "StoppingCritical"
    SAVED_CRITICAL = "SavedCritical"
    PAUSED_CRITICAL = "PausedCritical"
    STARTING_CRITICAL = "StartingCritical"
    RESET_CRITICAL = "ResetCritical"
    SAVING_CRITICAL = "SavingCritical"
    PAUSING_CRITICAL = "PausingCritical"
    RESUMING_CRITICAL = "ResumingCritical"
    FAST_SAVED_CRITICAL = "FastSavedCritical"
    FAST_SAVING_CRITICAL = "FastSavingCritical"


class CheckpointType(str, enum.Enum):
    """The VM's checkpoint setting (``Set-VM -CheckpointType``)."""

    DISABLED = "Disabled"
    PRODUCTION = "Production"
    PRODUCTION_ONLY = "ProductionOnly"
    STANDARD = "Standard"


class SnapshotType(str, enum.Enum):
    """``Get-VMSnapshot -SnapshotType`` values; backup tools' checkpoints are ``Recovery``."""

    STANDARD = "Standard"
    RECOVERY = "Recovery"
    PLANNED = "Planned"
    MISSING = "Missing"
    REPLICA = "Replica"
    APP_CONSISTENT_REPLICA = "AppConsistentReplica"
    SYNCED_REPLICA = "SyncedReplica"


class ReplicationMode(str, enum.Enum):
    """The VM's role in Hyper-V Replica."""

    NONE = "None"
    PRIMARY = "Primary"
    REPLICA = "Replica"
    EXTENDED_REPLICA = "ExtendedReplica"
    TEST_REPLICA = "TestReplica"


# Integration service that lets the host ask the guest for a VSS snapshot. Named "VSS" on
# Server 2016+, "Backup (volume snapshot)" on 2012/2012 R2; names are localized, so the
# VMBus device class id of the guest VSS service is accepted too.
_BACKUP_SERVICE_NAMES = frozenset({"vss", "backup (volume snapshot)"})
_BACKUP_SERVICE_ID = "35fa2e29-ea23-4236-96ae-3a6ebacba440"


class IntegrationService(_Model):
    """One Hyper-V integration service of a VM (``Get-VMIntegrationService``)."""

    name: str
    id: str = Field(description="As reported, e.g. 'Microsoft:<vm id>\\<service id>'.")
    enabled: bool
    primary_status: str | None = Field(
        default=None, description="PrimaryStatusDescription: 'OK', 'No Contact', ..."
    )
    secondary_status: str | None = None

    @property
    def is_backup_service(self) -> bool:
        """True for the guest VSS ("Backup (volume snapshot)") service."""
        return (
            self.name.strip().lower() in _BACKUP_SERVICE_NAMES
            or _BACKUP_SERVICE_ID in self.id.lower()
        )

    @property
    def is_healthy(self) -> bool:
        """Enabled and reporting OK: the guest answers."""
        return self.enabled and (self.primary_status or "").strip().upper() == "OK"


class DiskChainLink(_Model):
    """One file of a virtual disk's chain, from the attached file up to its base."""

    path: str
    vhd_type: str = Field(description="Fixed, Dynamic or Differencing.")
    vhd_format: str = Field(description="VHD, VHDX or VHDSet.")
    file_size: int = Field(ge=0, description="Bytes the file occupies on the host.")
    size: int = Field(ge=0, description="Virtual size of the disk in bytes.")


class HardDisk(_Model):
    """A hard disk drive attached to a VM (``Get-VMHardDiskDrive`` + ``Get-VHD``)."""

    controller_type: str = Field(description="IDE or SCSI.")
    controller_number: int = Field(ge=0)
    controller_location: int = Field(ge=0)
    path: str | None = Field(description="The attached file; for pass-through, a description.")
    is_passthrough: bool = False
    disk_number: int | None = Field(default=None, description="Host disk number (pass-through).")
    chain: list[DiskChainLink] = Field(
        default_factory=list,
        description="The attached file first, then each parent down to the base disk.",
    )

    @property
    def location(self) -> str:
        """``SCSI 0:1``-style address of the drive."""
        return f"{self.controller_type} {self.controller_number}:{self.controller_location}"


class CheckpointInfo(_Model):
    """One node of the checkpoint (snapshot) tree."""

    id: UUID
    name: str
    parent_id: UUID | None = None
    snapshot_type: SnapshotType
    created: datetime


class ReplicationInfo(_Model):
    """The VM's Hyper-V Replica relationship (``Get-VMReplication``)."""

    mode: ReplicationMode = ReplicationMode.NONE
    state: str | None = Field(
        default=None, description="e.g. Replicating, Suspended, WaitingForInitialReplication."
    )
    health: str | None = Field(default=None, description="Normal, Warning or Critical.")
    primary_server: str | None = None
    replica_server: str | None = None
    relationship_type: str | None = Field(default=None, description="Simple or Extended.")

    @property
    def is_replica(self) -> bool:
        """True where this host holds a (possibly extended) replica copy of the VM."""
        return self.mode in (
            ReplicationMode.REPLICA,
            ReplicationMode.EXTENDED_REPLICA,
            ReplicationMode.TEST_REPLICA,
        )


class VMInfo(_Model):
    """Everything the backup needs to know about one VM."""

    id: UUID
    name: str
    state: VMState
    generation: int = Field(ge=1, le=2)
    configuration_version: str
    path: str = Field(description="Folder holding the VM's configuration.")
    checkpoint_type: CheckpointType
    checkpoint_file_location: str | None = None
    memory_startup: int = Field(ge=0, description="Startup memory in bytes.")
    memory_assigned: int = Field(ge=0, description="Memory currently assigned, bytes.")
    dynamic_memory: bool = False
    has_saved_state: bool = Field(description="Saved-state (memory) files exist for the VM.")
    integration_services: list[IntegrationService] = Field(default_factory=list)
    hard_disks: list[HardDisk] = Field(default_factory=list)
    checkpoints: list[CheckpointInfo] = Field(default_factory=list)
    parent_checkpoint_id: UUID | None = Field(
        default=None, description="The checkpoint the running state descends from."
    )
    replication: ReplicationInfo = Field(default_factory=ReplicationInfo)

    @property
    def backup_service(self) -> IntegrationService | None:
        """The guest VSS integration service, if the VM has one."""
        return next((s for s in self.integration_services if s.is_backup_service), None)

    @property
    def passthrough_disks(self) -> list[HardDisk]:
        """Physical host disks attached directly; Hyper-V cannot back these up."""
        return [d for d in self.hard_disks if d.is_passthrough]

    @property
    def virtual_disks(self) -> list[HardDisk]:
        """Disks backed by VHD/VHDX files."""
        return [d for d in self.hard_disks if not d.is_passthrough]


_SERVER_PRODUCT_TYPES = frozenset({2, 3})  # 2 = domain controller, 3 = server


class HostInfo(_Model):
    """The Hyper-V host's identity and capabilities (``get-host-info``)."""

    computer_name: str
    domain: str | None = None
    os_caption: str = Field(description="e.g. 'Microsoft Windows Server 2022 Datacenter'.")
    os_version: str = Field(description="e.g. '10.0.20348'.")
    os_build: int = Field(ge=0)
    product_type: int = Field(ge=1, le=3, description="1 workstation, 2 DC, 3 server.")
    hyperv_module: bool = Field(description="The Hyper-V PowerShell module is available.")
    hyperv_module_version: str | None = None
    cluster_name: str | None = Field(default=None, description="Failover cluster, if a node.")
    powershell_version: str

    @property
    def is_server(self) -> bool:
        """True for Windows Server (including domain controllers)."""
        return self.product_type in _SERVER_PRODUCT_TYPES

    @property
    def is_cluster_node(self) -> bool:
        """True when the host is a member of a failover cluster."""
        return self.cluster_name is not None

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        """``(major, minor, build)``, e.g. ``(6, 3, 9600)`` for Server 2012 R2."""
        parts = [int(p) for p in re.findall(r"\d+", self.os_version)[:2]]
        while len(parts) < 2:
            parts.append(0)
        return parts[0], parts[1], self.os_build

    @property
    def server_release(self) -> str | None:
        """'2012', '2012 R2', '2016', '2019', '2022', '2025', or None if unknown/desktop."""
        if not self.is_server:
            return None
        major, minor, build = self.version_tuple
        if (major, minor) == (6, 2):
            return "2012"
        if (major, minor) == (6, 3):
            return "2012 R2"
        if major == 10:
            for min_build, name in ((26100, "2025"), (20348, "2022"), (17763, "2019")):
                if build >= min_build:
                    return name
            return "2016"
        return None
