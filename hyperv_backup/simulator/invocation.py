"""Translation between psrpcore's objects and the handler seam in :mod:`.protocol`.

Inbound, a deserialized CreatePipeline becomes a :class:`ScriptInvocation` of plain Python values
(handlers compare strings and ints, not psrpcore's ``PSString``/``PSInt`` subclasses). Outbound,
an :class:`ErrorRecordSpec` becomes the ErrorRecord PowerShell would have written.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from typing import Any

from psrpcore import PowerShell
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSDouble,
    PSObject,
    PSSecureString,
)

from hyperv_backup.simulator.protocol import ErrorRecordSpec, ScriptInvocation

__all__ = ["error_record", "invocation_from_pipeline", "to_plain", "to_wire"]

# The HRESULT of System.Management.Automation.RuntimeException, what `throw "text"` produces.
_RUNTIME_EXCEPTION_HRESULT = -2146233087
_RUNTIME_EXCEPTION_TYPES = [
    "System.Management.Automation.RuntimeException",
    "System.SystemException",
    "System.Exception",
    "System.Object",
]


def to_plain(value: Any) -> Any:
    """Strip psrpcore's wrappers from a deserialized value, recursively.

    Strings come back as exact ``str`` (never re-encoded, so every code point survives), integers
    and enums as ``int``, hashtables as ``dict``, arrays as ``list``, secure strings decrypted,
    dates, durations, GUIDs and decimals as their standard-library types, other objects as a
    ``dict`` of their properties.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, PSSecureString):
        return str.__str__(value.decrypt())
    if isinstance(value, str):
        # str.__str__ copies a subclass instance into an exact str without calling its __str__.
        return str.__str__(value)
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, datetime.datetime):
        # PSDateTime carries nanoseconds; the plain datetime keeps microseconds.
        return datetime.datetime.fromisoformat(datetime.datetime.isoformat(value))
    if isinstance(value, datetime.timedelta):
        return datetime.timedelta(seconds=value.total_seconds())
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int)
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal(value)
    if isinstance(value, dict):
        return {to_plain(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, PSObject):
        meta = value.PSObject
        properties = [*meta.adapted_properties, *meta.extended_properties]
        if properties:
            return {prop.name: to_plain(prop.get_value(value)) for prop in properties}
        return meta.to_string
    return value


def to_wire(value: Any) -> Any:
    """Prepare a handler's output object for psrpcore's serializer.

    psrpcore serializes a bare ``float`` as a single-precision ``System.Single``; PowerShell's
    numbers are doubles, so floats are wrapped to keep their precision.
    """
    if isinstance(value, float):
        return PSDouble(value)
    if isinstance(value, list | tuple):
        return [to_wire(item) for item in value]
    if isinstance(value, dict):
        return {key: to_wire(item) for key, item in value.items()}
    return value


def invocation_from_pipeline(pipeline: PowerShell, username: str) -> ScriptInvocation:
    """Describe the first command of a client's pipeline for the handler.

    Positional arguments (parameters without a name) keep their order; later commands of the
    pipeline are not part of the seam and are ignored.
    """
    command = pipeline.commands[0]
    parameters: dict[str, Any] = {}
    arguments: list[Any] = []
    for name, value in command.parameters:
        if name is None:
            arguments.append(to_plain(value))
        else:
            parameters[str.__str__(name)] = to_plain(value)
    return ScriptInvocation(
        script=str.__str__(command.command_text),
        parameters=parameters,
        arguments=arguments,
        is_script=bool(command.is_script),
        username=username,
    )


def _category(value: int) -> ErrorCategory:
    try:
        return ErrorCategory(value)
    except ValueError:
        return ErrorCategory.NotSpecified


def error_record(spec: ErrorRecordSpec) -> ErrorRecord:
    """The ErrorRecord PowerShell writes for ``throw`` / ``Write-Error``, built from ``spec``.

    The exception is a RuntimeException whose Message is ``spec.message``; the category info
    names the target like PowerShell does (``TargetName`` = the target, of type String).
    """
    exception = NETException(Message=spec.message, HResult=_RUNTIME_EXCEPTION_HRESULT)
    exception.PSObject.type_names = list(_RUNTIME_EXCEPTION_TYPES)
    category = ErrorCategoryInfo(
        Category=_category(spec.category),
        Reason="RuntimeException",
        TargetName=spec.target or "",
        TargetType="String" if spec.target is not None else "",
    )
    return ErrorRecord(
        Exception=exception,
        CategoryInfo=category,
        TargetObject=spec.target,
        FullyQualifiedErrorId=spec.fqid,
    )
