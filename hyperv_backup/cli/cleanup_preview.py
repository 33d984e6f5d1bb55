"""``cleanup --dry-run``: what a cleanup would undo on the host, changing nothing there.

The same two sources as :meth:`~hyperv_backup.backup.BackupJob.cleanup`, in the same order:
this machine's journal (what dead runs recorded and never released), then the host's
``get-backup-leftovers`` answer (a read-only script: anything named ``hyperv-backup-*``).
A resource both know is listed once, under the journal (a journalled staging folder
covers its job folder, which a cleanup removes with it once empty). The per-host lock is
taken, as by a real cleanup, so a backup running now is not mistaken for a dead one.
"""

from __future__ import annotations

import ntpath
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from hyperv_backup.config import ConnectionSettings
from hyperv_backup.host import HyperVHost
from hyperv_backup.journal import UNDO_ORDER, HostLock, Journal, JournalEntry, default_state_dir
from hyperv_backup.policy import BackupPolicy
from hyperv_backup.ps_scripts import SCRIPTS, GetBackupLeftoversParams
from hyperv_backup.ps_scripts.contracts import STAGING_SHARE_PATTERN, Leftovers

__all__ = ["CleanupPreview", "PlannedUndo", "preview_cleanup"]


@dataclass(frozen=True)
class PlannedUndo:
    """One thing a cleanup would undo, and where it learned of it."""

    source: Literal["journal", "host"]
    kind: str
    vm_name: str | None
    job_id: str | None
    action: str


@dataclass
class CleanupPreview:
    """What a cleanup would do: ``would_undo`` in order; ``left_alone``: ``hyperv-backup-*``
    shares that are not names this program makes (a cleanup leaves them be)."""

    would_undo: list[PlannedUndo]
    left_alone: list[str]

    def document(self) -> dict[str, object]:
        """The ``--json`` document."""
        return {
            "dry_run": True,
            "would_undo": [asdict(item) for item in self.would_undo],
            "left_alone": self.left_alone,
        }


def preview_cleanup(
    settings: ConnectionSettings, policy: BackupPolicy, state_dir: Path | None
) -> CleanupPreview:
    """Look, touching nothing on the host: :class:`~hyperv_backup.errors.LockedError` while
    another job of this machine works on the host, other errors as a cleanup would raise."""
    state = state_dir or default_state_dir()
    with HostLock(state, settings.host), HyperVHost(settings) as host:
        host.ensure_supported()
        pending = Journal(state, settings.host).pending()
        params = GetBackupLeftoversParams(
            prefix=policy.name_prefix, staging_roots=[policy.staging_root]
        )
        leftovers: Leftovers = host.runner.run(SCRIPTS["get-backup-leftovers"], params)
    pending.sort(key=lambda e: UNDO_ORDER.index(e.kind))
    planned = [_from_journal(entry) for entry in pending]
    left_alone: list[str] = []
    known = _known_to_journal(pending)
    # The sweep's order: shares, checkpoints, staging folders.
    for share in leftovers.staging_shares:
        if not re.fullmatch(STAGING_SHARE_PATTERN, share):
            left_alone.append(share)
        elif ("share", share.casefold()) not in known:
            planned.append(PlannedUndo("host", "share", None, None, f"remove share {share}"))
    for checkpoint in leftovers.checkpoints:
        # A job's checkpoints share one name: by name, only with the VM's id.
        named = ("checkpoint", str(checkpoint.vm_id).casefold(), checkpoint.name.casefold())
        if not {("checkpoint", str(checkpoint.id).casefold()), named} & known:
            planned.append(
                PlannedUndo(
                    "host",
                    "checkpoint",
                    checkpoint.vm_name,
                    None,
                    f"remove checkpoint {checkpoint.name!r} of {checkpoint.vm_name!r}",
                )
            )
    for folder in leftovers.staging_folders:
        if ("staging", folder.rstrip("\\").casefold()) not in known:
            planned.append(
                PlannedUndo("host", "staging", None, None, f"remove staging folder {folder}")
            )
    return CleanupPreview(planned, left_alone)


def _known_to_journal(pending: list[JournalEntry]) -> set[tuple[str, ...]]:
    """What the journal's entries name, to keep the sweep from listing it twice."""
    known: set[tuple[str, ...]] = set()
    for entry in pending:
        data = entry.data
        if entry.kind == "share" and data.get("name"):
            known.add(("share", str(data["name"]).casefold()))
        elif entry.kind == "checkpoint":
            if data.get("checkpoint_id"):
                known.add(("checkpoint", str(data["checkpoint_id"]).casefold()))
            if data.get("checkpoint_name") and entry.vm_id:
                name = str(data["checkpoint_name"]).casefold()
                known.add(("checkpoint", entry.vm_id.casefold(), name))
        elif entry.kind == "staging" and data.get("path"):
            path = str(data["path"]).rstrip("\\").casefold()
            known.add(("staging", path))
            # <root>\hyperv-backup-<job>\<VM id>: removing it removes the emptied job
            # folder too, which the sweep would otherwise find.
            known.add(("staging", ntpath.dirname(path)))
    return known


def _from_journal(entry: JournalEntry) -> PlannedUndo:
    vm, job, data = entry.vm_name or "?", entry.job_id, entry.data
    if entry.kind == "paused_vm":
        action = f"resume VM {vm!r} (paused by job {job})"
    elif entry.kind == "share":
        action = f"remove share {data.get('name', '?')} of {vm!r} (job {job})"
    elif entry.kind == "shadow":
        count = len(data.get("shadows", []))
        action = f"remove {count} shadow cop{'y' if count == 1 else 'ies'} of {vm!r} (job {job})"
    elif entry.kind == "checkpoint":
        name = data.get("checkpoint_name", data.get("checkpoint_id", "?"))
        action = f"remove backup checkpoint {name!r} of {vm!r} and await its merge (job {job})"
    elif entry.kind == "staging":
        action = f"remove staging folder {data.get('path', '(never created)')} (job {job})"
    else:
        action = f"resume replication of {vm!r} (suspended by job {job})"
    return PlannedUndo("journal", entry.kind, entry.vm_name, entry.job_id, action)
