"""POST the job report to a URL: chat, paging or ticketing systems hear about failed backups.

Standard library HTTP (``urllib``), a timeout per attempt, and retries with backoff
(tenacity) of what may pass: connection errors, timeouts, 5xx, 408 and 429. A webhook that
cannot be reached never fails the backup: :func:`send_webhook` logs a warning and says so in
its return value.
"""

from __future__ import annotations

import enum
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException

import tenacity
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from hyperv_backup.job_report import JobReport, tool_version
from hyperv_backup.policy import RetryPolicy
from hyperv_backup.results import JobResult, JobStatus

__all__ = ["Webhook", "WebhookDelivery", "WebhookOn", "send_webhook"]

logger = logging.getLogger(__name__)


class WebhookOn(str, enum.Enum):
    """When the webhook is called."""

    FAILURE = "failure"
    """When the job did not fully succeed: failed or partial."""
    ALWAYS = "always"
    """After every job."""


_WEBHOOK_RETRY = RetryPolicy(attempts=4, initial_wait=1.0, max_wait=10.0, deadline=60.0)
_RETRIED_HTTP = frozenset({408, 429})  # besides every 5xx: the server asks to try again


class Webhook(BaseModel):
    """Where and when to POST the job report.

    ``url`` may hold a token (many chat webhooks do), so it is left out of ``repr`` and logs
    show only its scheme and host; ``headers`` (e.g. ``Authorization``) are secrets too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(repr=False, description="http:// or https:// URL.")
    on: WebhookOn = WebhookOn.FAILURE
    timeout: float = Field(default=10.0, gt=0, description="Seconds per attempt.")
    retry: RetryPolicy = Field(
        default=_WEBHOOK_RETRY,
        description="Retries of connection errors, timeouts, 5xx, 408 and 429 answers.",
    )
    headers: dict[str, SecretStr] = Field(default_factory=dict, repr=False)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the webhook URL must start with http:// or https:// and name a host")
        return url

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            if not name or any(c in name for c in " :\r\n\t"):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if any(c in value.get_secret_value() for c in "\r\n"):
                raise ValueError(f"the value of header {name!r} contains a line break")
        return headers

    @property
    def redacted_url(self) -> str:
        """``scheme://host[:port]/…``: safe to log."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}/…"

    def wants(self, status: JobStatus) -> bool:
        """Whether a job that ended with ``status`` is reported."""
        return self.on == WebhookOn.ALWAYS or status != JobStatus.SUCCESS


@dataclass(frozen=True)
class WebhookDelivery:
    """What became of a webhook call. ``sent`` is False when ``on`` did not ask for one."""

    sent: bool
    delivered: bool = False
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None


class _UndeliveredError(Exception):
    def __init__(self, reason: str, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.status_code = status_code


class _TryAgainError(_UndeliveredError):
    """A failure that may pass: connection refused or reset, a timeout, 5xx, 408, 429."""


def send_webhook(
    result: JobResult, webhook: Webhook, *, report: JobReport | None = None
) -> WebhookDelivery:
    """POST the :class:`JobReport` of ``result`` as JSON to ``webhook.url``, if ``webhook.on``
    asks for it.

    Connection errors, timeouts and 5xx/408/429 answers are retried with backoff (per
    ``webhook.retry``); other 4xx answers are not. Never raises for the network: a webhook
    that cannot be reached is logged as a warning and returned as not delivered.
    """
    if not webhook.wants(result.status):
        return WebhookDelivery(sent=False)
    body = (report or JobReport.of(result)).to_json().encode("utf-8")
    policy = webhook.retry
    wait: tenacity.wait.wait_base
    if policy.jitter:
        wait = tenacity.wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait)
    else:
        wait = tenacity.wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait)
    attempts = 0

    def post() -> int:
        nonlocal attempts
        attempts += 1
        return _post(webhook, body)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.info("webhook to %s: %s; trying again", webhook.redacted_url, error)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_after_delay(policy.deadline),
        wait=wait,
        retry=tenacity.retry_if_exception_type(_TryAgainError),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        status_code = retrying(post)
    except _UndeliveredError as err:
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        message = f"webhook to {webhook.redacted_url} not delivered after {tries}: {err}"
        logger.warning("%s", message)
        return WebhookDelivery(
            sent=True, attempts=attempts, status_code=err.status_code, error=message
        )
    logger.info("webhook to %s delivered (HTTP %d)", webhook.redacted_url, status_code)
    return WebhookDelivery(sent=True, delivered=True, attempts=attempts, status_code=status_code)


def _post(webhook: Webhook, body: bytes) -> int:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"hyperv-backup/{tool_version()}",
        **{name: value.get_secret_value() for name, value in webhook.headers.items()},
    }
    # The scheme was checked to be http(s) when the Webhook was made.
    request = urllib.request.Request(  # noqa: S310
        webhook.url, data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=webhook.timeout) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        reason = f"HTTP {err.code} {err.reason}"
        if err.code >= 500 or err.code in _RETRIED_HTTP:
            raise _TryAgainError(reason, err.code) from None
        raise _UndeliveredError(reason, err.code) from None
    except urllib.error.URLError as err:
        raise _TryAgainError(str(err.reason)) from None
    except (OSError, HTTPException) as err:  # timeouts, resets, garbled answers
        raise _TryAgainError(str(err) or type(err).__name__) from None
