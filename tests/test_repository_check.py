"""Check and damaged data: what is wrong, and which VM backups and files it hits."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hyperv_backup.errors import IntegrityError, RepositoryError
from hyperv_backup.repository import Repository
from hyperv_backup.targets import LocalTarget
from tests.repository_helpers import SMALL, MiB, back_up, vm_info, vm_like

WHEN = datetime(2026, 11, 26, 7, 15, tzinfo=timezone.utc)


def packs(root: Path) -> set[Path]:
    return {p for p in (root / "data").rglob("*") if p.is_file()}


def two_vms(tmp_path: Path, password: str | None = None) -> tuple[Repository, str, str, Path]:
    """web01 and db01 backed up; returns the repo, both locations and a full pack of web01."""
    root = tmp_path / "repo"
    repo = Repository.init(LocalTarget(root), password, **SMALL)
    before = packs(root)
    web = back_up(
        repo,
        vm_info("web01"),
        {"Virtual Hard Disks/web01.vhdx": vm_like(4 * MiB, seed=11)},
        started_at=WHEN,
    )
    web_packs = packs(root) - before
    # Random data: db01 shares no chunk with web01 (not even a run of zeros).
    db_disk = random.Random(12).randbytes(3 * MiB)
    db = back_up(repo, vm_info("db01"), {"Virtual Hard Disks/db01.vhdx": db_disk})
    # A full pack holds data chunks in its middle (chunk lists sit in the last, small pack).
    full = max(web_packs, key=lambda p: p.stat().st_size)
    return repo, web, db, full


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("password", [None, "s3cret"], ids=["plain", "encrypted"])
def test_a_flipped_byte_in_a_pack_is_found_and_names_the_vm_backup_and_file(
    tmp_path: Path, password: str | None
) -> None:
    repo, web, db, pack = two_vms(tmp_path, password)
    assert repo.check(read_data=True).ok

    flip_byte(pack, pack.stat().st_size // 2)

    assert repo.check().ok  # structure is intact: only reading the data finds it
    report = repo.check(read_data=True)
    assert not report.ok
    assert report.bytes_read >= sum(p.stat().st_size for p in packs(tmp_path / "repo")) - 1
    web_id = web.split(":")[1]
    assert report.damaged_snapshots == {web_id}  # db01's backup is untouched
    text = "\n".join(str(e) for e in report.errors)
    assert f"web01 backup {web_id[:8]} of 2026-11-26 07:15:00+00:00" in text
    assert "'Virtual Hard Disks/web01.vhdx'" in text
    assert f"pack {pack.name[:16]}" in text
    assert db.split(":")[1][:8] not in text


def test_restoring_damaged_data_fails_naming_file_and_backup_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    repo, web, db, pack = two_vms(tmp_path)
    flip_byte(pack, pack.stat().st_size // 2)

    with pytest.raises(IntegrityError) as caught:
        repo.restore(web, tmp_path / "out")
    assert "'Virtual Hard Disks/web01.vhdx'" in str(caught.value)
    assert f"web01 backup {web.split(':')[1][:8]}" in str(caught.value)
    disk_folder = tmp_path / "out" / "web01" / "Virtual Hard Disks"
    assert list(disk_folder.iterdir()) == []  # no partial file left behind
    assert repo.restore(db, tmp_path / "out").files == ["Virtual Hard Disks/db01.vhdx"]


def test_a_missing_pack_is_found_by_the_structure_check(tmp_path: Path) -> None:
    repo, web, _db, pack = two_vms(tmp_path)
    pack.unlink()

    report = repo.check()

    assert not report.ok
    assert report.damaged_snapshots == {web.split(":")[1]}
    assert any("is missing" in str(e) and "web01.vhdx" in str(e) for e in report.errors)


def test_a_pack_no_index_knows_is_a_warning_that_prune_clears(tmp_path: Path) -> None:
    repo, _web, _db, _pack = two_vms(tmp_path)
    stray = tmp_path / "repo" / "data" / "ab" / ("ab" + "0" * 62)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"left by a killed backup")

    report = repo.check()
    assert report.ok
    assert any("in no index" in w for w in report.warnings)
    pruned = repo.prune(dry_run=False)
    assert pruned.unindexed_packs_deleted == [stray.name]
    assert not stray.exists()
    assert repo.check(read_data=True).warnings == []


def test_a_damaged_index_object_is_reported_and_rebuilt_from_the_packs(tmp_path: Path) -> None:
    _repo, web, db, _pack = two_vms(tmp_path, "pw")
    index_objects = sorted((tmp_path / "repo" / "index").iterdir())
    flip_byte(index_objects[0], 20)

    reopened = Repository.open(LocalTarget(tmp_path / "repo"), "pw")  # still opens
    report = reopened.check()
    assert not report.ok
    assert any(f"index object index/{index_objects[0].name}" in str(e) for e in report.errors)
    with pytest.raises(RepositoryError, match="run repair_index"):
        reopened.prune(dry_run=False)

    repaired = reopened.repair_index()

    assert repaired.packs_indexed
    assert repaired.index_objects_removed == [f"index/{index_objects[0].name}"]
    assert reopened.check(read_data=True).ok
    for location in (web, db):
        assert reopened.restore(location, tmp_path / "out").files
