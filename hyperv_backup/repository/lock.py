"""Repository locks: shared for backups, exclusive for forget/prune, with expiry.

Objects under ``locks/`` (sealed like everything else, so an encrypted repository does not
reveal host names)::

    locks/<random id>    a shared lock: a backup is appending (many may at once)
    locks/exclusive      the exclusive lock: forget/prune is deleting

A holder refreshes its lock every ``refresh_every`` (5 minutes) from a background thread; a
lock not refreshed for ``stale_after`` (30 minutes) — or whose process is gone, when it was
taken on this machine — is stale and ignored: a killed backup never blocks prune for long.

Appends never conflict (every object name is a content hash or random), so shared locks
only need to be seen by an exclusive taker: each side writes its own lock first and then
looks for the other kind, so of two racing processes at least one sees the other and backs
off. Exclusive takers exclude each other with the target's conditional writes: create
``locks/exclusive`` only if absent, and take over a stale one only by compare-and-swap on
its etag. A target that cannot enforce conditional writes (some S3-compatible servers
silently ignore them) gets no exclusive lock unless the caller says ``assume_single_writer``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, ConfigDict

from hyperv_backup.errors import HyperVBackupError, LockedError, RepositoryError
from hyperv_backup.repository.codec import Codec
from hyperv_backup.targets.base import Target

__all__ = [
    "DEFAULT_REFRESH_EVERY",
    "DEFAULT_STALE_AFTER",
    "EXCLUSIVE_LOCK_KEY",
    "LOCK_PREFIX",
    "LockInfo",
    "RepositoryLock",
    "acquire_exclusive",
    "acquire_shared",
    "read_locks",
]

logger = logging.getLogger(__name__)

LOCK_PREFIX = "locks/"
EXCLUSIVE_LOCK_KEY = "locks/exclusive"
DEFAULT_STALE_AFTER = timedelta(minutes=30)
DEFAULT_REFRESH_EVERY = timedelta(minutes=5)
_KIND = "lock"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _process_is_gone(pid: int) -> bool:
    # Only on POSIX: on Windows os.kill would terminate the process instead of probing it.
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class LockInfo(BaseModel):
    """Who holds a lock, for what, since when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    exclusive: bool
    purpose: str
    host: str
    pid: int
    created: datetime
    refreshed: datetime

    @classmethod
    def new(cls, *, exclusive: bool, purpose: str) -> LockInfo:
        """A lock for this process."""
        now = _now()
        return cls(
            id=secrets.token_hex(16),
            exclusive=exclusive,
            purpose=purpose,
            host=socket.gethostname(),
            pid=os.getpid(),
            created=now,
            refreshed=now,
        )

    def is_stale(self, stale_after: timedelta = DEFAULT_STALE_AFTER) -> bool:
        """Not refreshed in time, or its process on this machine is gone."""
        if _now() - self.refreshed > stale_after:
            return True
        return (
            self.host == socket.gethostname()
            and self.pid != os.getpid()
            and _process_is_gone(self.pid)
        )

    def describe(self) -> str:
        """``backup on hv-mgmt (pid 4242) since 2026-11-26 07:15:00+00:00``."""
        return (
            f"{self.purpose} on {self.host} (pid {self.pid}) "
            f"since {self.created.isoformat(' ', 'seconds')}, "
            f"last refreshed {self.refreshed.isoformat(' ', 'seconds')}"
        )


def read_locks(target: Target, codec: Codec) -> list[tuple[str, LockInfo | None]]:
    """Every lock object: (key, info), info None when it cannot be read."""
    found: list[tuple[str, LockInfo | None]] = []
    for entry in target.list(LOCK_PREFIX):
        try:
            data = target.get(entry.key)
        except FileNotFoundError:
            continue  # released meanwhile
        try:
            info: LockInfo | None = LockInfo.model_validate_json(codec.unseal(_KIND, data))
        except (HyperVBackupError, ValueError):
            info = None
        found.append((entry.key, info))
    return found


