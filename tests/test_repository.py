"""The repository as a store of VM backups: exact restores, dedup, manifests, encryption.

Every test uses a real repository on a local folder (``LocalTarget`` in ``tmp_path``) and
a few MiB of generated, VM-like data (zeros, text-like and random extents).
"""

from __future__ import annotations

import io
import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import blake3
import pytest

from hyperv_backup.errors import IntegrityError, RepositoryError, WrongPasswordError
from hyperv_backup.policy import ConsistencyPolicy
from hyperv_backup.repository import Repository, vm_folder_name
from hyperv_backup.results import Exclusion, VMBackupResult, VMStatus
from hyperv_backup.targets import LocalTarget
from tests.repository_helpers import SMALL, MiB, back_up, next_day, sha256, vm_info, vm_like

PASSWORD = "correct horse battery staple"


def stored_bytes(root: Path, prefix: str = "data") -> int:
    return sum(p.stat().st_size for p in (root / prefix).rglob("*") if p.is_file())


def restored_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


EXPORT_LAYOUT = {
    "Virtual Machines/4A1C0E7B-1D2E-4F00-9C3B-6D5E4F3A2B1C.vmcx": b"<vmcx>" * 500,
    "Virtual Machines/4A1C0E7B-1D2E-4F00-9C3B-6D5E4F3A2B1C.vmgs": bytes(40_000),
    "Virtual Hard Disks/web01.vhdx": vm_like(4 * MiB, seed=1),
    "Virtual Hard Disks/web01_8F2A.avhdx": vm_like(1 * MiB, seed=2),
    "Snapshots/0C3B6D5E-4F3A-2B1C-4A1C-0E7B1D2E4F00.vmrs": b"",
}


@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_restore_is_byte_exact_in_the_export_vm_layout(
    tmp_path: Path, password: str | None
) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), password, **SMALL)
    location = back_up(repo, vm_info("web01"), EXPORT_LAYOUT)
    repo.close()

    reopened = Repository.open(LocalTarget(tmp_path / "repo"), password)
    report = reopened.restore(location, tmp_path / "restore")

    assert report.folder == tmp_path / "restore" / "web01"
    assert restored_files(report.folder) == EXPORT_LAYOUT  # every file, path and byte
    assert report.bytes == sum(len(v) for v in EXPORT_LAYOUT.values())
    assert not list(report.folder.rglob("*.partial"))


