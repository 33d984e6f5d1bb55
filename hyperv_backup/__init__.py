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

from hyperv_backup.config import AuthMethod, ConnectionSettings, Timeouts
from hyperv_backup.errors import (
    AccessDeniedError,
    AuthenticationError,
    CheckpointError,
    ConfigError,
    ConflictingOperationError,
    ConnectionError,
    ConnectionTimeoutError,
    ExportError,
    HyperVBackupError,
    IntegrityError,
    LockedError,
    ProtocolError,
    RemoteScriptError,
    RepositoryError,
    ScriptTimeoutError,
    TargetError,
    TLSError,
    UnsupportedHostError,
    VMNotFoundError,
)
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

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AuthMethod",
    "AuthenticationError",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointType",
    "ConfigError",
    "ConflictingOperationError",
    "ConnectionError",
    "ConnectionSettings",
    "ConnectionTimeoutError",
    "DiskChainLink",
    "ExportError",
    "HardDisk",
    "HostInfo",
    "HyperVBackupError",
    "HyperVHost",
    "IntegrationService",
    "IntegrityError",
    "LockedError",
    "ProtocolError",
    "RemoteScriptError",
    "ReplicationInfo",
    "ReplicationMode",
    "RepositoryError",
    "ScriptTimeoutError",
    "SnapshotType",
    "TLSError",
    "TargetError",
    "Timeouts",
    "UnsupportedHostError",
    "VMInfo",
    "VMNotFoundError",
    "VMState",
    "__version__",
    "check_host_supported",
]

# A library never configures logging; this keeps "No handler" warnings away.
logging.getLogger(__name__).addHandler(logging.NullHandler())
