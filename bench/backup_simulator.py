"""Time per VM of a full backup of the simulator's default host, and retries observed.

Not a test: prints figures. Run with ``.venv/bin/python bench/backup_simulator.py``.
One run backs up every VM of the default scenario (in place, 2 VMs in parallel); a second
run injects 3 "conflicting operation" refusals into sql01's checkpoint to show the retries.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    DirectorySink,
    LocalPathReader,
    RetryPolicy,
    Selection,
)
from hyperv_backup.simulator import FaultSpec, Simulator


def run(label: str, sim: Simulator, work: Path, policy: BackupPolicy) -> None:
    job = BackupJob(
        sim.connection_settings(),
        policy,
        sink=DirectorySink(work / "backups"),
        reader=LocalPathReader(sim.path_map()),
        state_dir=work / "state",
    )
    started = time.perf_counter()
    result = job.run(Selection(all=True))
    wall = time.perf_counter() - started
    print(
        f"\n{label}: {result.status.value} in {wall:.2f} s wall "
        f"({len(result.vms)} VMs, parallel {policy.parallel_vms})"
    )
    print(f"{'VM':<36} {'method':<22} {'level':<12} {'MiB':>7} {'s':>6} {'MiB/s':>7} retries")
    for vm in result.vms:
        mib = vm.bytes / 2**20
        rate = mib / vm.duration_seconds if vm.duration_seconds else 0.0
        print(
            f"{vm.vm_name[:36]:<36} {(vm.method.value if vm.method else '-'):<22} "
            f"{(vm.achieved.value if vm.achieved else '-'):<12} {mib:7.1f} "
            f"{vm.duration_seconds:6.2f} {rate:7.1f} {vm.retries:>7}"
        )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Simulator() as sim:
        work = Path(tmp)
        policy = BackupPolicy(retry=RetryPolicy(initial_wait=0.2, max_wait=1.0))
        run("default scenario", sim, work / "a", policy)
        sim.add_fault(
            FaultSpec(
                script="new-backup-checkpoint", action="conflicting_operation", vm="sql01", times=3
            )
        )
        run("with 3 conflicting operations on sql01", sim, work / "b", policy)


if __name__ == "__main__":
    main()