def test_a_subset_restores_only_the_chosen_files(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    location = back_up(repo, vm_info("web01"), EXPORT_LAYOUT)

    report = repo.restore(location, tmp_path / "out", paths=["virtual hard disks/"])

    assert sorted(report.files) == [
        "Virtual Hard Disks/web01.vhdx",
        "Virtual Hard Disks/web01_8F2A.avhdx",
    ]
    assert set(restored_files(report.folder)) == set(report.files)
    with pytest.raises(RepositoryError, match="no file under"):
        repo.restore(location, tmp_path / "none", paths=["Nothing/here"])


def test_restore_refuses_to_overwrite_and_names_the_file(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    location = back_up(repo, vm_info("web01"), {"Virtual Hard Disks/a.vhdx": b"disk"})
    repo.restore(location, tmp_path / "out")
    with pytest.raises(RepositoryError, match=r"a\.vhdx"):
        repo.restore(location, tmp_path / "out")
    repo.restore(location, tmp_path / "out", overwrite=True)


def test_vm_name_becomes_a_safe_folder_name(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    odd = 'O\'Brien: "db" / test?'
    location = back_up(repo, vm_info(odd), {"Virtual Hard Disks/a.vhdx": b"x"})
    report = repo.restore(location, tmp_path / "out")
    assert report.folder.name == vm_folder_name(odd) == "O'Brien_ _db_ _ test_"


def test_next_day_of_a_slightly_changed_disk_adds_little(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    day1 = vm_like(8 * MiB, seed=3)
    day2 = next_day(day1, seed=4)
    vm = vm_info("sql01")
    back_up(repo, vm, {"Virtual Hard Disks/sql01.vhdx": day1})
    after_day1 = stored_bytes(tmp_path / "repo")
    location = back_up(repo, vm, {"Virtual Hard Disks/sql01.vhdx": day2})
    added = stored_bytes(tmp_path / "repo") - after_day1

    stats = repo.snapshot(location).stats
    assert stats.bytes == len(day2)
    assert stats.new_bytes < len(day2) * 0.25, stats  # 2 % of blocks + a 256 KiB insert
    assert added < after_day1 * 0.25
    restored = repo.restore(location, tmp_path / "out").folder / "Virtual Hard Disks/sql01.vhdx"
    assert sha256(restored.read_bytes()) == sha256(day2)


def test_two_vms_cloned_from_one_template_store_it_once(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    template = vm_like(6 * MiB, seed=5)
    back_up(repo, vm_info("app01"), {"Virtual Hard Disks/app01.vhdx": template})
    after_first = stored_bytes(tmp_path / "repo")
    location = back_up(repo, vm_info("app02"), {"Virtual Hard Disks/app02.vhdx": template})

    assert repo.snapshot(location).stats.new_chunks == 0
    assert stored_bytes(tmp_path / "repo") - after_first < 16 * 1024  # its chunk list only


def test_threads_writing_the_same_data_at_once_store_each_chunk_once(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    disk = vm_like(6 * MiB, seed=6)
    barrier = threading.Barrier(3)
    locations: list[str] = []

    def backup(name: str) -> None:
        barrier.wait()
        locations.append(back_up(repo, vm_info(name), {"Virtual Hard Disks/d.vhdx": disk}))

    threads = [threading.Thread(target=backup, args=(f"vm{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stats = [repo.snapshot(location).stats for location in locations]
    distinct = stats[0].chunks  # upper bound of distinct chunks in one copy
    assert sum(s.new_chunks for s in stats) <= distinct  # in flight counts as stored
    assert repo.check(read_data=True).ok
    for index, location in enumerate(locations):
        folder = repo.restore(location, tmp_path / f"out{index}").folder
        assert (folder / "Virtual Hard Disks/d.vhdx").read_bytes() == disk


def test_an_all_zero_disk_costs_almost_nothing_and_restores_sparse(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    zeros = bytes(16 * MiB)
    location = back_up(repo, vm_info("empty"), {"Virtual Hard Disks/empty.vhdx": zeros})

    assert stored_bytes(tmp_path / "repo") < 64 * 1024
    restored = repo.restore(location, tmp_path / "out").folder / "Virtual Hard Disks/empty.vhdx"
    assert restored.stat().st_size == len(zeros)
    assert restored.read_bytes() == zeros
    assert restored.stat().st_blocks * 512 < len(zeros)  # holes, not written zeros


def test_snapshot_manifest_holds_vm_result_coverage_and_files(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    vm = vm_info("web01")
    capture = repo.open_vm("job-42", vm, host="hv07", tags=["nightly"])
    disk = EXPORT_LAYOUT["Virtual Hard Disks/web01.vhdx"]
    digest = capture.write_file("Virtual Hard Disks/web01.vhdx", io.BytesIO(disk))
    result = VMBackupResult(
        vm_name=vm.name,
        vm_id=str(vm.id),
        status=VMStatus.SUCCESS,
        requested=ConsistencyPolicy.APP_PREFERRED,
        excluded=[Exclusion(item="SCSI 0:3 (pass-through)", reason="Hyper-V cannot back it up")],
        started_at=datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc),
    )
    location = capture.commit(result)

    repository_id, snapshot_id = location.split(":")
    assert repository_id == repo.id
    snapshot = repo.snapshot(snapshot_id[:8])
    assert snapshot.id == snapshot_id
    assert (snapshot.job_id, snapshot.host, snapshot.tags) == ("job-42", "hv07", ["nightly"])
    assert snapshot.time == result.started_at
    assert snapshot.vm == vm
    assert snapshot.result.excluded[0].reason == "Hyper-V cannot back it up"
    assert snapshot.result.location == location
    [entry] = snapshot.files
    assert (entry.path, entry.size, entry.blake3, entry.sha256) == (
        "Virtual Hard Disks/web01.vhdx",
        digest.size,
        blake3.blake3(disk).hexdigest(),
        None,
    )
    assert digest.blake3 == entry.blake3
    assert entry.chunks > 1
    assert len(entry.chunk_lists) == 1
    other = Repository.init(LocalTarget(tmp_path / "other"), **SMALL)
    with pytest.raises(RepositoryError, match=f"is a backup in repository {repo.id[:8]}"):
        other.restore(location, tmp_path / "out")


def test_snapshots_are_listed_newest_first_and_filtered(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    start = datetime(2026, 1, 10, 22, 0, tzinfo=timezone.utc)
    plan = [
        ("web01", "hv01", ("nightly",), 0),
        ("web02", "hv01", ("nightly",), 1),
        ("sql01", "hv02", ("weekly",), 2),
        ("web01", "hv01", ("nightly", "pre-upgrade"), 3),
    ]
    for name, host, tags, day in plan:
        back_up(
            repo,
            vm_info(name),
            {"Virtual Machines/c.vmcx": name.encode()},
            host=host,
            tags=tags,
            started_at=start + timedelta(days=day),
        )

    def names(**filters: object) -> list[tuple[str, int]]:
        found = repo.snapshots(**filters)  # type: ignore[arg-type]
        return [(s.vm_name, s.time.day) for s in found]

    assert names() == [("web01", 13), ("sql01", 12), ("web02", 11), ("web01", 10)]
    assert names(vm="WEB01") == [("web01", 13), ("web01", 10)]
    assert names(vm="web*") == [("web01", 13), ("web02", 11), ("web01", 10)]
    assert names(host="hv02") == [("sql01", 12)]
    assert names(tags=["pre-upgrade"]) == [("web01", 13)]
    assert names(since=start + timedelta(days=1), until=start + timedelta(days=2)) == [
        ("sql01", 12),
        ("web02", 11),
    ]


def test_abort_writes_no_snapshot(tmp_path: Path) -> None:
    repo = Repository.init(LocalTarget(tmp_path / "repo"), **SMALL)
    capture = repo.open_vm("job", vm_info("web01"), host="hv01")
    capture.write_file("Virtual Hard Disks/a.vhdx", io.BytesIO(vm_like(2 * MiB, seed=7)))
    capture.abort()
    assert repo.snapshots() == []
    assert repo.locks() == []  # the backup's shared lock went with it


def test_wrong_password_is_named_clearly_and_never_shown(tmp_path: Path) -> None:
    Repository.init(LocalTarget(tmp_path / "repo"), PASSWORD, **SMALL).close()
    attempt = "Tr0ub4dor&3-guess"
    with pytest.raises(WrongPasswordError) as caught:
        Repository.open(LocalTarget(tmp_path / "repo"), attempt)
    message = str(caught.value)
    assert "wrong password" in message
    assert str(tmp_path / "repo") in message
    assert attempt not in message
    assert PASSWORD not in message
    assert caught.value.__cause__ is None  # no cryptography detail to leak
    with pytest.raises(RepositoryError, match="is encrypted: give its password"):
        Repository.open(LocalTarget(tmp_path / "repo"))


def test_encrypted_repository_holds_no_plaintext(tmp_path: Path) -> None:
    marker = b"PLAINTEXT-MARKER-0123456789"
    text = (marker + b" customer ledger row\n") * 40_000  # compressible, would survive zstd
    repo = Repository.init(LocalTarget(tmp_path / "repo"), PASSWORD, **SMALL)
    back_up(repo, vm_info("finance-db"), {"Virtual Hard Disks/finance-db.vhdx": text})
    repo.close()

    for path in (tmp_path / "repo").rglob("*"):
        if path.is_file() and path.name != "config":
            content = path.read_bytes()
            for secret in (marker, b"finance-db", b"ledger", b"Virtual Hard Disks"):
                assert secret not in content, (path, secret)
    plain = Repository.init(LocalTarget(tmp_path / "plain"), **SMALL)
    back_up(plain, vm_info("finance-db"), {"Virtual Hard Disks/finance-db.vhdx": text})
    # The control: unencrypted, the same data would be readable in the packs' zstd frames.
    assert any(
        b"ledger" in p.read_bytes() for p in (tmp_path / "plain" / "data").rglob("*") if p.is_file()
    )


def test_init_refuses_an_existing_repository(tmp_path: Path) -> None:
    Repository.init(LocalTarget(tmp_path / "repo"), **SMALL).close()
    with pytest.raises(RepositoryError, match="already holds a repository"):
        Repository.init(LocalTarget(tmp_path / "repo"), PASSWORD)
    with pytest.raises(RepositoryError, match="not encrypted, but a password was given"):
        Repository.open(LocalTarget(tmp_path / "repo"), PASSWORD)
    with pytest.raises(RepositoryError, match="no repository at"):
        Repository.open(LocalTarget(tmp_path / "elsewhere"))


def test_exists_tells_an_empty_target_from_a_repository(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "repo")
    assert not Repository.exists(target)
    Repository.init(target, password="pw", scrypt_n=2**10).close()
    assert Repository.exists(target)


def _pack_files(root: Path) -> list[Path]:
    return [p for p in (root / "data").rglob("*") if p.is_file() and len(p.name) == 64]


def test_packs_are_named_by_blake3_and_older_sha256_repositories_stay_readable(
    tmp_path: Path,
) -> None:
    import json

    import blake3

    disk = tmp_path / "disk.vhdx"
    disk.write_bytes(vm_like(3 * MiB, seed=5))
    new = LocalTarget(tmp_path / "new")
    with Repository.init(new, password="pw", **SMALL) as repo:
        back_up(repo, vm_info("web01"), {"Virtual Hard Disks/web01.vhdx": disk})
    packs = _pack_files(tmp_path / "new")
    assert packs
    assert all(blake3.blake3(p.read_bytes()).hexdigest() == p.name for p in packs)

    # A repository created before the config recorded the hash: its packs are SHA-256 named.
    old_root = tmp_path / "old"
    Repository.init(LocalTarget(old_root), password="pw", **SMALL).close()
    config = json.loads((old_root / "config").read_text())
    del config["pack_id_hash"]
    (old_root / "config").write_text(json.dumps(config))
    with Repository.open(LocalTarget(old_root), password="pw") as repo:
        back_up(repo, vm_info("web01"), {"Virtual Hard Disks/web01.vhdx": disk})
        report = repo.check(read_data=True)
    assert report.ok, [str(e) for e in report.errors]
    packs = _pack_files(old_root)
    assert packs
    assert all(sha256(p.read_bytes()) == p.name for p in packs)


@pytest.mark.parametrize("recorded", ["right", "wrong"])
def test_backups_that_recorded_sha256_restore_verified_by_it(tmp_path: Path, recorded: str) -> None:
    """Manifests written before the whole-file hash was BLAKE3 carry a SHA-256 instead."""
    repo = Repository.init(LocalTarget(tmp_path / "repo"), PASSWORD, **SMALL)
    disk = vm_like(2 * MiB, seed=5)
    location = back_up(repo, vm_info("web01"), {"Virtual Hard Disks/web01.vhdx": disk})
    key = "snapshots/" + location.split(":")[1]
    manifest = json.loads(repo._codec.unseal("snapshot", repo._target.get(key)))
    [entry] = manifest["files"]
    del entry["blake3"]
    entry["sha256"] = sha256(disk) if recorded == "right" else sha256(b"something else")
    repo._target.put(key, repo._codec.seal("snapshot", json.dumps(manifest).encode()))

    if recorded == "right":
        report = repo.restore(location, tmp_path / "out")
        assert (report.folder / "Virtual Hard Disks/web01.vhdx").read_bytes() == disk
    else:
        with pytest.raises(IntegrityError, match="does not match the SHA-256 recorded"):
            repo.restore(location, tmp_path / "out")
        assert not list((tmp_path / "out").rglob("*.vhdx*"))  # no partial file left
