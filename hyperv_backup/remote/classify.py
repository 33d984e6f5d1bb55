"""The one place that decides which typed exception a failed host script becomes.

Scripts set ``error.kind`` when they know what went wrong (``vm_not_found``,
``unsupported_host`` ...). Hyper-V's own errors arrive as ``unexpected`` with PowerShell's
message and FullyQualifiedErrorId; those are recognised here and nowhere else, so that retry
policies can act on exception *types* rather than on message text.
"""

from __future__ import annotations

import re

from hyperv_backup.errors import (
    AccessDeniedError,
    CheckpointError,
    ConflictingOperationError,
    ExportError,
    HookError,
    InsufficientSpaceError,
    ProductionCheckpointError,
    RemoteScriptError,
    ReplicationError,
    ShadowCopyError,
    UnsupportedHostError,
    VMImportError,
    VMNotFoundError,
)
from hyperv_backup.remote.envelope import Failure

__all__ = ["classify_failure"]

_BY_KIND: dict[str, type[RemoteScriptError]] = {
    "conflicting_operation": ConflictingOperationError,
    "vm_not_found": VMNotFoundError,
    "unsupported_host": UnsupportedHostError,
    "checkpoint": CheckpointError,
    "production_checkpoint_failed": ProductionCheckpointError,
    "export": ExportError,
    "insufficient_space": InsufficientSpaceError,
    "shadow": ShadowCopyError,
    "replication": ReplicationError,
    "hook": HookError,
    "access_denied": AccessDeniedError,
    "import": VMImportError,
}

# English hosts: "The virtual machine '<name>' cannot start a backup operation because it is
# currently executing a conflicting operation. Try the backup again."
_CONFLICTING_OPERATION = re.compile(
    r"currently executing a conflicting operation|conflicting operation", re.IGNORECASE
)
_ACCESS_DENIED = re.compile(r"access (is )?denied|UnauthorizedAccess", re.IGNORECASE)


# Kinds a script decides with certainty; for every other kind Hyper-V's own message may still
# say "conflicting operation" (e.g. a ProductionOnly checkpoint refused while replicating).
_DEFINITE_KINDS = frozenset({"vm_not_found", "unsupported_host", "access_denied", "hook"})


def classify_failure(script: str, failure: Failure) -> RemoteScriptError:
    """The typed exception for ``failure`` reported by ``script``."""
    text = f"{failure.message} {failure.fqid or ''}"
    cls = _BY_KIND.get(failure.kind)
    if failure.kind not in _DEFINITE_KINDS and _CONFLICTING_OPERATION.search(text):
        cls = ConflictingOperationError
    elif cls is None:
        cls = AccessDeniedError if _ACCESS_DENIED.search(text) else RemoteScriptError
    message = failure.message
    if cls is AccessDeniedError:
        message += (
            " The connecting account needs to be a member of 'Hyper-V Administrators' (or "
            "local Administrators) on the host."
        )
    return cls(
        message,
        script=script,
        kind=failure.kind,
        fqid=failure.fqid,
        target=failure.target,
    )


# Replication states in which Hyper-V refuses backup operations for a while (transient:
# initial replication, resynchronisation, failover/failback/update in progress). A VM in one
# of these is waited out with the conflicting-operation retry policy. "FailedOver" is not
# here: it changes the VM's role and is reported, not retried.
BUSY_REPLICATION_STATES = frozenset(
    {
        "WaitingForInitialReplication",
        "Resynchronizing",
        "WaitingForStartResynchronize",
        "FailOverWaitingCompletion",
        "RecoveryInProgress",
        "FailbackInProgress",
        "WaitingForUpdateCompletion",
        "WaitingForRepurposeCompletion",
    }
)
_REPLICATION_ACTIVE_STATES = BUSY_REPLICATION_STATES | {"Replicating"}


def reclassify_for_replication(
    error: RemoteScriptError, replication_state: str | None
) -> RemoteScriptError:
    """``error`` from a backup operation, seen together with the VM's replication state.

    Localized hosts word the conflicting-operation message differently, so an otherwise
    unclassified Hyper-V failure of a VM whose replication is active counts as a conflicting
    operation (and is retried, bounded) rather than a hard failure.
    """
    if type(error) is not RemoteScriptError:
        return error
    if replication_state not in _REPLICATION_ACTIVE_STATES:
        return error
    if "hyperv" not in (error.fqid or "").replace("-", "").lower():
        return error
    return ConflictingOperationError(
        f"{error} (replication state {replication_state})",
        script=error.script,
        kind="conflicting_operation",
        fqid=error.fqid,
        target=error.target,
    )
