"""The ``config`` object: what every reader and writer of a repository must agree on.

It is the only object stored in the clear (JSON), because it says how to read everything
else: the format version, the repository id, the chunker parameters (changing them would
break dedup against what is stored), the pack size, the compression, and either the
password-wrapped master key (encrypted repositories) or the chunk-id key (unencrypted ones).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CONFIG_KEY",
    "FORMAT_VERSION",
    "ChunkerParams",
    "CompressionParams",
    "EncryptionParams",
    "KdfParams",
    "PackIdHash",
    "RepositoryConfig",
]

CONFIG_KEY = "config"
FORMAT_VERSION = 1

KiB = 1024
MiB = 1024 * KiB


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChunkerParams(_Model):
    """FastCDC 2020 (``pyfastcdc``) cut points; see :mod:`hyperv_backup.repository.chunker`."""

    algorithm: Literal["fastcdc2020"] = "fastcdc2020"
    min_size: int = Field(ge=64, le=1 * MiB)
    avg_size: int = Field(ge=16 * KiB, le=4 * MiB)
    max_size: int = Field(ge=64 * KiB, le=16 * MiB)
    normalization: int = Field(default=1, ge=0, le=3)

    @model_validator(mode="after")
    def _ordered(self) -> ChunkerParams:
        if not self.min_size <= self.avg_size <= self.max_size:
            raise ValueError("chunker sizes must satisfy min_size <= avg_size <= max_size")
        return self

    @classmethod
    def for_average(cls, avg_size: int) -> ChunkerParams:
        """The house ratios: minimum a quarter, maximum four times the average."""
        return cls(min_size=avg_size // 4, avg_size=avg_size, max_size=avg_size * 4)


class CompressionParams(_Model):
    """zstd at ``level``; a blob is stored compressed only when that makes it smaller."""

    algorithm: Literal["zstd"] = "zstd"
    level: int = Field(default=3, ge=1, le=19)


class KdfParams(_Model):
    """scrypt parameters and salt (base64) that turn the password into the wrapping key."""

    algorithm: Literal["scrypt"] = "scrypt"
    n: int = Field(ge=2**10, le=2**17)
    r: int = Field(default=8, ge=1, le=32)
    p: int = Field(default=1, ge=1, le=16)
    salt: str


class EncryptionParams(_Model):
    """AES-256-GCM with a random master key, wrapped (nonce + ciphertext, base64) under the
    scrypt-derived key."""

    algorithm: Literal["aes-256-gcm"] = "aes-256-gcm"
    kdf: KdfParams
    wrapped_master_key: str


PackIdHash = Literal["sha256", "blake3"]
"""Hashes a pack id can be made with (hex digest of the whole pack object)."""


class RepositoryConfig(_Model):
    """The repository's ``config`` object."""

    format: Literal["hyperv-backup-repository"] = "hyperv-backup-repository"
    version: int = FORMAT_VERSION
    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    created: datetime
    chunker: ChunkerParams
    pack_size: int = Field(ge=1 * MiB, le=128 * MiB)
    compression: CompressionParams = CompressionParams()
    pack_id_hash: PackIdHash = Field(
        default="sha256",
        description="How a pack's name is computed from its content: BLAKE3 (2.5x faster) "
        "in repositories created now, SHA-256 in those created before it was recorded.",
    )
    encryption: EncryptionParams | None = None
    id_key: str | None = Field(
        default=None, description="Base64 chunk-id key; only in unencrypted repositories."
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> RepositoryConfig:
        if (self.encryption is None) == (self.id_key is None):
            raise ValueError("a repository config has either encryption or an id_key, not both")
        return self

    @property
    def encrypted(self) -> bool:
        """True when a password protects the repository."""
        return self.encryption is not None
