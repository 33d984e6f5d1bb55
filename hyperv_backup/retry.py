"""Named retry policies. Retries are decided by exception *type*, never by message text.

- :func:`conflicting_operation` retries :class:`ConflictingOperationError` — Hyper-V refusing
  a backup operation while the VM is busy (usually Hyper-V Replica sending a cycle), and busy
  replication states waited out before starting — with exponential backoff and full jitter,
  bounded by attempts and a total deadline (:class:`~hyperv_backup.policy.RetryPolicy`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

from hyperv_backup.errors import ConflictingOperationError
from hyperv_backup.policy import RetryPolicy

__all__ = ["RetryLog", "conflicting_operation"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class RetryLog:
    """What a retried operation went through, for the VM's result."""

    retries: int = 0
    waited_seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)


def conflicting_operation(
    policy: RetryPolicy,
    operation: Callable[[], T],
    *,
    what: str,
    log: RetryLog | None = None,
    sleep: Callable[[float], None] = tenacity.nap.sleep,
) -> T:
    """Run ``operation``; on :class:`ConflictingOperationError` wait and try again.

    Gives up after ``policy.attempts`` tries or ``policy.deadline`` seconds and re-raises the
    last error with a message saying how often and how long it was tried.
    """
    record = log if log is not None else RetryLog()
    wait: tenacity.wait.wait_base
    if policy.jitter:
        wait = tenacity.wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait)
    else:
        wait = tenacity.wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        seconds = state.next_action.sleep if state.next_action else 0.0
        error = state.outcome.exception() if state.outcome else None
        record.retries += 1
        record.waited_seconds += seconds
        record.reasons.append(str(error))
        logger.warning(
            "%s: attempt %d of %d hit a conflicting operation (%s); waiting %.1f s",
            what,
            state.attempt_number,
            policy.attempts,
            error,
            seconds,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(ConflictingOperationError),
        stop=tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_after_delay(policy.deadline),
        wait=wait,
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(operation)
    except ConflictingOperationError as err:
        tries = record.retries + 1
        raise type(err)(
            f"{what}: still a conflicting operation after {tries} attempt(s) over "
            f"{record.waited_seconds:.0f} s of waiting ({err}). Hyper-V Replica is probably "
            "replicating this VM: schedule the backup when replication is idle, or use "
            "suspend_replication.",
            script=err.script,
            kind=err.kind,
            fqid=err.fqid,
            target=err.target,
        ) from err
