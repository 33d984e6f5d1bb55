"""Retention (forget), prune and the locks that keep them away from running backups."""

from __future__ import annotations

import io
import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hyperv_backup.errors import ConfigError, LockedError, RepositoryError
from hyperv_backup.repository import Repository, RetentionPolicy
from hyperv_backup.repository.lock import LockInfo, acquire_exclusive
from hyperv_backup.results import VMStatus
from hyperv_backup.targets import LocalTarget, TargetCapabilities
from tests.repository_helpers import SMALL, MiB, back_up, next_day, sha256, vm_info, vm_like

MIDNIGHT = datetime(2026, 3, 1, tzinfo=timezone.utc)


def nightly(repo: Repository, name: str, days: int, *, disk_mib: int = 1) -> list[str]:
    """One backup a night at 01:00 (and a second one at 13:00 on even days)."""
    disk = vm_like(disk_mib * MiB, seed=len(name))
    locations = []
    for day in range(days):
        disk = next_day(disk, seed=day)[: disk_mib * MiB]
        moments = [MIDNIGHT + timedelta(days=day, hours=1)]
        if day % 2 == 0:
            moments.append(MIDNIGHT + timedelta(days=day, hours=13))
        for moment in moments:
            locations.append(
                back_up(repo, vm_info(name), {"Virtual Hard Disks/d.vhdx": disk}, started_at=moment)
            )
    return locations


