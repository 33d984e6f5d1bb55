"""The conflicting-operation retry policy: bounded, logged, by exception type only."""

from __future__ import annotations

import pytest

from hyperv_backup import ConflictingOperationError, RemoteScriptError, RetryPolicy
from hyperv_backup.retry import RetryLog, conflicting_operation


def flaky(failures: int, error: Exception) -> tuple[list[int], object]:
    calls: list[int] = []

    def operation() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"

    return calls, operation


def test_conflicting_operation_is_retried_then_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    calls, operation = flaky(3, ConflictingOperationError("busy", target="sql01"))
    waits: list[float] = []
    log = RetryLog()
    policy = RetryPolicy(attempts=5, initial_wait=1, max_wait=8)
    assert (
        conflicting_operation(policy, operation, what="checkpoint", log=log, sleep=waits.append)
        == "done"
    )  # type: ignore[arg-type]
    assert len(calls) == 4
    assert log.retries == 3
    assert len(waits) == 3
    assert all(0 <= w <= 8 for w in waits)
    assert caplog.text.count("hit a conflicting operation") == 3


def test_exhausted_retries_raise_a_clear_error() -> None:
    calls, operation = flaky(10, ConflictingOperationError("busy"))
    policy = RetryPolicy(attempts=3, initial_wait=0)
    with pytest.raises(ConflictingOperationError, match="after 3 attempt") as caught:
        conflicting_operation(policy, operation, what="checkpoint of 'sql01'", sleep=lambda _: None)  # type: ignore[arg-type]
    assert "suspend_replication" in str(caught.value)
    assert len(calls) == 3


def test_other_errors_are_not_retried() -> None:
    calls, operation = flaky(1, RemoteScriptError("disk full"))
    with pytest.raises(RemoteScriptError, match="disk full"):
        conflicting_operation(RetryPolicy(), operation, what="x", sleep=lambda _: None)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_deadline_bounds_the_total_time() -> None:
    calls, operation = flaky(100, ConflictingOperationError("busy"))
    policy = RetryPolicy(attempts=100, initial_wait=0.01, max_wait=0.01, deadline=0.2, jitter=False)
    with pytest.raises(ConflictingOperationError):
        conflicting_operation(policy, operation, what="x")  # type: ignore[arg-type]
    assert len(calls) < 100
