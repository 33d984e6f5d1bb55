"""The repository on real S3 servers: moto (enforces conditional writes, has Object Lock) and
``rclone serve s3`` (ignores conditional writes), with a fault-injecting proxy in between
for server errors, and a backup process killed in the middle of a multipart upload.

Objects stay small (chunks of 64 KiB, packs of 1 MiB unless a test needs multipart packs):
moto keeps everything in memory.
"""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hyperv_backup.errors import LockedError, RepositoryError, TargetError
from hyperv_backup.repository import Repository, RetentionPolicy
from hyperv_backup.targets import LocalTarget, S3Target
from tests.repository_helpers import SMALL, MiB, back_up, next_day, vm_info, vm_like
from tests.s3_servers import (
    Fault,
    FaultProxy,
    MotoS3,
    RcloneS3,
    new_bucket,
    open_uploads,
    raw_client,
    settings_for,
)

PREFIX = "backups/hv01"
PASSWORD = "s3 repository password"
ROOT = Path(__file__).resolve().parents[1]
MIDNIGHT = datetime(2026, 3, 1, 1, 0, tzinfo=timezone.utc)
DISK = "Virtual Hard Disks/web01.vhdx"
LAYOUT = {
    "Virtual Machines/4A1C0E7B-1D2E-4F00-9C3B-6D5E4F3A2B1C.vmcx": b"<vmcx>" * 500,
    DISK: vm_like(3 * MiB, seed=11),
    "Virtual Hard Disks/web01_8F2A.avhdx": vm_like(MiB // 2, seed=12),
    "Snapshots/0C3B6D5E-4F3A-2B1C-4A1C-0E7B1D2E4F00.vmrs": b"",
}

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["moto", "rclone"])
def server(request: pytest.FixtureRequest) -> MotoS3 | RcloneS3:
    """Each real S3 server in turn."""
    fixture = {"moto": "moto_s3", "rclone": "rclone_s3"}[request.param]
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture
def make_s3() -> Iterator[Callable[..., S3Target]]:
    """Open S3 targets below ``PREFIX``; all closed at the end of the test."""
    opened: list[S3Target] = []

    def make(endpoint: str, bucket: str, **overrides: Any) -> S3Target:
        target = S3Target(settings_for(endpoint, bucket, **{"prefix": PREFIX, **overrides}))
        opened.append(target)
        return target

    yield make
    for target in opened:
        target.close()


def restore_all(repo: Repository, location: str, folder: Path) -> dict[str, bytes]:
    """Every restored file of a snapshot, by relative path."""
    restored = repo.restore(location, folder).folder
    return {
        p.relative_to(restored).as_posix(): p.read_bytes()
        for p in sorted(restored.rglob("*"))
        if p.is_file()
    }


def stored_keys(endpoint: str, bucket: str) -> list[str]:
    """Every key in ``bucket`` (paginated)."""
    keys: list[str] = []
    for page in raw_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


# --- the repository round trip, on both servers ------------------------------------------


def test_backup_check_and_restore_are_byte_exact(
    server: MotoS3 | RcloneS3, make_s3: Callable[..., S3Target], tmp_path: Path
) -> None:
    bucket = new_bucket(server.endpoint)
    repo = Repository.init(make_s3(server.endpoint, bucket), PASSWORD, **SMALL)
    first = back_up(repo, vm_info("web01"), LAYOUT, started_at=MIDNIGHT)
    day2 = {**LAYOUT, DISK: next_day(LAYOUT[DISK], seed=13)}
    second = back_up(repo, vm_info("web01"), day2, started_at=MIDNIGHT + timedelta(days=1))
    repo.close()

    # Everything lives below the prefix; no lock is left behind.
    keys = stored_keys(server.endpoint, bucket)
    assert all(k.startswith(f"{PREFIX}/") for k in keys)
    kinds = {k[len(PREFIX) + 1 :].split("/")[0] for k in keys}
    assert kinds == {"config", "data", "index", "snapshots"}

    # A new connection, as another process (or machine) would open it.
    reopened = Repository.open(make_s3(server.endpoint, bucket), PASSWORD)
    report = reopened.check(read_data=True)
    assert report.ok, [str(e) for e in report.errors]
    assert report.warnings == []
    assert (report.snapshots, report.bytes_read > 0) == (2, True)
    assert restore_all(reopened, first, tmp_path / "one") == LAYOUT
    assert restore_all(reopened, second, tmp_path / "two") == day2
    assert reopened.snapshot(second).stats.new_bytes < len(day2[DISK]) / 2  # dedup on S3