class RepositoryLock:
    """A lock this process holds; a daemon thread refreshes it until :meth:`release`."""

    def __init__(
        self,
        target: Target,
        codec: Codec,
        key: str,
        info: LockInfo,
        *,
        etag: str | None,
        stale_after: timedelta,
        refresh_every: timedelta,
    ) -> None:
        self._target = target
        self._codec = codec
        self.key = key
        self.info = info
        self._etag = etag
        self._stale_after = stale_after
        self._refresh_every = refresh_every
        self._last_refresh = time.monotonic()
        self._lost: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._keep_fresh, name="hyperv-backup-lock", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> RepositoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _keep_fresh(self) -> None:
        while not self._stop.wait(self._refresh_every.total_seconds()):
            try:
                self.refresh()
            except HyperVBackupError as err:
                logger.warning("could not refresh the repository lock: %s", err)

    def refresh(self) -> None:
        """Push the lock's expiry forward."""
        with self._mutex:
            if self._lost is not None:
                raise LockedError(self._lost)
            info = self.info.model_copy(update={"refreshed": _now()})
            data = self._codec.seal(_KIND, info.model_dump_json().encode())
            if self.info.exclusive and self._etag is not None:
                if not self._target.replace(self.key, data, if_etag=self._etag):
                    self._lost = (
                        "the exclusive repository lock was taken over by another process "
                        "(it was not refreshed in time); stopped to be safe"
                    )
                    raise LockedError(self._lost)
                stat = self._target.stat(self.key)
                self._etag = stat.etag if stat is not None else None
            else:
                self._target.put(self.key, data)
            self.info = info
            self._last_refresh = time.monotonic()

    def ensure_fresh(self) -> None:
        """Raise :class:`LockedError` unless the lock is surely still ours and unexpired."""
        with self._mutex:
            if self._lost is not None:
                raise LockedError(self._lost)
            margin = self._stale_after - self._refresh_every
            if time.monotonic() - self._last_refresh > margin.total_seconds():
                raise LockedError(
                    "the repository lock could not be refreshed for too long, so another "
                    "process may consider it expired; stopped to be safe — run it again"
                )

    def release(self) -> None:
        """Stop refreshing and remove the lock object (if it is still ours)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        with self._mutex:
            if self._lost is not None:
                return
            self._lost = "the repository lock was released"
            try:
                if self.info.exclusive and self._etag is not None:
                    current = self._target.stat(self.key)
                    if current is None or current.etag != self._etag:
                        return  # someone took it over: theirs now
                self._target.delete(self.key)
            except HyperVBackupError as err:
                logger.warning("could not remove the repository lock %s: %s", self.key, err)


def _seal(codec: Codec, info: LockInfo) -> bytes:
    return codec.seal(_KIND, info.model_dump_json().encode())


def acquire_shared(
    target: Target,
    codec: Codec,
    purpose: str,
    *,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    refresh_every: timedelta = DEFAULT_REFRESH_EVERY,
) -> RepositoryLock:
    """A shared lock; :class:`LockedError` while a live exclusive lock exists."""
    info = LockInfo.new(exclusive=False, purpose=purpose)
    key = LOCK_PREFIX + info.id
    target.put(key, _seal(codec, info))
    lock = RepositoryLock(
        target, codec, key, info, etag=None, stale_after=stale_after, refresh_every=refresh_every
    )
    try:
        for other_key, other in read_locks(target, codec):
            if other_key != EXCLUSIVE_LOCK_KEY:
                continue
            if other is None:
                raise LockedError(
                    f"the repository holds an exclusive lock ({EXCLUSIVE_LOCK_KEY}) that cannot "
                    "be read, so it may be in use; if no forget/prune runs, remove it"
                )
            if not other.is_stale(stale_after):
                raise LockedError(
                    f"the repository is locked exclusively by {other.describe()}; "
                    "backups wait until it finishes (retry later)"
                )
    except BaseException:
        lock.release()
        raise
    return lock


def acquire_exclusive(
    target: Target,
    codec: Codec,
    purpose: str,
    *,
    assume_single_writer: bool = False,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    refresh_every: timedelta = DEFAULT_REFRESH_EVERY,
) -> RepositoryLock:
    """The exclusive lock; :class:`LockedError` while any other live lock exists."""
    conditional = target.capabilities.conditional_writes
    if not conditional and not assume_single_writer:
        raise RepositoryError(
            f"{purpose} needs an exclusive lock, but {target!r} does not enforce conditional "
            "writes (create-if-absent, compare-and-swap), so two processes could both believe "
            "they hold it and delete data the other needs. If you are certain no other "
            "process uses this repository (no backup, no forget/prune) while it runs, pass "
            "assume_single_writer=True (CLI: --assume-single-writer)."
        )
    info = LockInfo.new(exclusive=True, purpose=purpose)
    data = _seal(codec, info)
    created = target.put(EXCLUSIVE_LOCK_KEY, data, if_absent=True) if conditional else False
    if not created:
        current = target.stat(EXCLUSIVE_LOCK_KEY)
        holder = _read_one(target, codec, EXCLUSIVE_LOCK_KEY) if current is not None else None
        if current is not None and (holder is None or not holder.is_stale(stale_after)):
            who = holder.describe() if holder is not None else "an unreadable lock"
            raise LockedError(f"{purpose} refused: the repository is locked exclusively by {who}")
        if current is None or not conditional:
            # Gone meanwhile, or (single writer assumed) stale: simply write ours.
            if conditional and not target.put(EXCLUSIVE_LOCK_KEY, data, if_absent=True):
                raise LockedError(f"{purpose} refused: another process took the lock just now")
            if not conditional:
                target.put(EXCLUSIVE_LOCK_KEY, data)
        elif current.etag is None or not target.replace(
            EXCLUSIVE_LOCK_KEY, data, if_etag=current.etag
        ):
            raise LockedError(f"{purpose} refused: another process took the stale lock just now")
    stat = target.stat(EXCLUSIVE_LOCK_KEY)
    lock = RepositoryLock(
        target,
        codec,
        EXCLUSIVE_LOCK_KEY,
        info,
        etag=stat.etag if (stat is not None and conditional) else None,
        stale_after=stale_after,
        refresh_every=refresh_every,
    )
    try:
        for other_key, other in read_locks(target, codec):
            if other_key == EXCLUSIVE_LOCK_KEY:
                continue
            if other is None:
                raise LockedError(
                    f"{purpose} refused: the lock {other_key} cannot be read, so a backup may "
                    "be running; if none is, remove that object"
                )
            if not other.is_stale(stale_after):
                raise LockedError(
                    f"{purpose} refused: a backup holds the repository ({other.describe()}); "
                    "run it when no backup is running"
                )
    except BaseException:
        lock.release()
        raise
    return lock


def _read_one(target: Target, codec: Codec, key: str) -> LockInfo | None:
    try:
        return LockInfo.model_validate_json(codec.unseal(_KIND, target.get(key)))
    except FileNotFoundError:
        return None
    except (HyperVBackupError, ValueError):
        return None
