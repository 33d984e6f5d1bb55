"""The exception tree of hyperv-backup.

Every exception the library raises on purpose derives from :class:`HyperVBackupError`, so a
caller can catch everything with one ``except``. Below it::

    HyperVBackupError
    ├── ConfigError                       (also a ValueError)    invalid settings or scenario
    ├── ConnectionError                   (also builtins.ConnectionError)
    │   ├── AuthenticationError           the host refused the credentials
    │   ├── TLSError                      the host's certificate could not be verified
    │   └── ConnectionTimeoutError        (also TimeoutError) connect/read timed out
    ├── ProtocolError                     a script answered with something other than
    │                                     exactly one JSON envelope
    ├── ScriptTimeoutError                (also TimeoutError) a script overran its deadline
    ├── RemoteScriptError                 a script ran and reported a structured failure
    │   ├── ConflictingOperationError     Hyper-V is busy with the VM (e.g. replication)
    │   ├── VMNotFoundError               (also LookupError) no VM matches a name
    │   ├── UnsupportedHostError          desktop Windows, no Hyper-V module, too old
    │   ├── CheckpointError               a checkpoint could not be created or removed
    │   │   └── ProductionCheckpointError the guest could not take a VSS snapshot
    │   ├── ExportError                   an export or the staging folder failed
    │   │   └── InsufficientSpaceError    the staging (or restore) volume is too full
    │   ├── VMImportError                 Import-VM of a restored VM was refused or failed
    │   ├── ShadowCopyError               a host VSS shadow copy failed
    │   ├── ReplicationError              suspending/resuming Hyper-V Replica failed
    │   ├── HookError                     a before/after command failed
    │   └── AccessDeniedError             (also PermissionError) the account lacks rights
    ├── ConsistencyError                  the demanded consistency level cannot be reached
    ├── PassthroughDiskError              a VM has pass-through disks and policy is fail_vm
    ├── TargetError                       the storage target failed
    ├── TransferError                     (also OSError) a host file could not be read
    │   │                                 or written
    │   ├── ShareNotFoundError            the SMB share does not exist on the host
    │   ├── HostFileNotFoundError         (also FileNotFoundError) no such file on the host
    │   ├── HostFileExistsError           (also FileExistsError) a restore would overwrite
    │   ├── ReadAccessDeniedError         (also PermissionError) the account may not read it
    │   └── WriteAccessDeniedError        (also PermissionError) the account may not write it
    └── RepositoryError                   the backup repository is unusable
        ├── IntegrityError                stored data does not match its hash
        ├── LockedError                   another process holds the repository lock
        └── WrongPasswordError            the password does not unlock the repository

Messages say what happened, to what, and what to do next. They never contain a secret.
"""

from __future__ import annotations

import builtins

__all__ = [
    "AccessDeniedError",
    "AuthenticationError",
    "CheckpointError",
    "ConfigError",
    "ConflictingOperationError",
    "ConnectionError",
    "ConnectionTimeoutError",
    "ConsistencyError",
    "ExportError",
    "HookError",
    "HostFileExistsError",
    "HostFileNotFoundError",
    "HyperVBackupError",
    "InsufficientSpaceError",
    "IntegrityError",
    "LockedError",
    "PassthroughDiskError",
    "ProductionCheckpointError",
    "ProtocolError",
    "ReadAccessDeniedError",
    "RemoteScriptError",
    "ReplicationError",
    "RepositoryError",
    "ScriptTimeoutError",
    "ShadowCopyError",
    "ShareNotFoundError",
    "TLSError",
    "TargetError",
    "TransferError",
    "UnsupportedHostError",
    "VMImportError",
    "VMNotFoundError",
    "WriteAccessDeniedError",
    "WrongPasswordError",
]


class HyperVBackupError(Exception):
    """Root of every error hyperv-backup raises on purpose."""


class ConfigError(HyperVBackupError, ValueError):
    """Settings, a scenario file or script parameters are invalid."""


class ConnectionError(HyperVBackupError, builtins.ConnectionError):
    """The Hyper-V host could not be reached or the session broke."""


class AuthenticationError(ConnectionError):
    """The host refused the credentials (HTTP 401)."""


class TLSError(ConnectionError):
    """The host's TLS certificate could not be verified."""


class ConnectionTimeoutError(ConnectionError, TimeoutError):
    """Connecting to, or reading from, the host took longer than the configured timeout."""


