"""The resource journal and host lock on the management box."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from hyperv_backup import LockedError
from hyperv_backup.journal import HostLock, Journal


def test_pending_lists_acquired_not_released_with_updates(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "HV01.corp")
    a = journal.acquire("job1", "checkpoint", vm_name="web01", vm_id="1", checkpoint_name="cp")
    b = journal.acquire("job1", "staging", vm_name="web01")
    journal.update(a, checkpoint_id="abc")
    journal.release(b)
    pending = Journal(tmp_path, "HV01.corp").pending()  # a new process sees the same
    assert [(e.kind, e.data) for e in pending] == [
        ("checkpoint", {"checkpoint_name": "cp", "checkpoint_id": "abc"})
    ]


def test_a_torn_last_line_does_not_lose_earlier_entries(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "hv01")
    journal.acquire("job1", "paused_vm", vm_name="legacy")
    with journal.path.open("a") as out:
        out.write('{"op": "release", "id"')  # the process died mid-write
    assert [e.kind for e in journal.pending()] == ["paused_vm"]


def test_compact_keeps_only_pending(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "hv01")
    keep = journal.acquire("job1", "staging", path="C:\\s")
    for _ in range(5):
        journal.release(journal.acquire("job1", "checkpoint"))
    journal.compact()
    assert len(journal.path.read_text().splitlines()) == 1
    assert [e.id for e in journal.pending()] == [keep]


def _hold_lock(state_dir: str, ready: object, release: object) -> None:
    with HostLock(Path(state_dir), "hv01"):
        ready.set()  # type: ignore[attr-defined]
        release.wait(10)  # type: ignore[attr-defined]


def test_host_lock_refuses_a_second_job_and_names_the_holder(tmp_path: Path) -> None:
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            HostLock(tmp_path, "hv01").acquire()
    finally:
        release.set()
        holder.join(10)
    with HostLock(tmp_path, "hv01"):
        pass  # free again once the holder is gone
