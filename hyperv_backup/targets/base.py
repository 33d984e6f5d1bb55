"""The one small protocol every storage target implements.

Keys are ``/``-separated relative names (``data/ab/ab12…``, ``snapshots/…``). Objects are
written whole and never modified in place (the repository only adds and deletes), except lock
objects, which are replaced with a compare-and-swap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

__all__ = ["ObjectInfo", "Target", "TargetCapabilities"]


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object."""

    key: str
    size: int
    modified: datetime | None = None
    etag: str | None = None


@dataclass(frozen=True)
class TargetCapabilities:
    """What a target can guarantee, as established (for S3: probed) when it is opened.

    ``conditional_writes``: ``put(if_absent=True)`` and ``replace(if_etag=...)`` are enforced
    atomically by the server, so they can build a lock. ``object_lock``: ``retain_until`` is
    honoured (S3 Object Lock, compliance or governance mode).
    """

    conditional_writes: bool
    object_lock: bool = False


@runtime_checkable
class Target(Protocol):
    """Where repository objects live: a local directory, an S3 bucket (with a prefix)."""

    @property
    def capabilities(self) -> TargetCapabilities:
        """See :class:`TargetCapabilities`."""
        ...

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        """Store ``data`` at ``key``, atomically (never a half-written object).

        With ``if_absent`` the write happens only if ``key`` does not exist; returns False
        when it existed (nothing written). Otherwise always True.
        """
        ...

    def put_stream(self, key: str, stream: BinaryIO, size: int) -> None:
        """Store ``size`` bytes read from ``stream`` (large objects, multipart on S3)."""
        ...

    def replace(self, key: str, data: bytes, *, if_etag: str) -> bool:
        """Overwrite ``key`` only if its current etag is ``if_etag``; False if it changed."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object; :class:`FileNotFoundError` if absent."""
        ...

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``."""
        ...

    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size/etag, or None if absent."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in no particular order."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; absent is not an error."""
        ...

    def close(self) -> None:
        """Release connections; abort what is unfinished (e.g. multipart uploads)."""
        ...
