"""Backups end to end: BackupJob → pypsrp → simulator → emulated Hyper-V host → files.

Each test checks what a user would: the consistency achieved and why, every part of the VM
in the backup (byte-exact where the host file is frozen), what was excluded, retries, and
that nothing is left on the host afterwards, even when a step fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    CaptureMethod,
    CaptureMode,
    ConsistencyLevel,
    ConsistencyPolicy,
    DirectorySink,
    Hooks,
    HyperVHost,
    JobResult,
    JobStatus,
    LocalPathReader,
    PassthroughPolicy,
    PowerShellHook,
    RetryPolicy,
    Selection,
    VMBackupResult,
    VMStatus,
)
from hyperv_backup.journal import Journal
from hyperv_backup.ps_scripts import SCRIPTS, NewBackupCheckpointParams
from hyperv_backup.simulator import FaultSpec, Simulator

MiB = 2**20
ODD_NAME = 'O\'Brien; $(Remove-Item C:\\) "ü"'
FAST_RETRY = RetryPolicy(attempts=5, initial_wait=0.01, max_wait=0.05, deadline=30)

MakeSimulator = Callable[..., Simulator]


def vm(name: str, **fields: Any) -> dict[str, Any]:
    """A small running Gen2 VM with one 1 MiB disk."""
    disk = {"file": {"path": rf"D:\VMs\{name}\{name}.vhdx", "size": "60 GiB", "file_size": MiB}}
    return {"name": name, "disks": [disk], **fields}


def make_job(sim: Simulator, tmp_path: Path, **policy: Any) -> BackupJob:
    policy.setdefault("retry", FAST_RETRY)
    return BackupJob(
        sim.connection_settings(),
        BackupPolicy(**policy),
        sink=DirectorySink(tmp_path / "backups"),
        reader=LocalPathReader(sim.path_map()),
        state_dir=tmp_path / "state",
    )


def only(result: JobResult, name: str) -> VMBackupResult:
    return next(v for v in result.vms if v.vm_name == name)


def host_is_clean(sim: Simulator, scenario_checkpoints: dict[str, int]) -> None:
    """No backup checkpoint, staging folder or shadow left; replication not left suspended."""
    for name, count in scenario_checkpoints.items():
        names = [c.name for c in sim.emulator.checkpoints(name)]
        assert not [n for n in names if n.startswith("hyperv-backup")], (name, names)
        assert len(names) == count
    assert sim.emulator.staging_folders == []
    assert sim.emulator.shadows == []
    for info in sim.emulator.inventory():
        assert info.replication.state != "Suspended", info.name
        assert info.state.value != "Paused", info.name


def relative_paths(result: VMBackupResult) -> list[str]:
    return sorted(f.relative_path for f in result.files)


# --- consistency ---------------------------------------------------------------------------


def test_whole_default_host_is_backed_up_with_the_right_consistency_each(
    simulator_for_backup: Simulator, tmp_path: Path
) -> None:
    sim = simulator_for_backup
    before = {vm.name: len(sim.emulator.checkpoints(vm.name)) for vm in sim.scenario.vms}
    result = make_job(sim, tmp_path).run(Selection(all=True))
    # The pass-through disk is skipped as the policy allows, and reported: not a warning.
    assert result.status == JobStatus.SUCCESS, [
        (v.vm_name, v.error, v.warnings) for v in result.vms
    ]
    assert result.exit_code == 0
    expectations = {
        "web01": (CaptureMethod.PRODUCTION_CHECKPOINT, ConsistencyLevel.APPLICATION),
        "legacy-app": (CaptureMethod.STANDARD_CHECKPOINT, ConsistencyLevel.CRASH),
        "dev-box": (CaptureMethod.STANDARD_CHECKPOINT, ConsistencyLevel.CRASH),
        "sql01": (CaptureMethod.PRODUCTION_CHECKPOINT, ConsistencyLevel.APPLICATION),
        "erp-replica": (CaptureMethod.VSS_SNAPSHOT, ConsistencyLevel.CRASH),
        "fileserver": (CaptureMethod.PRODUCTION_CHECKPOINT, ConsistencyLevel.APPLICATION),
        "archive": (CaptureMethod.STANDARD_CHECKPOINT, ConsistencyLevel.OFFLINE),
        "kiosk": (CaptureMethod.STANDARD_CHECKPOINT, ConsistencyLevel.OFFLINE),
        ODD_NAME: (CaptureMethod.PRODUCTION_CHECKPOINT, ConsistencyLevel.APPLICATION),
    }
    for name, (method, level) in expectations.items():
        got = only(result, name)
        assert got.status == VMStatus.SUCCESS, (name, got.error)
        assert (got.method, got.achieved) == (method, level), name
        assert got.location is not None
        assert Path(got.location, "backup.json").exists()
    host_is_clean(sim, before)


@pytest.fixture
def simulator_for_backup() -> Any:
    with Simulator() as sim:
        yield sim


def test_replica_is_never_app_consistent_and_app_required_refuses_it(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator(
        {"vms": [vm("erp", state="Off", replication={"mode": "Replica", "primary_server": "hv03"})]}
    )
    result = make_job(sim, tmp_path).run(Selection(names=["erp"]))
    erp = only(result, "erp")
    assert erp.achieved == ConsistencyLevel.CRASH
    assert erp.method == CaptureMethod.VSS_SNAPSHOT
    assert "Replica" in erp.consistency_reason
    strict = make_job(sim, tmp_path, consistency=ConsistencyPolicy.APP_REQUIRED)
    refused = only(strict.run(Selection(names=["erp"])), "erp")
    assert refused.status == VMStatus.FAILED
    assert refused.error_type == "ConsistencyError"
    assert "never application-consistent" in (refused.error or "")
    assert "hv03" in (refused.error or "")


def test_app_required_fails_clearly_without_touching_the_vm(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("appliance", integration_services="none")]})
    result = make_job(sim, tmp_path, consistency=ConsistencyPolicy.APP_REQUIRED).run(
        Selection(names=["appliance"])
    )
    failed = only(result, "appliance")
    assert failed.status == VMStatus.FAILED
    assert failed.achieved is None
    assert "no VSS (backup) integration service" in (failed.error or "")
    assert "allow crash-consistent" in (failed.error or "")
    assert [e for e in sim.emulator.events_for("appliance") if "checkpoint" in e.event] == []
    assert result.exit_code == 1


def test_production_failure_falls_back_to_a_crash_consistent_standard_checkpoint(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web")]})
    sim.add_fault(
        FaultSpec(
            script="new-backup-checkpoint",
            action="fail",
            kind="production_checkpoint_failed",
            message="Production checkpoints cannot be created for 'web'.",
            vm="web",
            times=1,
        )
    )
    result = only(make_job(sim, tmp_path).run(Selection(names=["web"])), "web")
    assert result.status == VMStatus.SUCCESS
    assert result.method == CaptureMethod.STANDARD_CHECKPOINT
    assert result.achieved == ConsistencyLevel.CRASH
    assert "production checkpoint failed" in result.consistency_reason

    sim.add_fault(
        FaultSpec(
            script="new-backup-checkpoint",
            action="fail",
            kind="production_checkpoint_failed",
            message="Production checkpoints cannot be created for 'web'.",
            vm="web",
            times=1,
        )
    )
    strict = make_job(sim, tmp_path, consistency=ConsistencyPolicy.APP_REQUIRED)
    refused = only(strict.run(Selection(names=["web"])), "web")
    assert refused.status == VMStatus.FAILED
    assert refused.error_type == "ConsistencyError"
    assert "no crash-consistent fallback" in (refused.error or "")


def test_pause_and_host_vss_on_a_server_2012_host(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator(
        {
            "host": {
                "os_caption": "Microsoft Windows Server 2012 Datacenter",
                "os_version": "6.2.9200",
                "os_build": 9200,
            },
            "vms": [vm("old", integration_services="none", configuration_version="5.0")],
        }
    )
    result = only(make_job(sim, tmp_path).run(Selection(names=["old"])), "old")
    assert result.status == VMStatus.SUCCESS, result.error
    assert result.method == CaptureMethod.PAUSE_AND_VSS
    assert result.achieved == ConsistencyLevel.CRASH
    assert result.pause_seconds is not None
    assert result.pause_seconds >= 0
    events = [e.event for e in sim.emulator.events_for("old")]
    assert events.index("paused") < events.index("shadow_created") < events.index("resumed")
    assert "shadow_removed" in events
    assert any(p.endswith(".xml") for p in relative_paths(result))  # 2012-era configuration
    assert any(p.startswith("Virtual Hard Disks/") for p in relative_paths(result))
    host_is_clean(sim, {"old": 0})


# --- capture: every part, in both modes ------------------------------------------------------


TREE_VM = {
    "name": "dev",
    "checkpoint_type": "Standard",
    "disks": [
        {
            "file": {
                "path": r"D:\VMs\dev\dev_B.avhdx",
                "size": "80 GiB",
                "file_size": MiB,
                "parent": {"path": r"D:\VMs\dev\dev.vhdx", "size": "80 GiB", "file_size": 2 * MiB},
            }
        }
    ],
    "checkpoints": [
        {"name": "base"},
        {"name": "branch-a", "parent": "base"},
        {"name": "branch-b", "parent": "base"},
    ],
    "current_checkpoint": "branch-a",
}


@pytest.mark.parametrize("mode", [CaptureMode.IN_PLACE, CaptureMode.EXPORT])
def test_each_capture_mode_yields_configuration_disks_memory_and_the_whole_tree(
    make_simulator: MakeSimulator, tmp_path: Path, mode: CaptureMode
) -> None:
    sim = make_simulator({"vms": [TREE_VM]})
    tree = {c.id for c in sim.emulator.checkpoints("dev")}
    chain_files = {f.path for f in sim.emulator.vm_files("dev").files if f.role.value == "disk"}
    result = only(make_job(sim, tmp_path, capture=mode).run(Selection(names=["dev"])), "dev")
    assert result.status == VMStatus.SUCCESS, result.error
    assert result.capture_mode == mode
    paths = relative_paths(result)
    vm_id = str(sim.emulator.vm_info("dev").id).upper()
    assert any(
        p.startswith("Virtual Machines/") and vm_id in p.upper() and p.endswith(".vmcx")
        for p in paths
    )
    for checkpoint_id in tree:  # every checkpoint of the tree has its configuration
        assert any(
            p.startswith("Snapshots/") and str(checkpoint_id).upper() in p.upper() for p in paths
        ), checkpoint_id
    disk_names = {p.split("/")[-1] for p in paths if p.startswith("Virtual Hard Disks/")}
    assert {n.split("\\")[-1] for n in chain_files} <= disk_names  # every chain file
    # A standard checkpoint of a running VM saves its memory.
    assert any(p.endswith(".vmrs") for p in paths if p.startswith("Snapshots/"))
    if mode == CaptureMode.IN_PLACE:
        # Only the configuration was exported; the disks were read where they lie.
        assert not [e for e in sim.emulator.events_for("dev") if e.script == "export-vm"]
    host_is_clean(sim, {"dev": 3})


def test_in_place_disks_are_read_byte_exact_while_the_guest_keeps_writing(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("db")]})
    disk = sim.local_path(r"D:\VMs\db\db.vhdx")
    job = make_job(sim, tmp_path, capture=CaptureMode.IN_PLACE)
    result = only(job.run(Selection(names=["db"])), "db")
    assert result.status == VMStatus.SUCCESS, result.error
    stored = next(f for f in result.files if f.relative_path == "Virtual Hard Disks/db.vhdx")
    backup = (Path(result.location or "") / "Virtual Hard Disks" / "db.vhdx").read_bytes()
    assert hashlib.sha256(backup).hexdigest() == stored.sha256
    # While the checkpoint existed the guest wrote to its new tip; the merge then appended
    # those writes to the base disk. The backup is the base exactly as frozen, without them.
    merged = disk.read_bytes()
    assert len(merged) > len(backup)
    assert merged[: len(backup)] == backup
    assert [e.event for e in sim.emulator.events_for("db") if "merge" in e.event] == [
        "merge_started",
        "merge_finished",
    ]


def test_saved_vm_keeps_its_saved_state(make_simulator: MakeSimulator, tmp_path: Path) -> None:
    sim = make_simulator({"vms": [vm("kiosk", state="Saved")]})
    result = only(make_job(sim, tmp_path).run(Selection(names=["kiosk"])), "kiosk")
    assert result.achieved == ConsistencyLevel.OFFLINE
    assert any(f.role.value == "runtime_state" for f in result.files)


# --- pass-through disks ---------------------------------------------------------------------


def test_passthrough_disk_is_excluded_and_reported_with_workarounds(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    fs = vm("fs")
    fs["disks"].append({"passthrough_disk_number": 3})
    sim = make_simulator({"vms": [fs]})
    result = only(make_job(sim, tmp_path).run(Selection(names=["fs"])), "fs")
    assert result.status == VMStatus.SUCCESS
    [exclusion] = result.excluded
    assert "pass-through disk 3" in exclusion.item
    assert any("inside the guest" in w for w in exclusion.workarounds)
    assert any("VHDX" in w for w in exclusion.workarounds)
    report = json.loads(Path(result.location or "", "backup.json").read_text())
    assert report["excluded"][0]["item"] == exclusion.item
    strict = make_job(sim, tmp_path, passthrough=PassthroughPolicy.FAIL_VM)
    failed = only(strict.run(Selection(names=["fs"])), "fs")
    assert failed.status == VMStatus.FAILED
    assert failed.error_type == "PassthroughDiskError"


# --- Hyper-V Replica ------------------------------------------------------------------------


def test_conflicting_operation_is_retried_then_succeeds(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("sql", replication={"mode": "Primary"})]})
    sim.add_fault(
        FaultSpec(script="new-backup-checkpoint", action="conflicting_operation", vm="sql", times=3)
    )
    result = only(make_job(sim, tmp_path).run(Selection(names=["sql"])), "sql")
    assert result.status == VMStatus.SUCCESS, result.error
    assert result.retries == 3
    assert all("conflicting operation" in r for r in result.retry_reasons)


def test_exhausted_retries_fail_the_vm_with_a_clear_error(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("sql", replication={"mode": "Primary"}), vm("web")]})
    sim.add_fault(
        FaultSpec(
            script="new-backup-checkpoint", action="conflicting_operation", vm="sql", times=None
        )
    )
    policy_retry = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02)
    result = make_job(sim, tmp_path, retry=policy_retry).run(Selection(all=True))
    sql = only(result, "sql")
    assert sql.status == VMStatus.FAILED
    assert sql.error_type == "ConflictingOperationError"
    assert "after 3 attempt(s)" in (sql.error or "")
    assert "suspend_replication" in (sql.error or "")
    assert only(result, "web").status == VMStatus.SUCCESS  # one VM's failure stops no other
    assert result.status == JobStatus.PARTIAL
    assert result.exit_code == 3


def test_busy_replication_state_is_waited_out(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator(
        {"vms": [vm("sql", replication={"mode": "Primary", "transient_attempts": 2})]}
    )
    result = only(make_job(sim, tmp_path).run(Selection(names=["sql"])), "sql")
    assert result.status == VMStatus.SUCCESS, result.error
    assert result.retries >= 1


def test_replication_is_suspended_and_resumed_even_when_the_export_fails(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("sql", replication={"mode": "Primary"})]})
    sim.add_fault(
        FaultSpec(
            script="export-vm",
            action="fail",
            kind="export",
            message="The export failed: disk error.",
            vm="sql",
        )
    )
    job = make_job(sim, tmp_path, capture=CaptureMode.EXPORT, suspend_replication=True)
    result = only(job.run(Selection(names=["sql"])), "sql")
    assert result.status == VMStatus.FAILED
    assert "disk error" in (result.error or "")
    assert result.replication_suspended
    events = [e.event for e in sim.emulator.events_for("sql")]
    assert events.index("replication_suspended") < events.index("replication_resumed")
    assert events.index("checkpoint_removed") < events.index("replication_resumed")
    assert sim.emulator.vm_info("sql").replication.state == "Replicating"
    host_is_clean(sim, {"sql": 0})
    assert not list((tmp_path / "backups").rglob("backup.json"))  # nothing half-stored


# --- hooks ----------------------------------------------------------------------------------


def test_hooks_run_around_each_vm_and_after_hooks_run_even_on_failure(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("good"), vm(ODD_NAME)]})
    sim.add_fault(
        FaultSpec(script="new-backup-checkpoint", action="fail", message="boom", vm="good")
    )
    seen: list[tuple[str, str | None, str | None]] = []

    def python_hook(context: Any) -> None:
        seen.append(
            (
                context.phase,
                context.vm.name if context.vm else None,
                context.result.status.value if context.result else None,
            )
        )

    hooks = Hooks(
        before_vm=[PowerShellHook(command='Write-Output "start $VMName"'), python_hook],
        after_vm=[PowerShellHook(command='Write-Output "done $VMName"'), python_hook],
    )
    result = make_job(sim, tmp_path, hooks=hooks, parallel_vms=1).run(Selection(all=True))
    assert only(result, "good").status == VMStatus.FAILED
    assert ("after_vm", "good", "failed") in seen
    assert ("after_vm", ODD_NAME, "success") in seen
    recorded = [(h.phase, h.vm_name) for h in sim.emulator.hooks]
    assert ("before_vm", ODD_NAME) in recorded
    assert ("after_vm", "good") in recorded
    # The VM's name reached the host as a variable: the command text is exactly as written.
    assert {h.command for h in sim.emulator.hooks} == {
        'Write-Output "start $VMName"',
        'Write-Output "done $VMName"',
    }


def test_failing_after_hook_is_reported_never_hidden(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web")]})
    hooks = Hooks(after_vm=[PowerShellHook(command="throw 'mail server down'")])
    result = make_job(sim, tmp_path, hooks=hooks).run(Selection(names=["web"]))
    web = only(result, "web")
    assert web.status == VMStatus.SUCCESS
    assert any("mail server down" in w for w in web.warnings)
    assert result.status == JobStatus.PARTIAL
    assert result.exit_code == 3


def test_failing_before_job_hook_touches_no_vm(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web")]})
    ran_after: list[str] = []
    hooks = Hooks(
        before_job=[PowerShellHook(command="throw 'maintenance window closed'")],
        after_job=[lambda context: ran_after.append(context.phase)],
    )
    result = make_job(sim, tmp_path, hooks=hooks).run(Selection(names=["web"]))
    assert result.status == JobStatus.FAILED
    assert "maintenance window closed" in (result.error or "")
    assert result.vms == []
    assert ran_after == ["after_job"]
    assert [e for e in sim.emulator.events_for("web") if "checkpoint" in e.event] == []


# --- plan -----------------------------------------------------------------------------------


def test_plan_says_what_will_happen_without_touching_the_host(
    simulator_for_backup: Simulator, tmp_path: Path
) -> None:
    sim = simulator_for_backup
    plan = make_job(sim, tmp_path).plan(Selection(all=True, exclude=["arch*"]))
    assert plan.excluded_by_selection == ["archive"]
    by_name = {p.vm_name: p for p in plan.vms}
    assert by_name["web01"].fallback == CaptureMethod.STANDARD_CHECKPOINT
    assert "pass-through" in by_name["fileserver"].excluded[0].item
    assert by_name["erp-replica"].replication_note is not None
    assert by_name["dev-box"].checkpoint_tree == 4
    assert all(p.estimated_bytes > 0 for p in plan.vms)
    assert not [e for e in sim.emulator.events if "checkpoint" in e.event]


# --- nothing left behind, even after SIGKILL -------------------------------------------------


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_backup_killed_mid_export_is_cleaned_up_by_the_next_run(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("sql", replication={"mode": "Primary"})]})
    sim.add_fault(FaultSpec(script="export-vm", action="delay", seconds=2, vm="sql"))
    state = tmp_path / "state"
    maps = [a for d, f in sim.path_map().items() for a in ("--path-map", f"{d}={f}")]
    command = [
        sys.executable,
        "-m",
        "hyperv_backup",
        "backup",
        "sql",
        "--capture",
        "export",
        "--suspend-replication",
        "--to",
        str(tmp_path / "backups"),
        "--state-dir",
        str(state),
        "--host",
        "127.0.0.1",
        "--port",
        str(sim.port),
        "--auth",
        "basic",
        "-u",
        sim.scenario.credentials.username,
        "--ca-bundle",
        str(sim.ca_pem),
        *maps,
    ]
    env = {**os.environ, "HYPERV_BACKUP_PASSWORD": sim.scenario.credentials.password}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: any(e.event == "export_started" for e in sim.emulator.events_for("sql")))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    # The host finishes the export on its own, and is left with the job's resources.
    _wait_for(lambda: any(e.event == "export_finished" for e in sim.emulator.events_for("sql")))
    [checkpoint] = sim.emulator.checkpoints("sql")
    assert checkpoint.name.startswith("hyperv-backup-")
    assert sim.emulator.staging_folders
    assert sim.emulator.vm_info("sql").replication.state == "Suspended"

    result = make_job(sim, tmp_path, capture=CaptureMode.EXPORT).run(Selection(names=["sql"]))
    undone = "\n".join(result.cleanup.undone)
    assert "resumed replication of 'sql'" in undone
    assert "removed backup checkpoint of 'sql'" in undone
    assert "removed staging folder" in undone
    assert result.cleanup.errors == []
    assert only(result, "sql").status == VMStatus.SUCCESS
    assert result.status == JobStatus.SUCCESS
    host_is_clean(sim, {"sql": 0})
    assert Journal(state, "127.0.0.1").pending() == []


def test_leftovers_without_a_journal_are_swept_by_name(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web")]})
    # Another machine's dead run: a checkpoint with our prefix that no local journal knows.
    with HyperVHost(sim.connection_settings()) as host:
        host.runner.run(
            SCRIPTS["new-backup-checkpoint"],
            NewBackupCheckpointParams(
                vm_name="web",
                checkpoint_name="hyperv-backup-20260101T000000Z-abcdef",
                checkpoint_type="Standard",
            ),
        )
    report = make_job(sim, tmp_path).cleanup()
    assert any("hyperv-backup-20260101T000000Z-abcdef" in line for line in report.undone)
    host_is_clean(sim, {"web": 0})


def test_export_needs_staging_space_and_says_so(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator(
        {"host": {"volumes": {"C": {"free_bytes": 1024 * 1024}}}, "vms": [vm("web")]}
    )
    result = only(
        make_job(sim, tmp_path, capture=CaptureMode.EXPORT).run(Selection(names=["web"])), "web"
    )
    assert result.status == VMStatus.FAILED
    assert result.error_type == "InsufficientSpaceError"
    assert "C:" in (result.error or "")
    host_is_clean(sim, {"web": 0})
    # The preflight comes before the checkpoint: the VM was never touched.
    assert not [e for e in sim.emulator.events_for("web") if "checkpoint" in e.event]
