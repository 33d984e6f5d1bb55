"""The script result protocol: exactly one JSON envelope, or a ProtocolError that shows why."""

from __future__ import annotations

import json

import pytest

from hyperv_backup import (
    AccessDeniedError,
    ConflictingOperationError,
    ProtocolError,
    RemoteScriptError,
    VMNotFoundError,
)
from hyperv_backup.remote.classify import classify_failure
from hyperv_backup.remote.envelope import Failure, parse_envelope
from hyperv_backup.remote.session import ErrorRecord, Invocation


def test_one_ok_envelope_is_parsed() -> None:
    envelope = parse_envelope("s", Invocation(output=['{"ok": true, "result": {"a": 1}}']))
    assert envelope.ok
    assert envelope.result == {"a": 1}


def test_no_output_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="wrote no output at all"):
        parse_envelope("s", Invocation())


def test_two_documents_are_a_protocol_error_quoting_both() -> None:
    with pytest.raises(ProtocolError, match="wrote 2 output objects") as caught:
        parse_envelope("s", Invocation(output=["stray text", '{"ok": true, "result": null}']))
    assert "stray text" in str(caught.value)


def test_error_records_without_an_envelope_are_a_protocol_error() -> None:
    invocation = Invocation(
        errors=[ErrorRecord(message="The term 'Get-VM' is not recognized", fqid="CommandNotFound")],
        failed=True,
    )
    with pytest.raises(ProtocolError, match="failed with error records") as caught:
        parse_envelope("get-inventory", invocation)
    assert "The term 'Get-VM' is not recognized" in str(caught.value)


def test_non_json_output_is_quoted_up_to_2000_characters() -> None:
    garbage = "x" * 5000
    with pytest.raises(ProtocolError) as caught:
        parse_envelope("s", Invocation(output=[garbage]))
    assert caught.value.output == "x" * 2000
    assert "x" * 2001 not in str(caught.value)


def test_failed_envelope_must_carry_an_error() -> None:
    with pytest.raises(ProtocolError, match="not a result envelope"):
        parse_envelope("s", Invocation(output=[json.dumps({"ok": False})]))


def test_conflicting_operation_message_is_classified_once() -> None:
    failure = Failure(
        message="The virtual machine 'sql01' cannot start a backup operation because it is "
        "currently executing a conflicting operation. Try the backup again.",
        fqid="OperationFailed,Microsoft.HyperV.PowerShell.Commands.CheckpointVM",
        target="sql01",
    )
    error = classify_failure("new-checkpoint", failure)
    assert isinstance(error, ConflictingOperationError)
    assert error.target == "sql01"


def test_kinds_map_to_typed_exceptions() -> None:
    error = classify_failure(
        "get-inventory", Failure(kind="vm_not_found", message="no vm", target="x")
    )
    assert isinstance(error, VMNotFoundError)
    assert isinstance(error, LookupError)
    denied = classify_failure("s", Failure(message="Access is denied."))
    assert isinstance(denied, AccessDeniedError)
    assert "Hyper-V Administrators" in str(denied)
    other = classify_failure("s", Failure(message="Something else"))
    assert type(other) is RemoteScriptError
