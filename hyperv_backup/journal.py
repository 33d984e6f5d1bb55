"""The management box's record of what a job holds on a host, so nothing is left behind.

Before a host-side resource is created (backup checkpoint, staging folder, shadow copy,
share of a shadow copy, paused VM, suspended replication) an ``acquire`` line is appended and
synced; once it is undone, a ``release`` line. Whatever is acquired and not released belongs
to a run that died — the next run (or ``hyperv-backup cleanup``) undoes it. One JSON-lines
file per host.

A per-host lock file keeps two jobs on one management box from cleaning up each other.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from hyperv_backup.errors import LockedError

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

__all__ = ["HostLock", "Journal", "JournalEntry", "ResourceKind", "default_state_dir"]

logger = logging.getLogger(__name__)

ResourceKind = Literal[
    "paused_vm", "share", "shadow", "checkpoint", "staging", "replication_suspended"
]

# The order in which a dead run's resources are undone: a paused VM is resumed first; a
# share that exposes a shadow copy goes before the shadow copy.
UNDO_ORDER: tuple[ResourceKind, ...] = (
    "paused_vm",
    "share",
    "shadow",
    "checkpoint",
    "staging",
    "replication_suspended",
)


def default_state_dir() -> Path:
    """``$HYPERV_BACKUP_STATE_DIR``, else ``$XDG_STATE_HOME/hyperv-backup``, else
    ``~/.local/state/hyperv-backup``."""
    explicit = os.environ.get("HYPERV_BACKUP_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hyperv-backup"


def _host_key(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", host.lower()) or "host"


@dataclass
class JournalEntry:
    """One resource a job acquired on the host."""

    id: str
    job_id: str
    kind: ResourceKind
    vm_name: str | None = None
    vm_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    acquired_at: str = ""


class Journal:
    """The append-only resource journal of one host."""

    def __init__(self, state_dir: Path, host: str) -> None:
        self.path = state_dir / "journal" / f"{_host_key(host)}.jsonl"
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def acquire(
        self,
        job_id: str,
        kind: ResourceKind,
        *,
        vm_name: str | None = None,
        vm_id: str | None = None,
        **data: Any,
    ) -> str:
        """Record that ``kind`` is about to be created; returns the entry id."""
        entry_id = uuid.uuid4().hex
        self._append(
            {
                "op": "acquire",
                "id": entry_id,
                "job": job_id,
                "kind": kind,
                "vm_name": vm_name,
                "vm_id": vm_id,
                "data": data,
                "at": datetime.now(timezone.utc).isoformat(),
            }
        )
        return entry_id

    def update(self, entry_id: str, **data: Any) -> None:
        """Add what became known after creation (e.g. the checkpoint id)."""
        self._append({"op": "update", "id": entry_id, "data": data})

    def release(self, entry_id: str) -> None:
        """Record that the resource is gone."""
        self._append({"op": "release", "id": entry_id})

    def pending(self) -> list[JournalEntry]:
        """Resources acquired and not released, oldest first."""
        entries: dict[str, JournalEntry] = {}
        with self._lock:
            if not self.path.exists():
                return []
            lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                op, entry_id = record["op"], record["id"]
            except (ValueError, KeyError, TypeError):
                # A torn last line from a killed run: everything before it still counts.
                logger.warning("%s:%d: unreadable journal line skipped", self.path, number)
                continue
            if op == "acquire":
                entries[entry_id] = JournalEntry(
                    id=entry_id,
                    job_id=record.get("job", ""),
                    kind=record["kind"],
                    vm_name=record.get("vm_name"),
                    vm_id=record.get("vm_id"),
                    data=dict(record.get("data") or {}),
                    acquired_at=record.get("at", ""),
                )
            elif op == "update" and entry_id in entries:
                entries[entry_id].data.update(record.get("data") or {})
            elif op == "release":
                entries.pop(entry_id, None)
        return list(entries.values())

    def compact(self) -> None:
        """Rewrite the file with only the pending entries (atomically)."""
        pending = self.pending()
        with self._lock:
            if not self.path.exists():
                return
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("w", encoding="utf-8") as out:
                for e in pending:
                    record = {
                        "op": "acquire",
                        "id": e.id,
                        "job": e.job_id,
                        "kind": e.kind,
                        "vm_name": e.vm_name,
                        "vm_id": e.vm_id,
                        "data": e.data,
                        "at": e.acquired_at,
                    }
                    out.write(json.dumps(record) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                # The point of the journal is to survive SIGKILL and power loss.
                os.fsync(out.fileno())


class HostLock:
    """An exclusive, per-host lock on this management box (released when the process dies)."""

    def __init__(self, state_dir: Path, host: str) -> None:
        self.path = state_dir / "locks" / f"{_host_key(host)}.lock"
        self.host = host
        self._fd: int | None = None

    def __enter__(self) -> HostLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockedError` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_file(fd)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"Another hyperv-backup job on this machine ({holder}) is working on host "
                f"{self.host}. Wait for it to finish; running two at once would let one "
                "clean up the other's checkpoints."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock. Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the lock


def _lock_file(fd: int) -> None:
    """Non-blocking exclusive lock on ``fd``; OSError when another process holds it."""
    if sys.platform == "win32":  # a Windows management box
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
