"""hyperv-backup: agentless, verifiable backups of Microsoft Hyper-V virtual machines.

The public API is what this module exports (see ``__all__``); everything else is private and
may change. Quick start::

    from hyperv_backup import ConnectionSettings, HyperVHost

    settings = ConnectionSettings(host="hv01.corp.example", username="CORP\\\\backup",
                                  password="...", auth="negotiate")
    with HyperVHost(settings) as host:
        for vm in host.inventory():
            print(vm.name, vm.state.value)

To try it without a Windows host, see :mod:`hyperv_backup.simulator`.
"""

from __future__ import annotations

import logging

from hyperv_backup.backup import BackupJob, ProgressEvent, new_job_id
from hyperv_backup.config import AuthMethod, ConnectionSettings, Timeouts
from hyperv_backup.consistency import (
    CaptureMethod,
    ConsistencyDecision,
    ConsistencyLevel,
    decide_consistency,
)
from hyperv_backup.errors import (
    AccessDeniedError,
    AuthenticationError,
    CheckpointError,
    ConfigError,
    ConflictingOperationError,
    ConnectionError,
    ConnectionTimeoutError,
    ConsistencyError,
    ExportError,
    HookError,
    HostFileExistsError,
    HostFileNotFoundError,
    HyperVBackupError,
    InsufficientSpaceError,
    IntegrityError,
    LockedError,
    PassthroughDiskError,
    ProductionCheckpointError,
    ProtocolError,
    ReadAccessDeniedError,
    RemoteScriptError,
    ReplicationError,
    RepositoryError,
    ScriptTimeoutError,
    ShadowCopyError,
    ShareNotFoundError,
    TargetError,
    TLSError,
    TransferError,
    UnsupportedHostError,
    VMImportError,
    VMNotFoundError,
    WriteAccessDeniedError,
)
from hyperv_backup.hooks import HookContext
from hyperv_backup.host import HyperVHost, check_host_supported
from hyperv_backup.models import (
    CheckpointInfo,
    CheckpointType,
    DiskChainLink,
    HardDisk,
    HostInfo,
    IntegrationService,
    ReplicationInfo,
    ReplicationMode,
    SnapshotType,
    VMInfo,
    VMState,
)
from hyperv_backup.monitoring import (
    JobReport,
    Monitoring,
    MonitoringError,
    MonitoringOutcome,
    VMSummary,
    Webhook,
    WebhookDelivery,
    WebhookOn,
    failed_job_result,
    render_metrics,
    send_webhook,
    write_job_report,
    write_metrics,
)
from hyperv_backup.plan import BackupPlan, PlannedDisk, VMPlan
from hyperv_backup.policy import (
    BackupPolicy,
    CaptureMode,
    ConsistencyPolicy,
    Hooks,
    PassthroughPolicy,
    PowerShellHook,
    RetryPolicy,
    Selection,
)
from hyperv_backup.results import (
    CapturedFile,
    CleanupReport,
    Exclusion,
    HookOutcome,
    JobResult,
    JobStatus,
    VMBackupResult,
    VMStatus,
)
from hyperv_backup.sink import CaptureSink, DirectorySink
from hyperv_backup.transfer import (
    FileReader,
    FileWriter,
    LocalPathReader,
    PSRPReader,
    SMBReader,
    SMBWriter,
)

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AuthMethod",
    "AuthenticationError",
    "BackupJob",
    "BackupPlan",
    "BackupPolicy",
    "CaptureMethod",
    "CaptureMode",
    "CaptureSink",
    "CapturedFile",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointType",
    "CleanupReport",
    "ConfigError",
    "ConflictingOperationError",
    "ConnectionError",
    "ConnectionSettings",
    "ConnectionTimeoutError",
    "ConsistencyDecision",
    "ConsistencyError",
    "ConsistencyLevel",
    "ConsistencyPolicy",
    "DirectorySink",
    "DiskChainLink",
    "Exclusion",
    "ExportError",
    "FileReader",
    "FileWriter",
    "HardDisk",
    "HookContext",
    "HookError",
    "HookOutcome",
    "Hooks",
    "HostFileExistsError",
    "HostFileNotFoundError",
    "HostInfo",
    "HyperVBackupError",
    "HyperVHost",
    "InsufficientSpaceError",
    "IntegrationService",
    "IntegrityError",
    "JobReport",
    "JobResult",
    "JobStatus",
    "LocalPathReader",
    "LockedError",
    "Monitoring",
    "MonitoringError",
    "MonitoringOutcome",
    "PSRPReader",
    "PassthroughDiskError",
    "PassthroughPolicy",
    "PlannedDisk",
    "PowerShellHook",
    "ProductionCheckpointError",
    "ProgressEvent",
    "ProtocolError",
    "ReadAccessDeniedError",
    "RemoteScriptError",
    "ReplicationError",
    "ReplicationInfo",
    "ReplicationMode",
    "RepositoryError",
    "RetryPolicy",
    "SMBReader",
    "SMBWriter",
    "ScriptTimeoutError",
    "Selection",
    "ShadowCopyError",
    "ShareNotFoundError",
    "SnapshotType",
    "TLSError",
    "TargetError",
    "Timeouts",
    "TransferError",
    "UnsupportedHostError",
    "VMBackupResult",
    "VMImportError",
    "VMInfo",
    "VMNotFoundError",
    "VMPlan",
    "VMState",
    "VMStatus",
    "VMSummary",
    "Webhook",
    "WebhookDelivery",
    "WebhookOn",
    "WriteAccessDeniedError",
    "__version__",
    "check_host_supported",
    "decide_consistency",
    "failed_job_result",
    "new_job_id",
    "render_metrics",
    "send_webhook",
    "write_job_report",
    "write_metrics",
]

# A library never configures logging; this keeps "No handler" warnings away.
logging.getLogger(__name__).addHandler(logging.NullHandler())
