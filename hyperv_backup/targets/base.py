"""The one small protocol every storage target implements.

Keys are ``/``-separated relative names (``data/ab/ab12…``, ``snapshots/…``). Objects are
written whole and never modified in place (the repository only adds and deletes), except lock
objects, which are replaced with a compare-and-swap.

Retention (S3 Object Lock) is per write: an object is retained only when its writer passes
``retain_until``. A target never retains on its own, because some objects must stay
replaceable and deletable (locks, index objects); the retention its settings ask for is in
:attr:`TargetCapabilities.default_retention` for writers to apply where it belongs (packs,
snapshots, plain backup files) — :func:`resolve_retention` does that choice for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, Protocol, runtime_checkable

from hyperv_backup.errors import TargetError

__all__ = [
    "DEFAULT_ABANDONED_AFTER",
    "ObjectInfo",
    "Target",
    "TargetCapabilities",
    "resolve_retention",
    "retain_until_for",
]

DEFAULT_ABANDONED_AFTER = timedelta(days=1)
"""An unfinished write older than this is taken as abandoned (its process was killed): no
live writer takes a day over one object of a backup."""


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
    honoured (S3 Object Lock, compliance or governance mode). ``default_retention``: how
    long the target's settings ask backups to be kept immutable (S3 ``object_lock_days``);
    the target does not apply it by itself — writers pass ``retain_until`` for the objects
    that must be immutable (see :func:`resolve_retention`).
    """

    conditional_writes: bool
    object_lock: bool = False
    default_retention: timedelta | None = None


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
        data: bytes | memoryview,
        *,
        if_absent: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        """Store ``data`` at ``key``, atomically (never a half-written object).

        With ``if_absent`` the write happens only if ``key`` does not exist; returns False
        when it existed (nothing written). Otherwise always True. ``retain_until`` makes the
        object immutable until then where the target can (``capabilities.object_lock``) and
        is ignored elsewhere; without it the object is never retained.
        """
        ...

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        size: int,
        *,
        retain_until: datetime | None = None,
    ) -> None:
        """Store exactly ``size`` bytes read from ``stream`` (large objects, multipart on S3);
        :class:`~hyperv_backup.errors.TargetError` and nothing stored if it ends sooner.
        ``retain_until`` as for :meth:`put`."""
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

    def retention(self, key: str) -> datetime | None:
        """Until when ``key`` is retained (cannot be deleted); None when it is not, or absent."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in no particular order."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; absent is not an error."""
        ...

    def abort_incomplete_uploads(self, older_than: timedelta = DEFAULT_ABANDONED_AFTER) -> int:
        """Remove what interrupted writes of other (killed) processes left — unfinished S3
        multipart uploads, temporary files — begun more than ``older_than`` ago; how many.

        Younger ones may belong to a writer still running: only a caller that knows no other
        process writes (e.g. under an exclusive lock) should pass ``timedelta(0)``.
        """
        ...

    def close(self) -> None:
        """Release connections; abort what is unfinished (e.g. multipart uploads)."""
        ...


def resolve_retention(target: Target, retain_days: int | None) -> timedelta | None:
    """The retention to apply to backups written to ``target``: ``retain_days`` when given
    (0: none), else the target's ``default_retention``. :class:`TargetError` when retention
    is asked for but the target cannot keep it (no Object Lock)."""
    if retain_days is not None and retain_days < 0:
        raise TargetError(f"retain_days must be 0 or more, not {retain_days}")
    retention = (
        target.capabilities.default_retention
        if retain_days is None
        else (timedelta(days=retain_days) if retain_days else None)
    )
    if retention is not None and not target.capabilities.object_lock:
        raise TargetError(
            f"backups on {target!r} cannot be retained for {retention.days} days: the target "
            "has no Object Lock (use an S3 bucket with Object Lock enabled, or no retention)"
        )
    return retention


def retain_until_for(retention: timedelta | None) -> datetime | None:
    """The retain-until date for an object written now, or None without retention."""
    return None if retention is None else datetime.now(timezone.utc) + retention
