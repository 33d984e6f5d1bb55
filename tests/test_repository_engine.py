"""The engine end to end into a repository: BackupJob → simulator → Repository → restore.

The repository is just the job's sink; what a user checks is that every VM backed up by the
job can be restored from the repository byte for byte, in the Export-VM layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    JobStatus,
    LocalPathReader,
    RetryPolicy,
    Selection,
    VMStatus,
)
from hyperv_backup.repository import Repository
from hyperv_backup.simulator import Simulator
from hyperv_backup.targets import LocalTarget

MiB = 2**20
FAST_RETRY = RetryPolicy(attempts=5, initial_wait=0.01, max_wait=0.05, deadline=30)


def vm(name: str, size: int, **fields: Any) -> dict[str, Any]:
    disk = {"file": {"path": rf"D:\VMs\{name}\{name}.vhdx", "size": "60 GiB", "file_size": size}}
    return {"name": name, "disks": [disk], **fields}


def job(sim: Simulator, repo: Repository, tmp_path: Path) -> BackupJob:
    return BackupJob(
        sim.connection_settings(),
        BackupPolicy(retry=FAST_RETRY, tags=["nightly"], parallel_vms=2),
        sink=repo,
        reader=LocalPathReader(sim.path_map()),
        state_dir=tmp_path / "state",
    )


def test_backup_job_into_a_repository_restores_every_vm_byte_exact(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web01", 3 * MiB, state="Off"), vm("app01", 2 * MiB)]})
    repo = Repository.init(LocalTarget(tmp_path / "repo"), "pw", chunk_size=64 * 1024)
    # The stopped VM's files do not change: compare with the host's files themselves.
    web_files = {
        f.path: sim.local_path(f.path).read_bytes() for f in sim.emulator.vm_files("web01").files
    }

    result = job(sim, repo, tmp_path).run(Selection(all=True))
    compared = 0

    assert result.status == JobStatus.SUCCESS, [(v.vm_name, v.error) for v in result.vms]
    for backed_up in result.vms:
        assert backed_up.status == VMStatus.SUCCESS
        assert backed_up.location is not None
        assert backed_up.location.startswith(repo.id + ":")
        snapshot = repo.snapshot(backed_up.location)
        assert (snapshot.vm_name, snapshot.host, snapshot.tags) == (
            backed_up.vm_name,
            sim.connection_settings().host,
            ["nightly"],
        )
        assert snapshot.result.achieved == backed_up.achieved
        report = repo.restore(backed_up.location, tmp_path / "restore")
        restored = {
            p.relative_to(report.folder).as_posix(): p
            for p in report.folder.rglob("*")
            if p.is_file()
        }
        assert set(restored) == {f.relative_path for f in backed_up.files}  # the layout
        for captured in backed_up.files:
            data = restored[captured.relative_path].read_bytes()
            assert blake3.blake3(data).hexdigest() == captured.blake3, captured.relative_path
            assert snapshot_role(snapshot, captured.relative_path) == captured.role
            if backed_up.vm_name == "web01" and captured.host_path in web_files:
                assert data == web_files[captured.host_path]  # read in place: the host file
                compared += 1
    assert compared >= 1  # at least the disk (the configuration is exported to staging)
    check = repo.check(read_data=True)
    assert check.ok, [str(e) for e in check.errors]
    assert check.snapshots == 2


def snapshot_role(snapshot: Any, path: str) -> Any:
    return next(f.role for f in snapshot.files if f.path == path)


def test_the_next_nights_backup_of_the_same_vms_adds_little(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web01", 4 * MiB, state="Off")]})
    repo = Repository.init(LocalTarget(tmp_path / "repo"), chunk_size=64 * 1024)
    first = job(sim, repo, tmp_path).run(Selection(all=True))
    second = job(sim, repo, tmp_path).run(Selection(all=True))

    assert first.status == second.status == JobStatus.SUCCESS
    stats = repo.snapshot(second.vms[0].location or "").stats
    assert stats.bytes == second.vms[0].bytes
    assert stats.new_bytes < stats.bytes * 0.05  # only the exported configuration changes
    assert [s.vm_name for s in repo.snapshots(vm="web*")] == ["web01", "web01"]
