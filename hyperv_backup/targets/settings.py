"""Validated target settings, for config files: ``kind: local`` or ``kind: s3``.

Frozen pydantic models, built once at the edge and passed inward. Secrets are
:class:`pydantic.SecretStr`, so they print as ``'**********'`` in reprs, logs and errors.
:func:`open_target` turns settings into an opened :class:`~hyperv_backup.targets.base.Target`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hyperv_backup.targets.base import Target
from hyperv_backup.targets.local import LocalTarget
from hyperv_backup.targets.s3 import S3Target

__all__ = ["LocalSettings", "S3Settings", "TargetSettings", "open_target"]

MIB = 1024 * 1024


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LocalSettings(_Frozen):
    """A local (or mounted NAS) directory holding the repository."""

    kind: Literal["local"] = "local"
    path: Path = Field(description="The repository folder; created if missing.")


class S3Settings(_Frozen):
    """An S3 bucket (AWS or S3-compatible), optionally below a key prefix.

    Credentials, in order: ``access_key_id`` + ``secret_access_key`` when given; otherwise the
    named ``profile``; otherwise boto3's default chain (environment, shared files, instance
    role). ``endpoint_url`` selects an S3-compatible server; for those, path-style addressing
    and ``when_required`` checksums are the defaults, because many such servers support
    neither virtual-host buckets nor the CRC checksums boto3 sends to AWS.
    """

    kind: Literal["s3"] = "s3"
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = Field(default="", description="Key prefix, e.g. 'backups/hv01'.")
    endpoint_url: str | None = Field(default=None, description="None means AWS.")
    region: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="'auto': path style for non-AWS endpoints, else boto3's."
    )
    profile: str | None = Field(default=None, description="A named profile in ~/.aws.")
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    verify_tls: bool = True
    ca_bundle: Path | None = Field(default=None, description="PEM file of CAs to trust.")
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(
        default=10, ge=1, le=50, description="Tries per request, the first included."
    )
    max_concurrency: int = Field(default=4, ge=1, le=64, description="Parallel part uploads.")
    part_size: int = Field(
        default=8 * MIB,
        ge=5 * MIB,
        description="Preferred multipart part size; grown for objects over 10,000 parts.",
    )
    multipart_threshold: int = Field(
        default=8 * MIB, ge=5 * MIB, description="Streams larger than this use multipart."
    )
    object_lock_days: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Retention for immutable backups; the bucket must have Object Lock on. Applied to "
            "what backups add for good (repository packs and snapshots, plain backup files), "
            "never to locks or index objects, which must stay replaceable."
        ),
    )
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    sign_payload: bool = Field(
        default=False,
        description=(
            "Also hash every upload's body into its SigV4 signature. Every upload carries "
            "Content-MD5, which the server verifies, so by default the body is not hashed "
            "twice (botocore otherwise does that on plain-http endpoints). Set it for servers "
            "that refuse UNSIGNED-PAYLOAD."
        ),
    )

    @model_validator(mode="after")
    def _credentials_are_consistent(self) -> S3Settings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        if self.access_key_id is not None and self.profile is not None:
            raise ValueError("give either a profile or access keys, not both")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self

    @property
    def is_aws(self) -> bool:
        """True when talking to AWS itself (no endpoint, or an amazonaws.com one)."""
        if self.endpoint_url is None:
            return True
        host = self.endpoint_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))

    @property
    def key_prefix(self) -> str:
        """``prefix`` normalised to '' or 'a/b/' (no leading slash, one trailing slash)."""
        parts = [p for p in self.prefix.split("/") if p]
        return "/".join(parts) + "/" if parts else ""

    @property
    def location(self) -> str:
        """``s3://bucket/prefix`` (plus the endpoint when not AWS), for messages."""
        where = f"s3://{self.bucket}/{self.key_prefix}"
        return where if self.endpoint_url is None else f"{where} at {self.endpoint_url}"


TargetSettings = Annotated[LocalSettings | S3Settings, Field(discriminator="kind")]
"""Either kind of target, told apart by ``kind``."""


def open_target(settings: LocalSettings | S3Settings) -> Target:
    """Open the target ``settings`` describe (for S3: connect, probe, check Object Lock)."""
    if isinstance(settings, LocalSettings):
        return LocalTarget(settings.path)
    return S3Target(settings)