# --- locks: enforced conditional writes or not -------------------------------------------


def test_exclusive_operations_work_where_conditional_writes_are_enforced(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target], tmp_path: Path
) -> None:
    bucket = new_bucket(moto_s3.endpoint)
    target = make_s3(moto_s3.endpoint, bucket)
    assert target.capabilities.conditional_writes is True
    repo = Repository.init(target, **SMALL)
    disks = [vm_like(MiB, seed=20 + day) for day in range(3)]
    locations = [
        back_up(repo, vm_info("web01"), {DISK: d}, started_at=MIDNIGHT + timedelta(days=day))
        for day, d in enumerate(disks)
    ]

    other = Repository.open(make_s3(moto_s3.endpoint, bucket))
    capture = other.open_vm("job-7", vm_info("app01"), host="hv02")  # a backup is running
    with pytest.raises(LockedError, match=r"a backup holds the repository \(backup of job job-7"):
        repo.prune(dry_run=False)
    capture.abort()

    forgotten = repo.forget(RetentionPolicy(keep_last=1), dry_run=False)
    assert len(forgotten.removed) == 2
    pruned = repo.prune(dry_run=False)
    assert pruned.packs_deleted
    assert pruned.bytes_freed > 0
    assert repo.locks() == []
    assert repo.check(read_data=True).ok
    assert restore_all(repo, locations[-1], tmp_path / "out") == {DISK: disks[-1]}


def test_exclusive_operations_refuse_on_rclone_unless_single_writer_is_assumed(
    rclone_s3: RcloneS3, make_s3: Callable[..., S3Target], tmp_path: Path
) -> None:
    target = make_s3(rclone_s3.endpoint, new_bucket(rclone_s3.endpoint))
    assert target.capabilities.conditional_writes is False  # the probe found out
    repo = Repository.init(target, **SMALL)
    disks = [vm_like(MiB, seed=30 + day) for day in range(2)]
    locations = [
        back_up(repo, vm_info("web01"), {DISK: d}, started_at=MIDNIGHT + timedelta(days=day))
        for day, d in enumerate(disks)
    ]

    with pytest.raises(RepositoryError, match="does not enforce conditional writes") as caught:
        repo.forget(RetentionPolicy(keep_last=1), dry_run=False)
    assert "assume_single_writer=True" in str(caught.value)
    assert "S3Target" in str(caught.value)  # names the target
    with pytest.raises(RepositoryError, match="does not enforce conditional writes"):
        repo.prune(dry_run=False)
    assert len(repo.snapshots()) == 2  # nothing was touched

    forgotten = repo.forget(RetentionPolicy(keep_last=1), dry_run=False, assume_single_writer=True)
    assert len(forgotten.removed) == 1
    assert repo.prune(dry_run=False, assume_single_writer=True).packs_deleted
    assert repo.check(read_data=True).ok
    assert restore_all(repo, locations[-1], tmp_path / "out") == {DISK: disks[-1]}


# --- S3 server errors during a backup ----------------------------------------------------


def _request(method: str, folder: str) -> Callable[[str, str], bool]:
    return lambda m, path: m == method and f"/{PREFIX}/{folder}/" in path


