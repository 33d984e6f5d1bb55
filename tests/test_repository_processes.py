"""The repository across processes: a backup killed mid-upload, two writers at once, and the
memory a large backup needs. Each writer runs ``tests.repository_helpers`` in its own process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperv_backup.repository import Repository
from hyperv_backup.targets import LocalTarget
from tests.repository_helpers import SMALL, MiB, back_up, sha256, vm_info, vm_like

ROOT = Path(__file__).resolve().parent.parent


def worker(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.repository_helpers", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def test_a_backup_killed_mid_upload_leaves_no_snapshot_and_the_rerun_reuses_its_data(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    Repository.init(LocalTarget(root), **SMALL).close()
    disk = tmp_path / "web01.vhdx"
    content = vm_like(12 * MiB, seed=51)
    disk.write_bytes(content)
    marker = tmp_path / "stalled"

    # An index object after every pack; the input stalls after 8 of its 12 MiB.
    process = worker(
        "backup", root, "web01", disk, "--index-every", "1",
        "--stall-after", 8 * MiB, "--marker", marker,
    )  # fmt: skip
    try:
        wait_for(marker.exists)
        # Every pack the killed run sealed is uploaded and indexed: wait until they match.
        wait_for(
            lambda: count(root / "data") >= 4 and count(root / "index") == count(root / "data")
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL

    repo = Repository.open(LocalTarget(root))
    assert repo.snapshots() == []  # the killed backup left no snapshot
    assert repo.check().ok
    stored_before = sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())

    location = back_up(repo, vm_info("web01"), {"Virtual Hard Disks/web01.vhdx": disk})

    stats = repo.snapshot(location).stats
    stored_after = sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())
    assert stats.new_bytes < len(content) - 6 * MiB  # most of the first 8 MiB was reused
    assert stored_after - stored_before < 6 * MiB
    report = repo.check(read_data=True)
    assert report.ok
    assert report.warnings == []  # every pack of the killed run is indexed and used
    restored = repo.restore(location, tmp_path / "out").folder / "Virtual Hard Disks/web01.vhdx"
    assert sha256(restored.read_bytes()) == sha256(content)


def test_two_processes_back_up_into_one_repository_at_once(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    Repository.init(LocalTarget(root), "pw", **SMALL).close()
    shared = vm_like(2 * MiB, seed=61)  # both VMs come from one template
    disks = {
        "web01": shared + vm_like(4 * MiB, seed=62),
        "web02": shared + vm_like(4 * MiB, seed=63),
    }
    go = tmp_path / "go"
    processes = {}
    for name, content in disks.items():
        (tmp_path / f"{name}.vhdx").write_bytes(content)
        processes[name] = worker(
            "backup", root, name, tmp_path / f"{name}.vhdx", "--password", "pw",
            "--ready", tmp_path / f"{name}.ready", "--go", go,
        )  # fmt: skip
    try:
        wait_for(lambda: all((tmp_path / f"{n}.ready").exists() for n in disks))
        repo = Repository.open(LocalTarget(root), "pw")
        assert len(repo.locks()) == 2  # both hold a shared lock: appends never conflict
        go.touch()
        outputs = {name: p.communicate(timeout=60) for name, p in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, process in processes.items():
        assert process.returncode == 0, outputs[name][1]

    locations = {name: outputs[name][0].strip() for name in disks}
    assert sorted(s.vm_name for s in repo.snapshots()) == ["web01", "web02"]
    report = repo.check(read_data=True)
    assert report.ok, [str(e) for e in report.errors]
    assert repo.locks() == []
    for name, content in disks.items():
        folder = repo.restore(locations[name], tmp_path / "out").folder
        assert (folder / f"Virtual Hard Disks/{name}.vhdx").read_bytes() == content


@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak RSS the Linux way")
def test_memory_stays_bounded_however_large_the_disks(tmp_path: Path) -> None:
    # Two VMs at once (the engine's default), 160 MiB each, with the default chunk and
    # pack sizes; together they are larger than the budget, so it must stream.
    process = worker("memory", tmp_path / "repo", 160 * MiB, 2)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    peak = int(out)
    assert peak < 256 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
    assert os.path.getsize(tmp_path / "repo" / "config") > 0
