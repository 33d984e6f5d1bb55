"""Repository throughput on a VM-like disk image: backup, next-day backup, restore, check.

Not a test: prints figures. Run with ``.venv/bin/python bench/repository.py [MiB]``.
The image (default 1024 MiB) and its next day (2 % of 64 KiB blocks rewritten + 4 MiB
inserted unaligned) are written to a temporary folder first; each step runs on a local
repository in that folder, unencrypted and encrypted, with the default chunk and pack sizes.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from hyperv_backup.models import VMInfo
from hyperv_backup.policy import ConsistencyPolicy
from hyperv_backup.repository import Repository
from hyperv_backup.results import VMBackupResult, VMStatus
from hyperv_backup.targets import LocalTarget

sys.path.insert(0, str(Path(__file__).parent))
from chunking import next_day, vm_image  # a sibling script, not a package

MiB = 1024 * 1024
VM = VMInfo.model_validate(
    {
        "id": "6f1c3a52-0000-4000-8000-000000000001",
        "name": "bench",
        "state": "Off",
        "generation": 2,
        "configuration_version": "9.0",
        "path": r"D:\VMs\bench",
        "checkpoint_type": "Production",
        "memory_startup": 0,
        "memory_assigned": 0,
        "has_saved_state": False,
    }
)


def backup(repo: Repository, disk: Path) -> str:
    capture = repo.open_vm("bench", VM, host="bench")
    with disk.open("rb", buffering=0) as stream:
        capture.write_file("Virtual Hard Disks/bench.vhdx", io.BufferedReader(stream, MiB))
    result = VMBackupResult(
        vm_name=VM.name,
        vm_id=str(VM.id),
        status=VMStatus.SUCCESS,
        requested=ConsistencyPolicy.CRASH_OK,
        started_at=datetime.now(timezone.utc),
    )
    return capture.commit(result)


def timed(label: str, size: int, work: object) -> object:
    started = time.perf_counter()
    outcome = work()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    print(f"  {label:<22} {seconds:6.2f} s  {size / MiB / seconds:7.0f} MiB/s")
    return outcome


def main() -> None:
    size = int(sys.argv[1]) * MiB if len(sys.argv) > 1 else 1024 * MiB
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        day1 = vm_image(size)
        day2, changed = next_day(day1)
        (work / "day1.vhdx").write_bytes(day1)
        (work / "day2.vhdx").write_bytes(day2)
        del day1, day2
        print(f"image {size // MiB} MiB; next day changes {changed / MiB:.1f} MiB")
        for password in (None, "bench-password"):
            root = work / ("enc" if password else "plain")
            repo = Repository.init(LocalTarget(root), password)
            print(f"{'encrypted' if password else 'unencrypted'}:")
            first = timed("backup", size, lambda r=repo: backup(r, work / "day1.vhdx"))
            stored1 = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            second = timed("next-day backup", size, lambda r=repo: backup(r, work / "day2.vhdx"))
            stored2 = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            print(
                f"  stored {stored1 / MiB:.0f} MiB, next day adds {(stored2 - stored1) / MiB:.1f}"
                f" MiB ({repo.snapshot(str(second)).stats.new_bytes / MiB:.1f} MiB of new chunks)"
            )
            timed(
                "restore",
                size,
                lambda r=repo, s=str(first), p=password: r.restore(s, work / f"out-{p}"),
            )
            started = time.perf_counter()
            report = repo.check(read_data=True)
            seconds = time.perf_counter() - started
            assert report.ok
            print(
                f"  {'check(read_data=True)':<22} {seconds:6.2f} s  "
                f"{report.bytes_read / MiB / seconds:7.0f} MiB/s (stored bytes read)"
            )
            repo.close()


if __name__ == "__main__":
    main()