@pytest.fixture
def proxied(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target]
) -> Iterator[tuple[FaultProxy, S3Target, S3Target]]:
    """(proxy, target through the proxy, direct target to the same bucket): read timeout 1 s,
    5 attempts per request."""
    bucket = new_bucket(moto_s3.endpoint)
    with FaultProxy(moto_s3.endpoint, stall_seconds=2.5) as proxy:
        through = make_s3(proxy.endpoint, bucket, read_timeout=1, connect_timeout=1, max_attempts=5)
        yield proxy, through, make_s3(moto_s3.endpoint, bucket)


def test_server_errors_and_stalls_during_a_backup_are_retried_and_it_verifies(
    proxied: tuple[FaultProxy, S3Target, S3Target], tmp_path: Path
) -> None:
    proxy, through, direct = proxied
    repo = Repository.init(through, PASSWORD, **SMALL)
    proxy.script = [
        # The first pack: 500, 503 SlowDown, then a stall past the read timeout, then stored.
        Fault("500", 1, _request("PUT", "data")),
        Fault("503", 1, _request("PUT", "data")),
        Fault("stall", 1, _request("PUT", "data")),
        Fault("503", 2, _request("PUT", "index")),
        Fault("stall", 1, _request("PUT", "snapshots")),
        Fault("500", 1, _request("PUT", "locks")),
    ]
    location = back_up(repo, vm_info("web01"), LAYOUT)
    assert [f.times for f in proxy.script] == [0] * len(proxy.script)  # every fault happened
    assert (proxy.requests("500"), proxy.requests("503"), proxy.requests("stall")) == (2, 3, 2)

    # Reading is retried too: verify and restore through the proxy while it misbehaves.
    proxy.script = [
        Fault("503", 1, _request("GET", "data")),
        Fault("stall", 1, _request("GET", "data")),
        Fault("truncate", 1, _request("GET", "data")),
        Fault("500", 1, _request("GET", "snapshots")),
    ]
    report = repo.check(read_data=True)
    assert report.ok, [str(e) for e in report.errors]
    assert restore_all(repo, location, tmp_path / "through") == LAYOUT
    assert [f.times for f in proxy.script] == [0] * len(proxy.script)
    repo.close()

    clean = Repository.open(direct, PASSWORD)  # what really got stored, without the proxy
    assert [s.id for s in clean.snapshots()] == [location.split(":")[1]]
    assert clean.check(read_data=True).ok
    assert restore_all(clean, location, tmp_path / "direct") == LAYOUT


def test_a_permanent_failure_fails_the_backup_cleanly_and_writes_no_snapshot(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target], tmp_path: Path
) -> None:
    bucket = new_bucket(moto_s3.endpoint)
    with FaultProxy(moto_s3.endpoint) as proxy:
        through = make_s3(proxy.endpoint, bucket, max_attempts=2, connect_timeout=1)
        repo = Repository.init(through, **SMALL)
        proxy.script = [Fault("500", 10_000, _request("PUT", "data"))]
        started = time.monotonic()
        with pytest.raises(RepositoryError) as caught:
            back_up(repo, vm_info("web01"), LAYOUT)
        assert time.monotonic() - started < 30
        message = str(caught.value)
        assert "could not be stored" in message
        assert "500 InternalError after 2 attempts" in message
        assert "'data/" in message  # names the object
        repo.close()

    after = Repository.open(make_s3(moto_s3.endpoint, bucket))
    assert after.snapshots() == []
    assert stored_keys(moto_s3.endpoint, bucket) == [f"{PREFIX}/config"]  # no snapshot, no lock
    assert after.check().ok
    location = back_up(after, vm_info("web01"), LAYOUT)  # the server is back: it works again
    assert restore_all(after, location, tmp_path / "out") == LAYOUT


# --- a backup killed mid-upload ----------------------------------------------------------

_KILLED_BACKUP = """
import sys
from pathlib import Path
from hyperv_backup.repository import Repository
from hyperv_backup.targets import S3Target
from tests.repository_helpers import back_up, vm_info
from tests.s3_servers import settings_for

endpoint, bucket, prefix, disk = sys.argv[1:5]
settings = settings_for(endpoint, bucket, prefix=prefix, max_concurrency=1)
repo = Repository.open(S3Target(settings), index_every_packs=1, upload_threads=1)
back_up(repo, vm_info("web01"), {"Virtual Hard Disks/web01.vhdx": Path(disk)})
print("finished")  # never: the test kills it while the second pack is half uploaded
"""