def test_forget_keeps_by_rule_per_vm_and_says_why(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    nightly(repo, "web01", 10)
    nightly(repo, "sql01", 3)
    policy = RetentionPolicy(keep_last=2, keep_daily=4, keep_weekly=3)

    preview = repo.forget(policy, zone=timezone.utc)  # dry run by default
    assert len(repo.snapshots()) == 15 + 5  # nothing deleted

    kept = {(d.snapshot.vm_name, d.snapshot.time.isoformat()): d.reasons for d in preview.kept}
    web_kept = sorted(t for (vm, t) in kept if vm == "web01")
    assert web_kept == [
        "2026-03-01T13:00:00+00:00",  # weekly: newest of 2026-W09 (Sunday 1 March)
        "2026-03-07T13:00:00+00:00",  # daily
        "2026-03-08T01:00:00+00:00",  # daily, and newest of 2026-W10
        "2026-03-09T13:00:00+00:00",  # last 2, daily (not 09 01:00: same day, older)
        "2026-03-10T01:00:00+00:00",  # last 2, daily, newest of 2026-W11
    ]
    assert kept[("web01", "2026-03-10T01:00:00+00:00")] == (
        "one of the last 2",
        "daily (2026-03-10)",
        "weekly (2026-W11)",
    )
    assert kept[("web01", "2026-03-01T13:00:00+00:00")] == ("weekly (2026-W09)",)
    assert kept[("web01", "2026-03-08T01:00:00+00:00")] == (
        "daily (2026-03-08)",
        "weekly (2026-W10)",
    )
    assert len([d for d in preview.kept if d.snapshot.vm_name == "sql01"]) == 4  # per VM

    done = repo.forget(policy, dry_run=False, zone=timezone.utc)
    assert {d.snapshot.id for d in done.removed} == {d.snapshot.id for d in preview.removed}
    assert len(repo.snapshots()) == len(preview.kept)


def test_the_newest_successful_backup_is_kept_whatever_the_policy(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    disk = {"Virtual Hard Disks/d.vhdx": b"disk"}
    good = back_up(repo, vm_info("erp"), disk, started_at=MIDNIGHT)
    back_up(repo, vm_info("erp"), disk, started_at=MIDNIGHT + timedelta(hours=1))
    back_up(
        repo,
        vm_info("erp"),
        disk,
        started_at=MIDNIGHT + timedelta(hours=2),
        status=VMStatus.FAILED,
    )
    repo.forget(RetentionPolicy(keep_last=1), dry_run=False)

    remaining = repo.snapshots()
    assert [s.successful for s in remaining] == [False, True]
    newest_good = next(s for s in remaining if s.successful)
    assert newest_good.time == MIDNIGHT + timedelta(hours=1)
    assert good.split(":")[1] not in {s.id for s in remaining}
    with pytest.raises(ConfigError, match="keeps nothing"):
        repo.forget(RetentionPolicy())


def test_forget_and_prune_refuse_while_a_backup_holds_the_lock(tmp_path: Path) -> None:
    writer_repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    nightly(writer_repo, "web01", 3)
    capture = writer_repo.open_vm("job-9", vm_info("web01"), host="hv01")  # backup running
    capture.write_file("Virtual Hard Disks/d.vhdx", io.BytesIO(vm_like(MiB, seed=1)))

    admin = Repository.open(LocalTarget(tmp_path / "repo"))
    with pytest.raises(LockedError, match=r"a backup holds the repository \(backup of job job-9"):
        admin.forget(RetentionPolicy(keep_last=1), dry_run=False)
    with pytest.raises(LockedError, match=socket.gethostname()):
        admin.prune(dry_run=False)
    assert len(admin.snapshots()) == 5
    assert admin.forget(RetentionPolicy(keep_last=1)).dry_run  # a dry run is fine meanwhile

    capture.abort()  # the backup ends: its lock goes
    assert len(admin.forget(RetentionPolicy(keep_last=1), dry_run=False).removed) == 4


def test_backups_share_the_repository_but_are_refused_during_prune(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    other = Repository.open(LocalTarget(tmp_path / "repo"))
    one = repo.open_vm("a", vm_info("a"), host="hv01")
    two = other.open_vm("b", vm_info("b"), host="hv01")  # shared locks coexist
    one.abort()
    two.abort()
    with acquire_exclusive(repo.target, repo._codec, "prune"):
        with pytest.raises(LockedError, match="locked exclusively by prune"):
            other.open_vm("c", vm_info("c"), host="hv01")
        with pytest.raises(LockedError, match=r"prune refused: .* locked exclusively by prune"):
            other.prune(dry_run=False)  # exclusive takers exclude each other too
        with pytest.raises(LockedError), other.shared_lock("backup job 7"):
            pass  # a job that takes the lock first fails before touching any VM


def test_a_dead_backups_lock_expires(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    nightly(repo, "web01", 2)
    long_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    stale = LockInfo(
        id="dead",
        exclusive=False,
        purpose="backup of job killed",
        host="other-host",
        pid=4242,
        created=long_ago,
        refreshed=long_ago,
    )
    repo.target.put("locks/dead", repo._codec.seal("lock", stale.model_dump_json().encode()))
    fresh = stale.model_copy(update={"id": "live", "refreshed": datetime.now(timezone.utc)})
    repo.target.put("locks/live", repo._codec.seal("lock", fresh.model_dump_json().encode()))
    with pytest.raises(LockedError, match="other-host"):
        repo.prune(dry_run=False)

    repo.target.delete("locks/live")
    # A prune that died holding the exclusive lock: taken over once stale.
    dead_prune = stale.model_copy(update={"id": "x", "exclusive": True, "purpose": "prune"})
    repo.target.put(
        "locks/exclusive", repo._codec.seal("lock", dead_prune.model_dump_json().encode())
    )
    assert repo.prune(dry_run=False).dry_run is False  # both stale locks are ignored
    assert not repo.target.stat("locks/exclusive")  # ours replaced it and was released
    assert repo.unlock() == ["locks/dead"]


def test_a_lock_of_a_gone_process_on_this_machine_is_stale(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    now = datetime.now(timezone.utc)
    pid = os.getpid()
    while True:  # find a pid that does not exist
        pid += 1
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except OSError:
            continue
    gone = LockInfo(
        id="gone",
        exclusive=False,
        purpose="backup",
        host=socket.gethostname(),
        pid=pid,
        created=now,
        refreshed=now,
    )
    assert gone.is_stale()
    assert not gone.model_copy(update={"pid": os.getpid()}).is_stale()
    repo.target.put("locks/gone", repo._codec.seal("lock", gone.model_dump_json().encode()))
    repo.prune(dry_run=False)


def test_prune_frees_forgotten_data_and_what_remains_restores_exactly(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = Repository.init(LocalTarget(root), **SMALL)
    first = back_up(repo, vm_info("old"), {"Virtual Hard Disks/old.vhdx": vm_like(3 * MiB, 21)})
    keep_disk = vm_like(3 * MiB, 22)
    keep = back_up(repo, vm_info("app"), {"Virtual Hard Disks/app.vhdx": keep_disk})
    size_before = sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())
    repo.target.delete("snapshots/" + first.split(":")[1])  # as forget would

    preview = repo.prune()
    assert preview.dry_run
    assert preview.packs_deleted
    assert sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file()) == size_before

    report = repo.prune(dry_run=False)
    size_after = sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())
    assert size_before - size_after == report.bytes_freed > 2 * MiB
    check = repo.check(read_data=True)
    assert check.ok
    assert check.warnings == []
    restored = repo.restore(keep, tmp_path / "out").folder / "Virtual Hard Disks/app.vhdx"
    assert sha256(restored.read_bytes()) == sha256(keep_disk)
    assert repo.prune(dry_run=False).packs_deleted == []  # nothing left to do


def test_prune_repacks_mostly_unused_packs(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = Repository.init(LocalTarget(root), **SMALL)
    disk = vm_like(4 * MiB, 31)
    old = back_up(repo, vm_info("web"), {"Virtual Hard Disks/web.vhdx": disk})
    # The next backup shares a few chunks with the first; then the first is forgotten.
    new_disk = vm_like(3 * MiB, 32) + disk[: 256 * 1024]
    new = back_up(repo, vm_info("web"), {"Virtual Hard Disks/web.vhdx": new_disk})
    repo.target.delete("snapshots/" + old.split(":")[1])

    report = repo.prune(dry_run=False, repack_threshold=0.5)

    assert report.packs_repacked
    assert report.packs_written >= 1
    assert repo.check(read_data=True).ok
    restored = repo.restore(new, tmp_path / "out").folder / "Virtual Hard Disks/web.vhdx"
    assert restored.read_bytes() == new_disk


class NoConditionalWrites(LocalTarget):
    """A target whose server would ignore conditional writes (as some S3 servers do)."""

    @property
    def capabilities(self) -> TargetCapabilities:
        return TargetCapabilities(conditional_writes=False)


def test_exclusive_operations_refuse_without_conditional_writes_unless_told(
    tmp_path: Path,
) -> None:
    repo = Repository.init(NoConditionalWrites(tmp_path / "repo"), **SMALL)
    nightly(repo, "web01", 2)
    with pytest.raises(RepositoryError, match="does not enforce conditional writes") as caught:
        repo.prune(dry_run=False)
    assert "assume_single_writer=True" in str(caught.value)
    with pytest.raises(RepositoryError, match="does not enforce conditional writes"):
        repo.forget(RetentionPolicy(keep_last=1), dry_run=False)

    removed = repo.forget(RetentionPolicy(keep_last=1), dry_run=False, assume_single_writer=True)
    assert len(removed.removed) == 2
    assert repo.prune(dry_run=False, assume_single_writer=True).blobs_removed > 0
    assert repo.check(read_data=True).ok


def test_a_long_lived_repository_does_not_dedup_against_data_pruned_by_another(
    tmp_path: Path,
) -> None:
    scheduler = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)  # stays open for days
    disk = vm_like(2 * MiB, seed=71)
    first = back_up(scheduler, vm_info("web01"), {"Virtual Hard Disks/web01.vhdx": disk})

    admin = Repository.open(LocalTarget(tmp_path / "repo"))  # another process, in effect
    admin.target.delete("snapshots/" + first.split(":")[1])  # as a forget would
    assert admin.prune(dry_run=False).packs_deleted

    again = back_up(scheduler, vm_info("web01"), {"Virtual Hard Disks/web01.vhdx": disk})
    assert scheduler.snapshot(again).stats.new_bytes > len(disk) * 0.8  # stored anew
    assert scheduler.check(read_data=True).ok
    restored = scheduler.restore(again, tmp_path / "out").folder / "Virtual Hard Disks/web01.vhdx"
    assert restored.read_bytes() == disk


class RetainingTarget(LocalTarget):
    """A local target that reports Object Lock retention per key, as an S3 bucket would."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.until: dict[str, datetime] = {}

    @property
    def capabilities(self) -> TargetCapabilities:
        return TargetCapabilities(conditional_writes=True, object_lock=True)

    def retention(self, key: str) -> datetime | None:
        return self.until.get(key)


def test_forget_keeps_a_snapshot_only_while_its_retention_lasts(tmp_path: Path) -> None:
    target = RetainingTarget(tmp_path / "repo")
    repo = Repository.init(target, **SMALL)
    ids = [location.split(":")[1] for location in nightly(repo, "web01", 2)]  # 3 snapshots
    now = datetime.now(timezone.utc)
    target.until[f"snapshots/{ids[0]}"] = now - timedelta(hours=1)  # retention has ended
    target.until[f"snapshots/{ids[1]}"] = now + timedelta(days=3)

    report = repo.forget(RetentionPolicy(keep_last=1), dry_run=False, zone=timezone.utc)

    assert [d.snapshot.id for d in report.removed] == [ids[0]]
    [retained] = report.retained
    assert retained.snapshot.id == ids[1]
    assert retained.keep
    assert retained.retained_until == now + timedelta(days=3)
    assert retained.reasons == (
        f"retained until {(now + timedelta(days=3)).isoformat(' ', 'seconds')} "
        "(Object Lock): it cannot be deleted before then",
    )
    assert sorted(s.id for s in repo.snapshots()) == sorted(ids[1:])
