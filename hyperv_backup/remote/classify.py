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
    RemoteScriptError,
    UnsupportedHostError,
    VMNotFoundError,
)
from hyperv_backup.remote.envelope import Failure

__all__ = ["classify_failure"]

_BY_KIND: dict[str, type[RemoteScriptError]] = {
    "conflicting_operation": ConflictingOperationError,
    "vm_not_found": VMNotFoundError,
    "unsupported_host": UnsupportedHostError,
    "checkpoint": CheckpointError,
    "export": ExportError,
    "access_denied": AccessDeniedError,
}

# English hosts: "The virtual machine '<name>' cannot start a backup operation because it is
# currently executing a conflicting operation. Try the backup again."
_CONFLICTING_OPERATION = re.compile(
    r"currently executing a conflicting operation|conflicting operation", re.IGNORECASE
)
_ACCESS_DENIED = re.compile(r"access (is )?denied|UnauthorizedAccess", re.IGNORECASE)


def classify_failure(script: str, failure: Failure) -> RemoteScriptError:
    """The typed exception for ``failure`` reported by ``script``."""
    cls = _BY_KIND.get(failure.kind)
    if cls is None:
        text = f"{failure.message} {failure.fqid or ''}"
        if _CONFLICTING_OPERATION.search(text):
            cls = ConflictingOperationError
        elif _ACCESS_DENIED.search(text):
            cls = AccessDeniedError
        else:
            cls = RemoteScriptError
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