def _second_pack() -> Callable[[str, str], bool]:
    seen = 0

    def match(method: str, path: str) -> bool:
        nonlocal seen
        if method == "PUT" and f"/{PREFIX}/data/" in path:
            seen += 1
            return seen == 2
        return False

    return match


def test_a_backup_killed_mid_upload_leaves_no_snapshot_and_the_rerun_reuses_its_data(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target], tmp_path: Path
) -> None:
    bucket = new_bucket(moto_s3.endpoint)
    # 6 MiB packs, each one PUT.
    Repository.init(make_s3(moto_s3.endpoint, bucket), chunk_size=64 * 1024, pack_size=6 * MiB)
    content = random.Random(41).randbytes(16 * MiB)  # incompressible: ~3 packs
    disk = tmp_path / "web01.vhdx"
    disk.write_bytes(content)

    with FaultProxy(moto_s3.endpoint) as proxy:
        # The first pack is stored and indexed; the second one's PUT never gets an answer.
        proxy.script = [Fault("hold", 1, _second_pack())]
        process = subprocess.Popen(
            [sys.executable, "-c", _KILLED_BACKUP, proxy.endpoint, bucket, PREFIX, str(disk)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while proxy.requests("hold") == 0:
                assert process.poll() is None, process.communicate()[1].decode()[-2000:]
                assert time.monotonic() < deadline, "the upload was never held"
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGKILL)
            _out, err = process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]

    repo = Repository.open(make_s3(moto_s3.endpoint, bucket))
    assert open_uploads(moto_s3.endpoint, bucket) == []
    packs = [k for k in stored_keys(moto_s3.endpoint, bucket) if k.startswith(f"{PREFIX}/data/")]
    assert len(packs) == 1  # the half-sent second pack was never stored
    assert repo.snapshots() == []  # the killed backup left no snapshot
    assert repo.check().ok

    location = back_up(repo, vm_info("web01"), {DISK: disk})
    stats = repo.snapshot(location).stats
    assert stats.new_bytes <= len(content) - 5 * MiB  # the first pack was reused
    report = repo.check(read_data=True)
    assert report.ok, [str(e) for e in report.errors]
    assert restore_all(repo, location, tmp_path / "out") == {DISK: content}


def test_a_fresh_unfinished_upload_survives_open_but_not_prune(
    rclone_s3: RcloneS3, make_s3: Callable[..., S3Target]
) -> None:
    bucket = new_bucket(rclone_s3.endpoint)
    repo = Repository.init(make_s3(rclone_s3.endpoint, bucket), **SMALL)
    back_up(repo, vm_info("web01"), {DISK: vm_like(MiB, seed=43)})
    key = f"{PREFIX}/data/ff/" + "f" * 64
    raw_client(rclone_s3.endpoint).create_multipart_upload(Bucket=bucket, Key=key)

    # Just begun: it may be a backup running in another process, so opening leaves it.
    reopened = Repository.open(make_s3(rclone_s3.endpoint, bucket))
    assert [u["Key"] for u in open_uploads(rclone_s3.endpoint, bucket)] == [key]
    # Prune holds the exclusive lock: nobody else writes, so it is abandoned.
    report = reopened.prune(dry_run=False, assume_single_writer=True)
    assert report.uploads_aborted == 1
    assert open_uploads(rclone_s3.endpoint, bucket) == []


# --- Object Lock ---------------------------------------------------------------------------


