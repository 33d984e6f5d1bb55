"""Repository keys: a random master key, wrapped under the password, and the keys it yields.

- **master key**: 32 random bytes made at init. With a password it is stored only wrapped:
  AES-256-GCM (random 96-bit nonce) under a key-encryption key that scrypt derives from the
  password and a random salt; the repository id is the associated data, so a config copied
  onto another repository does not open.
- **derived keys** (HKDF-SHA256 of the master key, one ``info`` label each): the chunk-id key
  (keyed BLAKE3: ids reveal nothing about content to someone without the key) and the data
  key (AES-256-GCM of blobs, pack headers, indexes, snapshots and locks). Separate keys, so
  neither use can leak the other.
- **no password**: no encryption, but the chunk-id key is still random, stored in config.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hyperv_backup.repository.config import EncryptionParams, KdfParams

__all__ = ["DEFAULT_SCRYPT_N", "KeySet", "KeyUnwrapError", "lock_master_key", "unlock_master_key"]

DEFAULT_SCRYPT_N = 2**15
"""32 MiB and ~0.1 s per attempt with r=8: slow for guessing, quick to open a repository."""

_KEY_BYTES = 32
_NONCE_BYTES = 12


class KeyUnwrapError(Exception):
    """The password did not unwrap the master key (the caller words the user's error)."""


@dataclass(frozen=True, repr=False)
class KeySet:
    """The keys a repository session works with; ``data_key`` None means no encryption."""

    id_key: bytes
    data_key: bytes | None

    def __repr__(self) -> str:
        # Keys never reach a log or a traceback.
        return f"KeySet(encrypted={self.data_key is not None})"

    @classmethod
    def from_master_key(cls, master_key: bytes) -> KeySet:
        """Both working keys of an encrypted repository."""
        return cls(
            id_key=_derive(master_key, b"hyperv-backup/chunk-id/v1"),
            data_key=_derive(master_key, b"hyperv-backup/data/v1"),
        )

    @classmethod
    def unencrypted(cls, id_key: bytes) -> KeySet:
        """An unencrypted repository: only the chunk-id key."""
        return cls(id_key=id_key, data_key=None)


def _derive(master_key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=None, info=label).derive(
        master_key
    )


def _password_bytes(password: str | bytes) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else password


def _wrapping_key(password: str | bytes, kdf: KdfParams) -> bytes:
    return hashlib.scrypt(
        _password_bytes(password),
        salt=base64.b64decode(kdf.salt),
        n=kdf.n,
        r=kdf.r,
        p=kdf.p,
        maxmem=128 * kdf.r * kdf.n * kdf.p + 16 * 1024 * 1024,
        dklen=_KEY_BYTES,
    )


def _associated_data(repository_id: str) -> bytes:
    return b"hyperv-backup master key " + repository_id.encode("ascii")


def lock_master_key(
    repository_id: str, password: str | bytes, *, scrypt_n: int = DEFAULT_SCRYPT_N
) -> tuple[bytes, EncryptionParams]:
    """A new random master key and its wrapped form for the config."""
    master_key = secrets.token_bytes(_KEY_BYTES)
    kdf = KdfParams(n=scrypt_n, salt=base64.b64encode(secrets.token_bytes(16)).decode())
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(_wrapping_key(password, kdf)).encrypt(
        nonce, master_key, _associated_data(repository_id)
    )
    wrapped = base64.b64encode(nonce + sealed).decode()
    return master_key, EncryptionParams(kdf=kdf, wrapped_master_key=wrapped)


def unlock_master_key(
    repository_id: str, password: str | bytes, encryption: EncryptionParams
) -> bytes:
    """The master key, or :class:`KeyUnwrapError` when the password is not the right one."""
    blob = base64.b64decode(encryption.wrapped_master_key)
    nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
    try:
        return AESGCM(_wrapping_key(password, encryption.kdf)).decrypt(
            nonce, sealed, _associated_data(repository_id)
        )
    except InvalidTag:
        raise KeyUnwrapError from None
