"""The one S3 client factory, and the one place that understands botocore's exceptions.

Nothing else in the package imports boto3 or botocore: :func:`connect` builds the client with
our retry, timeout, addressing and checksum policy, and :meth:`S3Connection.describe` turns
any botocore exception into a :class:`Failure` the target can act on (absent, precondition
failed, …) or :meth:`S3Connection.error` into a :class:`~hyperv_backup.errors.TargetError`
whose message says what failed, where, and what to do — never a secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSLError,
)

from hyperv_backup.errors import TargetError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from hyperv_backup.targets.settings import S3Settings

__all__ = ["BOTO_ERRORS", "Failure", "FailureKind", "S3Connection", "connect"]

logger = logging.getLogger(__name__)

BOTO_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)
"""Catch these around client calls, then ask :meth:`S3Connection.describe` what happened."""

FailureKind = Literal[
    "absent",  # the object (or upload) does not exist
    "no_bucket",
    "precondition",  # If-None-Match / If-Match refused (412)
    "conflict",  # 409: a concurrent conditional write won; re-read and decide again
    "denied",
    "invalid_range",
    "not_implemented",  # the server does not support the operation or a header
    "unreachable",
    "timeout",
    "interrupted",  # the connection broke while a body was being read
    "server",  # 5xx after every retry
    "tls",
    "credentials",
    "other",
]

_ABSENT_CODES = {"NoSuchKey", "NoSuchUpload", "NoSuchVersion", "NotFound"}
_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
}


@dataclass(frozen=True)
class Failure:
    """What a botocore exception means for us."""

    kind: FailureKind
    code: str
    status: int | None
    detail: str
    attempts: int | None = None


@dataclass
class S3Connection:
    """A configured client plus what messages need to know about how it was made."""

    client: S3Client
    settings: S3Settings
    credentials_source: str

    @property
    def endpoint(self) -> str:
        """The endpoint in use, for messages."""
        return self.settings.endpoint_url or "AWS S3"

    def describe(self, exc: BaseException) -> Failure:
        """Classify a botocore exception (anything else is ``other``)."""
        if isinstance(exc, ClientError):
            return _describe_client_error(exc)
        if isinstance(exc, SSLError):
            return Failure("tls", "SSLError", None, str(exc))
        if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
            return Failure("timeout", type(exc).__name__, None, str(exc))
        if isinstance(exc, EndpointConnectionError):
            return Failure("unreachable", type(exc).__name__, None, str(exc))
        if isinstance(exc, ConnectionClosedError | IncompleteReadError | HTTPClientError):
            return Failure("interrupted", type(exc).__name__, None, str(exc))
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | ProfileNotFound):
            return Failure("credentials", type(exc).__name__, None, str(exc))
        return Failure("other", type(exc).__name__, None, str(exc))

    def error(self, exc: BaseException, action: str, what: str) -> TargetError:
        """A :class:`TargetError` for ``exc``, raised while doing ``action`` to ``what``."""
        failure = self.describe(exc)
        return TargetError(self.message(failure, action, what))

    @staticmethod
    def _status(failure: Failure) -> str:
        if failure.status is None or failure.code == str(failure.status):
            return failure.code
        return f"{failure.status} {failure.code}"

    def message(self, failure: Failure, action: str, what: str) -> str:
        """The user-facing text for a failure: what happened, to what, what to do."""
        settings = self.settings
        tries = failure.attempts or settings.max_attempts
        head = f"S3 {action} of {what} in {settings.location} failed"
        kind = failure.kind
        if kind == "no_bucket":
            return (
                f"{head}: the bucket {settings.bucket!r} does not exist on {self.endpoint}. "
                "Create it, or correct 'bucket' (and 'endpoint_url') in the target settings."
            )
        if kind in ("denied", "credentials"):
            return (
                f"{head}: access was refused ({failure.code}) for the credentials from "
                f"{self.credentials_source}. Check that they are valid and that the bucket "
                "policy allows this action."
            )
        if kind == "unreachable":
            return (
                f"{head}: cannot connect to {self.endpoint} after {tries} attempts. Check the "
                "address, the network and that the server is running."
            )
        if kind == "timeout":
            return (
                f"{head}: no answer within the timeouts (connect {settings.connect_timeout}s, "
                f"read {settings.read_timeout}s) after {tries} attempts. The server is slow or "
                "overloaded; try again later or raise read_timeout."
            )
        if kind == "tls":
            return (
                f"{head}: the TLS certificate of {self.endpoint} could not be verified. Give "
                "the CA in 'ca_bundle' (or, only for testing, set verify_tls to false)."
            )
        if kind == "server":
            return (
                f"{head}: the server kept answering {self._status(failure)} after "
                f"{tries} attempts. Try again later."
            )
        if kind == "interrupted":
            return f"{head}: the connection broke ({failure.code}). Try again."
        return f"{head}: {self._status(failure)}: {failure.detail or 'no details given'}"


def _describe_client_error(exc: ClientError) -> Failure:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    status = meta.get("HTTPStatusCode")
    code = str(error.get("Code") or status or "Unknown")
    detail = str(error.get("Message") or "")
    retries = meta.get("RetryAttempts")
    attempts = retries + 1 if isinstance(retries, int) else None
    kind: FailureKind
    if code == "NoSuchBucket":
        kind = "no_bucket"
    elif code in _ABSENT_CODES or status == 404:
        kind = "absent"
    elif code == "PreconditionFailed" or status == 412:
        kind = "precondition"
    elif status == 409 and code == "ConditionalRequestConflict":
        kind = "conflict"
    elif code in _DENIED_CODES or status == 403:
        kind = "denied"
    elif code == "InvalidRange" or status == 416:
        kind = "invalid_range"
    elif code == "NotImplemented" or status == 501:
        kind = "not_implemented"
    elif isinstance(status, int) and status >= 500:
        kind = "server"
    else:
        kind = "other"
    return Failure(kind, code, status, detail, attempts)


def _credentials_source(session: boto3.Session, settings: S3Settings) -> str:
    """Where the credentials come from, in words — never the key itself."""
    if settings.access_key_id is not None:
        return "the access key in the target settings"
    if settings.profile is not None:
        return f"profile {settings.profile!r}"
    credentials = session.get_credentials()
    if credentials is None:
        raise TargetError(
            f"no S3 credentials found for {settings.location}: give access_key_id and "
            "secret_access_key or a profile in the target settings, or set "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE."
        )
    return f"boto3's default credential chain ({credentials.method})"


def _addressing_style(settings: S3Settings) -> Literal["auto", "path", "virtual"]:
    # S3-compatible servers (and loopback addresses) rarely resolve bucket.host names.
    if settings.addressing_style == "auto" and not settings.is_aws:
        return "path"
    return settings.addressing_style


def connect(settings: S3Settings) -> S3Connection:
    """Build the S3 client for ``settings``: retries, timeouts, addressing, checksums, pool."""
    try:
        if settings.access_key_id is not None and settings.secret_access_key is not None:
            token = settings.session_token
            session = boto3.Session(
                aws_access_key_id=settings.access_key_id.get_secret_value(),
                aws_secret_access_key=settings.secret_access_key.get_secret_value(),
                aws_session_token=token.get_secret_value() if token is not None else None,
            )
        else:
            session = boto3.Session(profile_name=settings.profile)
    except ProfileNotFound as err:
        raise TargetError(
            f"the AWS profile {settings.profile!r} for {settings.location} does not exist in "
            "the shared config/credentials files; correct 'profile' in the target settings."
        ) from err
    source = _credentials_source(session, settings)
    # Many S3-compatible servers reject or mishandle the CRC checksums boto3 adds by default;
    # for them only send/verify checksums where the API requires it (we add Content-MD5).
    checksum: Literal["when_supported", "when_required"] = (
        "when_supported" if settings.is_aws else "when_required"
    )
    config = Config(
        region_name=settings.region or (None if settings.is_aws else "us-east-1"),
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        # adaptive = standard retries (5xx, throttling, timeouts, broken connections) with
        # a client-side rate limiter that backs off further when the server says SlowDown.
        # total_max_attempts counts the first try too, so "after N attempts" is exact.
        retries={"mode": "adaptive", "total_max_attempts": settings.max_attempts},
        max_pool_connections=settings.max_concurrency + 4,
        s3={
            "addressing_style": _addressing_style(settings),
            "payload_signing_enabled": settings.sign_payload,
        },
        request_checksum_calculation=checksum,
        response_checksum_validation=checksum,
        tcp_keepalive=True,
        user_agent_extra="hyperv-backup",
    )
    verify: bool | str = True
    if settings.ca_bundle is not None:
        verify = str(settings.ca_bundle)
    if not settings.verify_tls:
        verify = False
        logger.warning(
            "TLS certificate verification is off for %s: anyone on the path can read and "
            "alter backups. Use ca_bundle instead.",
            settings.location,
        )
    client = session.client("s3", endpoint_url=settings.endpoint_url, config=config, verify=verify)
    logger.debug("S3 client for %s using credentials from %s", settings.location, source)
    return S3Connection(client=client, settings=settings, credentials_source=source)