def test_object_lock_retains_packs_and_snapshots_but_never_locks_or_the_index(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target], tmp_path: Path
) -> None:
    bucket = new_bucket(moto_s3.endpoint, object_lock=True)
    target = make_s3(moto_s3.endpoint, bucket, object_lock_days=2)
    before = datetime.now(timezone.utc) + timedelta(days=2)
    repo = Repository.init(target, PASSWORD, **SMALL)
    assert repo.retention == timedelta(days=2)  # the target's object_lock_days
    raw = raw_client(moto_s3.endpoint)

    capture = repo.open_vm("job-1", vm_info("web01"), host="hv01")  # holds a shared lock
    [lock] = [k for k in stored_keys(moto_s3.endpoint, bucket) if "/locks/" in k]
    assert "ObjectLockMode" not in raw.head_object(Bucket=bucket, Key=lock)
    capture.write_file(DISK, io.BytesIO(LAYOUT[DISK]))
    capture.abort()

    first = back_up(repo, vm_info("web01"), {DISK: LAYOUT[DISK]}, started_at=MIDNIGHT)
    day2 = next_day(LAYOUT[DISK], seed=44)
    second = back_up(repo, vm_info("web01"), {DISK: day2}, started_at=MIDNIGHT + timedelta(days=1))
    after = datetime.now(timezone.utc) + timedelta(days=2)
    retained: dict[str, int] = {}
    for key in stored_keys(moto_s3.endpoint, bucket):
        head = raw.head_object(Bucket=bucket, Key=key)
        kind = key[len(PREFIX) + 1 :].split("/")[0]
        if kind in ("config", "data", "snapshots"):
            assert head["ObjectLockMode"] == "GOVERNANCE", key
            until = head["ObjectLockRetainUntilDate"]
            assert before - timedelta(seconds=2) <= until <= after + timedelta(seconds=2), key
            retained[kind] = retained.get(kind, 0) + 1
        else:
            assert kind == "index", key  # no lock is left; the index is never retained
            assert "ObjectLockMode" not in head, key
    assert retained["config"] == 1
    assert retained["snapshots"] == 2
    assert retained["data"] >= 3

    # forget does not pretend: the old snapshot is retained, so it is kept and says why.
    policy = RetentionPolicy(keep_last=1)
    for dry_run in (True, False):
        report = repo.forget(policy, dry_run=dry_run)
        assert report.removed == []
        [kept] = report.retained
        assert kept.snapshot.id == first.split(":")[1]
        assert kept.reasons[0].startswith("retained until 20")
        assert "(Object Lock)" in kept.reasons[0]
        assert kept.retained_until is not None
        assert kept.retained_until > datetime.now(timezone.utc) + timedelta(days=1)
    assert len(repo.snapshots()) == 2
    assert repo.prune(dry_run=False).packs_deleted == []  # nothing unused: all still kept
    assert repo.check(read_data=True).ok
    assert restore_all(repo, second, tmp_path / "out") == {DISK: day2}

    # retain_days=0 turns retention off for a session: its data is deletable.
    plain = Repository.open(make_s3(moto_s3.endpoint, bucket), PASSWORD, retain_days=0)
    third = back_up(plain, vm_info("db01"), {DISK: vm_like(MiB // 2, seed=45)})
    snapshot_key = f"{PREFIX}/snapshots/{third.split(':')[1]}"
    assert "ObjectLockMode" not in raw.head_object(Bucket=bucket, Key=snapshot_key)


def test_retention_is_refused_where_the_target_cannot_keep_it(
    tmp_path: Path, moto_s3: MotoS3, make_s3: Callable[..., S3Target]
) -> None:
    with pytest.raises(TargetError, match="has no Object Lock"):
        Repository.init(LocalTarget(tmp_path / "repo"), retain_days=7)
    assert not (tmp_path / "repo" / "config").exists()
    Repository.init(LocalTarget(tmp_path / "repo")).close()
    with pytest.raises(TargetError, match="cannot be retained for 7 days"):
        Repository.open(LocalTarget(tmp_path / "repo"), retain_days=7)
    unlocked = make_s3(moto_s3.endpoint, new_bucket(moto_s3.endpoint))
    with pytest.raises(TargetError, match="has no Object Lock"):
        Repository.init(unlocked, retain_days=1)
