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

import importlib
import logging
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from hyperv_backup.backup import (
        BackupJob,
        ProgressEvent,
        new_job_id,
    )
    from hyperv_backup.config import (
        AuthMethod,
        ConnectionSettings,
        Timeouts,
    )
    from hyperv_backup.configfile import ConfigFile, load_config
    from hyperv_backup.consistency import (
        CaptureMethod,
        ConsistencyDecision,
        ConsistencyLevel,
        decide_consistency,
    )
    from hyperv_backup.hooks import (
        HookContext,
    )
    from hyperv_backup.host import (
        HyperVHost,
        check_host_supported,
    )
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
    from hyperv_backup.plain import PlainSink
    from hyperv_backup.plan import (
        BackupPlan,
        PlannedDisk,
        VMPlan,
    )
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
        EXIT_FAILURE,
        EXIT_OK,
        EXIT_PARTIAL,
        EXIT_USAGE,
        CapturedFile,
        CleanupReport,
        Exclusion,
        HookOutcome,
        JobResult,
        JobStatus,
        VMBackupResult,
        VMStatus,
    )
    from hyperv_backup.sink import (
        CaptureSink,
        DirectorySink,
    )
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
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
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
    "ConfigFile",
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
    "PlainSink",
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
    "load_config",
    "new_job_id",
    "render_metrics",
    "send_webhook",
    "write_job_report",
    "write_metrics",
]

# The rest is imported on first use, so that `import hyperv_backup.repository` (or a
# repository command) does not load PowerShell Remoting, SMB and the engine.
_LAZY: dict[str, str] = {
    "ConfigFile": "hyperv_backup.configfile",
    "load_config": "hyperv_backup.configfile",
    "PlainSink": "hyperv_backup.plain",
    "BackupJob": "hyperv_backup.backup",
    "ProgressEvent": "hyperv_backup.backup",
    "new_job_id": "hyperv_backup.backup",
    "AuthMethod": "hyperv_backup.config",
    "ConnectionSettings": "hyperv_backup.config",
    "Timeouts": "hyperv_backup.config",
    "CaptureMethod": "hyperv_backup.consistency",
    "ConsistencyDecision": "hyperv_backup.consistency",
    "ConsistencyLevel": "hyperv_backup.consistency",
    "decide_consistency": "hyperv_backup.consistency",
    "HookContext": "hyperv_backup.hooks",
    "HyperVHost": "hyperv_backup.host",
    "check_host_supported": "hyperv_backup.host",
    "CheckpointInfo": "hyperv_backup.models",
    "CheckpointType": "hyperv_backup.models",
    "DiskChainLink": "hyperv_backup.models",
    "HardDisk": "hyperv_backup.models",
    "HostInfo": "hyperv_backup.models",
    "IntegrationService": "hyperv_backup.models",
    "ReplicationInfo": "hyperv_backup.models",
    "ReplicationMode": "hyperv_backup.models",
    "SnapshotType": "hyperv_backup.models",
    "VMInfo": "hyperv_backup.models",
    "VMState": "hyperv_backup.models",
    "JobReport": "hyperv_backup.monitoring",
    "Monitoring": "hyperv_backup.monitoring",
    "MonitoringError": "hyperv_backup.monitoring",
    "MonitoringOutcome": "hyperv_backup.monitoring",
    "VMSummary": "hyperv_backup.monitoring",
    "Webhook": "hyperv_backup.monitoring",
    "WebhookDelivery": "hyperv_backup.monitoring",
    "WebhookOn": "hyperv_backup.monitoring",
    "failed_job_result": "hyperv_backup.monitoring",
    "render_metrics": "hyperv_backup.monitoring",
    "send_webhook": "hyperv_backup.monitoring",
    "write_job_report": "hyperv_backup.monitoring",
    "write_metrics": "hyperv_backup.monitoring",
    "BackupPlan": "hyperv_backup.plan",
    "PlannedDisk": "hyperv_backup.plan",
    "VMPlan": "hyperv_backup.plan",
    "BackupPolicy": "hyperv_backup.policy",
    "CaptureMode": "hyperv_backup.policy",
    "ConsistencyPolicy": "hyperv_backup.policy",
    "Hooks": "hyperv_backup.policy",
    "PassthroughPolicy": "hyperv_backup.policy",
    "PowerShellHook": "hyperv_backup.policy",
    "RetryPolicy": "hyperv_backup.policy",
    "Selection": "hyperv_backup.policy",
    "CapturedFile": "hyperv_backup.results",
    "CleanupReport": "hyperv_backup.results",
    "Exclusion": "hyperv_backup.results",
    "HookOutcome": "hyperv_backup.results",
    "JobResult": "hyperv_backup.results",
    "JobStatus": "hyperv_backup.results",
    "VMBackupResult": "hyperv_backup.results",
    "VMStatus": "hyperv_backup.results",
    "EXIT_FAILURE": "hyperv_backup.results",
    "EXIT_OK": "hyperv_backup.results",
    "EXIT_PARTIAL": "hyperv_backup.results",
    "EXIT_USAGE": "hyperv_backup.results",
    "CaptureSink": "hyperv_backup.sink",
    "DirectorySink": "hyperv_backup.sink",
    "FileReader": "hyperv_backup.transfer",
    "FileWriter": "hyperv_backup.transfer",
    "LocalPathReader": "hyperv_backup.transfer",
    "PSRPReader": "hyperv_backup.transfer",
    "SMBReader": "hyperv_backup.transfer",
    "SMBWriter": "hyperv_backup.transfer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# A library never configures logging; this keeps "No handler" warnings away.
logging.getLogger(__name__).addHandler(logging.NullHandler())