class ProtocolError(HyperVBackupError):
    """A script's output was not exactly one JSON envelope.

    ``output`` holds (at most 2,000 characters of) what came back, for diagnosis.
    """

    def __init__(self, message: str, *, script: str, output: str = "") -> None:
        self.script = script
        self.output = output[:2000]
        detail = f"\n--- output of {script!r} (first 2,000 characters) ---\n{self.output}"
        super().__init__(message + (detail if self.output else ""))


class ScriptTimeoutError(HyperVBackupError, TimeoutError):
    """A script ran longer than its deadline; it was asked to stop on the host."""

    def __init__(self, message: str, *, script: str, deadline: float) -> None:
        self.script = script
        self.deadline = deadline
        super().__init__(message)


class RemoteScriptError(HyperVBackupError):
    """A script on the host reported a failure in its envelope.

    Attributes mirror the envelope's ``error`` object: ``kind`` (our classification),
    ``fqid`` (PowerShell's FullyQualifiedErrorId), ``target`` (the object it concerned).
    """

    def __init__(
        self,
        message: str,
        *,
        script: str = "",
        kind: str = "",
        fqid: str | None = None,
        target: str | None = None,
    ) -> None:
        self.script = script
        self.kind = kind
        self.fqid = fqid
        self.target = target
        super().__init__(message)


class ConflictingOperationError(RemoteScriptError):
    """Hyper-V refused because the VM is busy with a conflicting operation.

    Usually Hyper-V Replica is sending a replication cycle; retrying later succeeds.
    """


class VMNotFoundError(RemoteScriptError, LookupError):
    """No virtual machine on the host matches the requested name."""


class UnsupportedHostError(RemoteScriptError):
    """The host cannot be backed up: desktop Windows, no Hyper-V module, or too old."""


class CheckpointError(RemoteScriptError):
    """A checkpoint could not be created, removed or merged."""


class ProductionCheckpointError(CheckpointError):
    """A production (application-consistent) checkpoint failed: the guest's VSS did not
    answer (integration services missing, stopped or unhealthy)."""


class ExportError(RemoteScriptError):
    """Exporting a VM or its configuration, or preparing the staging folder, failed."""


class InsufficientSpaceError(ExportError):
    """The staging volume on the host has less free space than the export needs (or, for a
    restore onto the host, the destination volume less than the restore needs)."""


class ShadowCopyError(RemoteScriptError):
    """A VSS shadow copy on the host could not be created or removed."""


class ReplicationError(RemoteScriptError):
    """Hyper-V Replica could not be suspended or resumed for a VM."""


class HookError(RemoteScriptError):
    """A before/after command reported a failure."""


class VMImportError(RemoteScriptError):
    """Importing a restored VM on the host was refused (its name is taken, ``Compare-VM``
    reported incompatibilities, the import folder is not empty) or failed."""


class AccessDeniedError(RemoteScriptError, PermissionError):
    """The connecting account lacks the rights for the operation (Hyper-V Administrators)."""


class ConsistencyError(HyperVBackupError):
    """The policy demands a consistency level this VM cannot reach (e.g. ``app_required``
    for a VM without a healthy guest VSS service, or for a replica)."""


class PassthroughDiskError(HyperVBackupError):
    """The VM has pass-through disks, which Hyper-V cannot back up, and the policy says
    ``passthrough = fail_vm``."""


class TargetError(HyperVBackupError):
    """The storage target (local directory or S3) failed."""


class TransferError(HyperVBackupError, OSError):
    """A file on the host could not be read (over SMB or PowerShell Remoting), or written
    (a restore over SMB).

    Also an :class:`OSError`, as a reader's errors are: code that handles a local read failure
    handles these too.
    """


class ShareNotFoundError(TransferError):
    """The SMB share a host path maps to does not exist (or was removed) on the host."""


class HostFileNotFoundError(TransferError, FileNotFoundError):
    """The host has no file at the path that was to be read."""


class ReadAccessDeniedError(TransferError, PermissionError):
    """The account may not read the share or the file."""


class HostFileExistsError(TransferError, FileExistsError):
    """A file the restore would write exists on the host (and overwriting was not asked)."""


class WriteAccessDeniedError(TransferError, PermissionError):
    """The account may not write to the share or the folder."""


class RepositoryError(HyperVBackupError):
    """The backup repository is missing, malformed or unusable."""


class IntegrityError(RepositoryError):
    """Stored data does not match its recorded hash."""


class LockedError(RepositoryError):
    """Another process holds the repository lock."""


class WrongPasswordError(RepositoryError):
    """The password given does not unlock the repository's key (the message never holds it)."""
