"""The emulated host behaves like Hyper-V: every script through the real stack.

pypsrp → WinRM/PSRP simulator → emulated host, with the shipped scripts and their contracts;
what the host did is checked on its files (under ``sim.host_root``) and in its event log.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hyperv_backup.errors import (
    CheckpointError,
    ConflictingOperationError,
    HookError,
    InsufficientSpaceError,
    ProductionCheckpointError,
    RemoteScriptError,
    ReplicationError,
    ScriptTimeoutError,
    ShadowCopyError,
)
from hyperv_backup.models import CheckpointType, VMState
from hyperv_backup.ps_scripts import SCRIPTS, FileRole
from hyperv_backup.remote.runner import ScriptRunner
from hyperv_backup.remote.session import Session
from hyperv_backup.simulator import FaultSpec, Simulator
from hyperv_backup.simulator.emulator import HANDLED_SCRIPTS

ODD_NAME = 'O\'Brien; $(Remove-Item C:\\) "ü"'
MiB = 2**20

MakeSimulator = Callable[..., Simulator]


def _vm(name: str, *, drives: int = 1, **fields: Any) -> dict[str, Any]:
    """A small running Gen2 VM: 1 MiB disk files, realistic virtual sizes."""
    disks = [
        {"file": {"path": rf"D:\VMs\{name}\disk{i}.vhdx", "size": "60 GiB", "file_size": MiB}}
        for i in range(drives)
    ]
    return {"name": name, "disks": disks, **fields}


@contextmanager
def _runner(sim: Simulator) -> Iterator[ScriptRunner]:
    with Session(sim.connection_settings()) as session:
        yield ScriptRunner(session)


def _run(runner: ScriptRunner, script: str, **fields: Any) -> Any:
    spec = SCRIPTS[script]
    return runner.run(spec, spec.params(**fields))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _events(sim: Simulator, vm: str) -> list[str]:
    return [e.event for e in sim.emulator.events_for(vm)]


def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_every_registered_script_is_emulated() -> None:
    assert set(SCRIPTS) <= HANDLED_SCRIPTS


# --- files ---------------------------------------------------------------------------------


def test_get_vm_files_covers_config_state_checkpoints_and_every_chain_file(
    make_simulator: MakeSimulator,
) -> None:
    sim = make_simulator()  # the default scenario: dev-box has a two-branch checkpoint tree
    with _runner(sim) as runner:
        listing = _run(runner, "get-vm-files", vm_name="dev-box")
        inventory = _run(runner, "get-inventory", names=["dev-box"]).vms[0]
    vm_id = str(listing.vm_id).upper()
    by_role: dict[FileRole, list[str]] = {}
    for f in listing.files:
        by_role.setdefault(f.role, []).append(f.relative_path)
        # What the host reports is what is on disk.
        assert sim.local_path(f.path).stat().st_size == f.size, f.path
        assert f.path.endswith(f.relative_path.split("\\", 1)[1])
    assert sorted(by_role[FileRole.CONFIGURATION]) == [
        f"Virtual Machines\\{vm_id}.vmcx",
        f"Virtual Machines\\{vm_id}.vmgs",
    ]
    assert by_role[FileRole.RUNTIME_STATE] == [f"Virtual Machines\\{vm_id}.vmrs"]
    for checkpoint in inventory.checkpoints:
        for suffix in ("vmcx", "vmrs", "vmgs"):
            assert (
                f"Snapshots\\{str(checkpoint.id).upper()}.{suffix}"
                in by_role[FileRole.CHECKPOINT_CONFIGURATION]
            )
    disks = by_role[FileRole.DISK]
    # The current chain (tip, parent, base) and a file of its own for each checkpoint on the
    # other branch ('Experiment', 'Experiment 2').
    current = [link.path for link in inventory.hard_disks[0].chain]
    assert all(f"Virtual Hard Disks\\{p.rsplit(chr(92), 1)[1]}" in disks for p in current)
    assert len(disks) == 5
    assert listing.active_disks == [current[0]]
    # Inventory sizes are the files' real sizes too.
    for link in inventory.hard_disks[0].chain:
        assert link.file_size == sim.local_path(link.path).stat().st_size


def test_legacy_configuration_version_uses_xml_bin_and_vsv(make_simulator: MakeSimulator) -> None:
    sim = make_simulator(
        {
            "vms": [
                _vm(
                    "old",
                    state="Saved",
                    generation=1,
                    configuration_version="5.0",
                    checkpoints=[{"name": "before patch"}],
                )
            ]
        },
        tls=False,
    )
    with _runner(sim) as runner:
        listing = _run(runner, "get-vm-files", vm_name="old")
    relative = {f.relative_path: f.role for f in listing.files}
    vm_id = str(listing.vm_id).upper()
    assert relative[f"Virtual Machines\\{vm_id}.xml"] == FileRole.CONFIGURATION
    assert relative[f"Virtual Machines\\{vm_id}\\{vm_id}.bin"] == FileRole.RUNTIME_STATE
    assert relative[f"Virtual Machines\\{vm_id}\\{vm_id}.vsv"] == FileRole.RUNTIME_STATE
    assert not any(r.endswith((".vmcx", ".vmrs", ".vmgs")) for r in relative)
    assert any(r.startswith("Snapshots\\") and r.endswith(".xml") for r in relative)


# --- checkpoints ---------------------------------------------------------------------------


def test_production_checkpoint_needs_a_healthy_vss_service_and_no_replica(
    make_simulator: MakeSimulator,
) -> None:
    sim = make_simulator(
        {
            "vms": [
                _vm("no-services", integration_services="none", checkpoint_type="Production"),
                _vm(
                    "vss-no-contact",
                    integration_services=[{"name": "VSS", "primary_status": "No Contact"}],
                ),
                _vm("vss-disabled", integration_services=[{"name": "VSS", "enabled": False}]),
                _vm("replica", state="Off", replication={"mode": "Replica"}),
                _vm("healthy"),
                _vm("switched-off", state="Off", integration_services="none"),
            ]
        },
        tls=False,
    )
    with _runner(sim) as runner:
        for name in ("no-services", "vss-no-contact", "vss-disabled", "replica"):
            with pytest.raises(ProductionCheckpointError) as caught:
                _run(
                    runner,
                    "new-backup-checkpoint",
                    vm_name=name,
                    checkpoint_name="hyperv-backup-1",
                    checkpoint_type="ProductionOnly",
                )
            assert caught.value.kind == "production_checkpoint_failed"
            assert f"Production checkpoints cannot be created for '{name}'" in str(caught.value)
            assert sim.emulator.checkpoints(name) == []
        assert "Replica" in str(caught.value)
        # The VM's own setting was changed for the attempt and put back.
        assert sim.emulator.vm_runtime("no-services").checkpoint_type == CheckpointType.PRODUCTION
        assert _events(sim, "no-services") == [
            "checkpoint_type_changed",
            "checkpoint_type_restored",
        ]
        for name in ("healthy", "switched-off"):
            taken = _run(
                runner,
                "new-backup-checkpoint",
                vm_name=name,
                checkpoint_name="hyperv-backup-1",
                checkpoint_type="ProductionOnly",
            )
            assert taken.original_checkpoint_type == CheckpointType.PRODUCTION
        # A standard checkpoint works for every VM, replicas and VMs without services included.
        for name in ("no-services", "vss-no-contact", "replica"):
            _run(
                runner,
                "new-backup-checkpoint",
                vm_name=name,
                checkpoint_name="hyperv-backup-2",
                checkpoint_type="Standard",
            )
            assert [c.name for c in sim.emulator.checkpoints(name)] == ["hyperv-backup-2"]


def test_checkpoints_disabled_on_the_vm_are_refused(make_simulator: MakeSimulator) -> None:
    sim = make_simulator({"vms": [_vm("locked", checkpoint_type="Disabled")]}, tls=False)
    with _runner(sim) as runner, pytest.raises(CheckpointError, match="disabled") as caught:
        _run(
            runner,
            "new-backup-checkpoint",
            vm_name="locked",
            checkpoint_name="hyperv-backup-1",
            checkpoint_type="Standard",
        )
    assert caught.value.kind == "checkpoint"
    assert sim.emulator.vm_runtime("locked").checkpoint_type == CheckpointType.DISABLED


def test_checkpoint_gives_each_drive_a_new_tip_and_guest_writes_land_only_there(
    make_simulator: MakeSimulator,
) -> None:
    scenario = _vm("web01", drives=2, checkpoint_type="Standard")
    scenario["disks"].append({"passthrough_disk_number": 4})
    sim = make_simulator({"vms": [scenario]}, tls=False)
    bases = [rf"D:\VMs\web01\disk{i}.vhdx" for i in range(2)]
    with _runner(sim) as runner:
        taken = _run(
            runner,
            "new-backup-checkpoint",
            vm_name="web01",
            checkpoint_name="hyperv-backup-job1",
            checkpoint_type="Standard",
        )
        checkpoint_id = str(taken.id).upper()
        assert taken.active_disks == [
            rf"D:\VMs\web01\disk{i}_{checkpoint_id}.avhdx" for i in (0, 1)
        ]
        for tip in taken.active_disks:
            assert sim.local_path(tip).stat().st_size < 64 * 2**10  # a few KiB
        frozen = {p: _digest(sim.local_path(p)) for p in bases}
        tips = {p: sim.local_path(p).stat().st_size for p in taken.active_disks}

        # The running guest writes on every call that concerns it: only the tips change.
        _run(runner, "get-vm-files", vm_name="web01")
        _run(runner, "get-vm-files", vm_name="web01")
        assert {p: _digest(sim.local_path(p)) for p in bases} == frozen
        assert all(sim.local_path(p).stat().st_size > n for p, n in tips.items())

        vm = _run(runner, "get-inventory", names=["web01"]).vms[0]
    assert [c.name for c in vm.checkpoints] == ["hyperv-backup-job1"]
    assert vm.parent_checkpoint_id == taken.id
    assert [d.path for d in vm.virtual_disks] == taken.active_disks
    assert [link.path for link in vm.hard_disks[0].chain] == [taken.active_disks[0], bases[0]]
    assert vm.hard_disks[2].is_passthrough
    assert vm.hard_disks[2].disk_number == 4
    # A standard checkpoint of a running VM saves its memory; its files sit in Snapshots.
    state_file = sim.local_path(rf"D:\Hyper-V\web01\Snapshots\{checkpoint_id}.vmrs")
    assert state_file.stat().st_size >= 256 * 2**10
    assert sim.emulator.vm_runtime("web01").checkpoint_type == CheckpointType.STANDARD
    assert "checkpoint_created" in _events(sim, "web01")


def test_removing_the_checkpoint_merges_the_tip_into_its_parent(
    make_simulator: MakeSimulator,
) -> None:
    sim = make_simulator({"vms": [_vm("web01")]}, tls=False)
    base = r"D:\VMs\web01\disk0.vhdx"
    with _runner(sim) as runner:
        before = sim.emulator.vm_info("web01")
        taken = _run(
            runner,
            "new-backup-checkpoint",
            vm_name="web01",
            checkpoint_name="hyperv-backup-job1",
            checkpoint_type="ProductionOnly",
        )
        tip = sim.local_path(taken.active_disks[0])
        snapshot = sim.local_path(rf"D:\Hyper-V\web01\Snapshots\{str(taken.id).upper()}.vmcx")
        parent_bytes = sim.local_path(base).read_bytes()
        assert snapshot.exists()

        removal = _run(
            runner,
            "remove-backup-checkpoint",
            vm_name="web01",
            checkpoint_id=taken.id,
            merge_timeout_seconds=60,
        )
        assert removal.removed
        merged = sim.local_path(base).read_bytes()
        # The parent now holds its old bytes and the tip's (including what the guest wrote).
        assert merged.startswith(parent_bytes)
        assert len(merged) > len(parent_bytes) + 8 * 2**10
        assert not tip.exists()
        assert not snapshot.exists()
        after = _run(runner, "get-inventory", names=["web01"]).vms[0]
        assert after.checkpoints == before.checkpoints == []
        assert after.parent_checkpoint_id is None
        assert [d.path for d in after.hard_disks] == [base]
        again = _run(
            runner,
            "remove-backup-checkpoint",
            vm_name="web01",
            checkpoint_id=taken.id,
            merge_timeout_seconds=60,
        )
    assert not again.removed
    assert _events(sim, "web01")[-3:] == ["checkpoint_removed", "merge_started", "merge_finished"]


def test_backup_checkpoint_on_a_vm_with_a_tree_is_merged_back_below_the_tree(
    make_simulator: MakeSimulator,
) -> None:
    sim = make_simulator(tls=False)
    with _runner(sim) as runner:
        before = sim.emulator.vm_info("dev-box")
        taken = _run(
            runner,
            "new-backup-checkpoint",
            vm_name="dev-box",
            checkpoint_name="hyperv-backup-job1",
            checkpoint_type="Standard",
        )
        grown = _run(runner, "get-inventory", names=["dev-box"]).vms[0]
        assert grown.checkpoints[-1].parent_id == before.parent_checkpoint_id
        _run(
            runner,
            "remove-backup-checkpoint",
            vm_name="dev-box",
            checkpoint_id=taken.id,
            merge_timeout_seconds=60,
        )
        after = _run(runner, "get-inventory", names=["dev-box"]).vms[0]
    assert after.checkpoints == before.checkpoints
    assert after.parent_checkpoint_id == before.parent_checkpoint_id
    assert [link.path for link in after.hard_disks[0].chain] == [
        link.path for link in before.hard_disks[0].chain
    ]


def test_slow_merge_outlasts_the_timeout_and_finishes_in_the_background(
    make_simulator: MakeSimulator,
) -> None:
    sim = make_simulator({"vms": [_vm("web01", merge_seconds=2.5)]}, tls=False)
    with _runner(sim) as runner:
        taken = _run(
            runner,
            "new-backup-checkpoint",
            vm_name="web01",
            checkpoint_name="hyperv-backup-job1",
            checkpoint_type="Standard",
        )
        with pytest.raises(CheckpointError, match="still merging") as caught:
            _run(
                runner,
                "remove-backup-checkpoint",
                vm_name="web01",
                checkpoint_id=taken.id,
                merge_timeout_seconds=1,
            )
        assert caught.value.kind == "checkpoint"
        assert sim.emulator.vm_runtime("web01").operation == "merging"
        # Hyper-V refuses a new checkpoint while the VM is merging.
        with pytest.raises(ConflictingOperationError):
            _run(
                runner,
                "new-backup-checkpoint",
                vm_name="web01",
                checkpoint_name="hyperv-backup-job2",
                checkpoint_type="Standard",
            )
    _wait_for(lambda: "merge_finished" in _events(sim, "web01"))
    assert sim.emulator.vm_runtime("web01").operation is None
    assert not sim.local_path(taken.active_disks[0]).exists()


# --- exports -------------------------------------------------------------------------------


def test_export_vm_writes_the_export_layout_with_byte_identical_files(
    make_simulator: MakeSimulator,
) -> None:
    sim = make_simulator(
        {"vms": [_vm("web01", drives=2, checkpoints=[{"name": "patched"}])]}, tls=False
    )
    with _runner(sim) as runner:
        taken = _run(
            runner,
            "new-backup-checkpoint",
            vm_name="web01",
            checkpoint_name="hyperv-backup-job1",
            checkpoint_type="Standard",
        )
        staging = _run(
            runner,
            "new-staging-folder",
            root=r"D:\Staging",
            job_id="job1",
            vm_id=sim.emulator.vm_info("web01").id,
            required_bytes=10 * MiB,
        )
        listing = _run(runner, "get-vm-files", vm_name="web01")
        exported = _run(runner, "export-vm", vm_name="web01", destination=staging.path)
    assert exported.path == staging.path + "\\web01"
    on_disk = sorted(
        str(p.relative_to(sim.local_path(exported.path))).replace("/", "\\")
        for p in sim.local_path(exported.path).rglob("*")
        if p.is_file()
    )
    assert sorted(f.relative_path for f in exported.files) == on_disk
    assert {r.split("\\")[0] for r in on_disk} == {
        "Virtual Machines",
        "Snapshots",
        "Virtual Hard Disks",
    }
    assert {f.relative_path for f in listing.files} == set(on_disk)
    snapshots = [r for r in on_disk if r.startswith("Snapshots\\")]
    assert any(str(taken.id).upper() in r for r in snapshots)  # the backup checkpoint's too
    host_files = {f.relative_path: f.path for f in listing.files}
    active = set(listing.active_disks)
    for f in exported.files:
        copy = sim.local_path(f.path).read_bytes()
        assert len(copy) == f.size
        original = sim.local_path(host_files[f.relative_path]).read_bytes()
        if host_files[f.relative_path] in active:
            assert original.startswith(copy)  # the live tip, as it was when the export began
        else:
            assert copy == original, f.relative_path


def test_export_vm_config_has_no_disks_and_sanitizes_an_odd_vm_name(
    make_simulator: MakeSimulator,
) -> None:
    sim = make_simulator({"vms": [{"name": ODD_NAME}]}, tls=False)
    with _runner(sim) as runner:
        taken = _run(
            runner,
            "new-backup-checkpoint",
            vm_name=ODD_NAME,
            checkpoint_name="hyperv-backup-job1",
            checkpoint_type="ProductionOnly",
        )
        exported = _run(
            runner,
            "export-vm-config",
            vm_name=ODD_NAME,
            checkpoint_id=taken.id,
            destination=r"D:\Staging\job1",
        )
        # Windows forbids : \ " in a folder name: the export folder replaces them.
        assert exported.path == "D:\\Staging\\job1\\O'Brien; $(Remove-Item C__) _ü_"
        assert {f.relative_path.split("\\")[0] for f in exported.files} == {
            "Virtual Machines",
            "Snapshots",
        }
        assert all(sim.local_path(f.path).stat().st_size == f.size for f in exported.files)
        full = _run(runner, "export-vm", vm_name=ODD_NAME, destination=r"D:\Staging\job2")
    assert any(f.role == FileRole.DISK for f in full.files)
    assert sim.local_path(full.path).is_dir()


def test_slow_export_goes_on_after_the_client_gives_up(make_simulator: MakeSimulator) -> None:
    sim = make_simulator({"vms": [_vm("web01", drives=2)]}, tls=False)
    sim.add_fault(FaultSpec(script="export-vm", action="delay", seconds=3))
    with _runner(sim) as runner:
        with pytest.raises(ScriptTimeoutError):
            runner.run(
                SCRIPTS["export-vm"],
                SCRIPTS["export-vm"].params(vm_name="web01", destination=r"D:\Staging"),
                deadline=1,
            )
        folder = sim.local_path(r"D:\Staging\web01")
        assert folder.is_dir()  # in progress: files are being written
        assert "export_finished" not in _events(sim, "web01")
        _wait_for(lambda: "export_finished" in _events(sim, "web01"))
    disks = sorted((folder / "Virtual Hard Disks").iterdir())
    assert [p.stat().st_size for p in disks] == [MiB + 64 * 2**10] * 2  # one guest write


def test_failed_export_leaves_its_partial_folder_and_config_export_cleans_up(
    make_simulator: MakeSimulator,
) -> None:
    sim = make_simulator({"vms": [_vm("web01", drives=2)]}, tls=False)
    sim.add_fault(FaultSpec(script="export-vm", action="fail", kind="export", message="Boom."))
    sim.add_fault(FaultSpec(script="export-vm-config", action="fail", message="Boom."))
    with _runner(sim) as runner:
        with pytest.raises(RemoteScriptError, match="Boom"):
            _run(runner, "export-vm", vm_name="web01", destination=r"D:\Staging\a")
        assert any(sim.local_path(r"D:\Staging\a\web01").rglob("*.vmcx"))
        taken = _run(
            runner,
            "new-backup-checkpoint",
            vm_name="web01",
            checkpoint_name="x",
            checkpoint_type="Standard",
        )
        with pytest.raises(RemoteScriptError, match="Boom"):
            _run(
                runner,
                "export-vm-config",
                vm_name="web01",
                checkpoint_id=taken.id,
                destination=r"D:\Staging\b",
            )
    assert not sim.local_path(r"D:\Staging\b\web01").exists()
    assert sim.emulator.vm_runtime("web01").operation is None


# --- pause + host VSS ----------------------------------------------------------------------


def test_paused_shadow_is_frozen_while_the_vm_runs_on(make_simulator: MakeSimulator) -> None:
    scenario = _vm("web01")
    scenario["disks"].append({"file": {"path": r"E:\Data\web01-data.vhdx", "file_size": MiB}})
    sim = make_simulator({"vms": [scenario]}, tls=False)
    data = r"E:\Data\web01-data.vhdx"
    with _runner(sim) as runner:
        started = time.monotonic()
        made = _run(
            runner,
            "new-paused-shadow",
            vm_name="web01",
            volumes=["D:\\", "e"],
            link_root=r"C:\ProgramData\hyperv-backup\job1",
        )
        elapsed = time.monotonic() - started
        assert made.resumed
        assert 0 < made.pause_seconds < elapsed
        assert [s.volume for s in made.shadows] == ["D:\\", "E:\\"]
        assert [s.link_path for s in made.shadows] == [
            r"C:\ProgramData\hyperv-backup\job1\D",
            r"C:\ProgramData\hyperv-backup\job1\E",
        ]
        assert sim.local_path(made.shadows[1].link_path).is_symlink()
        through_link = sim.local_path(r"C:\ProgramData\hyperv-backup\job1\E\Data\web01-data.vhdx")
        frozen = through_link.read_bytes()
        assert frozen == sim.local_path(data).read_bytes()
        assert sim.emulator.vm_runtime("web01").state == VMState.RUNNING

        _run(runner, "get-vm-files", vm_name="web01")  # the guest writes again
        assert through_link.read_bytes() == frozen
        assert sim.local_path(data).stat().st_size > len(frozen)

        for shadow in made.shadows:
            removal = _run(runner, "remove-shadow", shadow_id=shadow.id, link_path=shadow.link_path)
            assert removal.removed
            assert not sim.local_path(shadow.link_path).is_symlink()
        again = _run(
            runner,
            "remove-shadow",
            shadow_id=made.shadows[0].id,
            link_path=made.shadows[0].link_path,
        )
    assert not again.removed
    assert sim.emulator.shadows == []
    assert not any((sim.host_root / ".shadows").iterdir())
    assert _events(sim, "web01")[:4] == ["paused", "shadow_created", "shadow_created", "resumed"]


def test_vm_is_resumed_when_the_shadow_step_fails(make_simulator: MakeSimulator) -> None:
    sim = make_simulator({"vms": [_vm("web01"), _vm("idle", state="Off")]}, tls=False)
    sim.add_fault(
        FaultSpec(
            script="new-paused-shadow",
            action="fail",
            kind="shadow",
            message="VSS writer timed out.",
            seconds=0.3,
            vm="web01",
        )
    )
    link_root = r"C:\ProgramData\hyperv-backup\job1"
    with _runner(sim) as runner:
        with pytest.raises(ShadowCopyError, match="VSS writer timed out"):
            _run(runner, "new-paused-shadow", vm_name="web01", volumes=["D:"], link_root=link_root)
        assert _events(sim, "web01") == ["paused", "fault_injected", "resumed"]
        resumed = sim.emulator.events_for("web01")[-1]
        assert resumed.detail["pause_seconds"] >= 0.3
        assert sim.emulator.vm_runtime("web01").state == VMState.RUNNING
        assert not sim.local_path(link_root + r"\D").exists()
        # A VM that is off is not paused at all.
        made = _run(runner, "new-paused-shadow", vm_name="idle", volumes=["D"], link_root=link_root)
    assert not made.resumed
    assert made.pause_seconds == 0
    assert "paused" not in _events(sim, "idle")


# --- replication and hooks -----------------------------------------------------------------


def test_replication_suspends_and_resumes_and_unreplicated_vms_are_refused(
    make_simulator: MakeSimulator,
) -> None:
    primary = {"mode": "Primary", "primary_server": "hv01", "replica_server": "hv02"}
    sim = make_simulator({"vms": [_vm("sql01", replication=primary), _vm("web01")]}, tls=False)
    with _runner(sim) as runner:
        suspended = _run(runner, "suspend-vm-replication", vm_name="sql01")
        assert (suspended.state_before, suspended.state_after) == ("Replicating", "Suspended")
        state = _run(runner, "get-inventory", names=["sql01"]).vms[0].replication.state
        assert state == "Suspended"
        resumed = _run(runner, "resume-vm-replication", vm_name="sql01")
        assert (resumed.state_before, resumed.state_after) == ("Suspended", "Replicating")
        with pytest.raises(ReplicationError) as caught:
            _run(runner, "suspend-vm-replication", vm_name="web01")
    assert caught.value.kind == "replication"
    assert _events(sim, "sql01") == ["replication_suspended", "replication_resumed"]


def test_replication_makes_backups_fail_a_few_times_then_they_succeed(
    make_simulator: MakeSimulator,
) -> None:
    busy = {"mode": "Primary", "transient_attempts": 2}
    sim = make_simulator({"vms": [_vm("sql01", replication=busy)]}, tls=False)
    with _runner(sim) as runner:
        assert sim.emulator.vm_info("sql01").replication.state == "Resynchronizing"
        with pytest.raises(ConflictingOperationError) as caught:
            _run(runner, "export-vm", vm_name="sql01", destination=r"D:\Staging")
        assert str(caught.value) == (
            "The virtual machine 'sql01' cannot start a backup operation because it is "
            "currently executing a conflicting operation. Try the backup again."
        )
        assert caught.value.kind == "unexpected"
        assert "Microsoft.HyperV.PowerShell" in (caught.value.fqid or "")
        with pytest.raises(ConflictingOperationError):
            _run(
                runner,
                "new-backup-checkpoint",
                vm_name="sql01",
                checkpoint_name="hyperv-backup-1",
                checkpoint_type="ProductionOnly",
            )
        _run(
            runner,
            "new-backup-checkpoint",
            vm_name="sql01",
            checkpoint_name="hyperv-backup-1",
            checkpoint_type="ProductionOnly",
        )
        assert _run(runner, "get-inventory").vms[0].replication.state == "Replicating"


def test_suspending_replication_lets_the_backup_through(make_simulator: MakeSimulator) -> None:
    busy = {"mode": "Primary", "transient_attempts": 5}
    sim = make_simulator({"vms": [_vm("sql01", replication=busy)]}, tls=False)
    with _runner(sim) as runner:
        hook = _run(
            runner,
            "invoke-hook",
            command="Suspend-VMReplication -VMName $VMName",
            phase="before_vm",
            job_id="job1",
            vm_name="sql01",
            vm_id="x",
        )
        assert hook.output == []
        _run(
            runner,
            "new-backup-checkpoint",
            vm_name="sql01",
            checkpoint_name="hyperv-backup-1",
            checkpoint_type="Standard",
        )
        _run(
            runner,
            "invoke-hook",
            command="Resume-VMReplication -VMName $VMName",
            phase="after_vm",
            job_id="job1",
            vm_name="sql01",
        )
        with pytest.raises(HookError, match=r"^maintenance window closed$") as caught:
            _run(
                runner,
                "invoke-hook",
                command="throw 'maintenance window closed'",
                phase="after_job",
                job_id="job1",
            )
    assert caught.value.kind == "hook"
    assert [(h.phase, h.vm_name) for h in sim.emulator.hooks] == [
        ("before_vm", "sql01"),
        ("after_vm", "sql01"),
        ("after_job", None),
    ]
    assert sim.emulator.vm_info("sql01").replication.state == "Resynchronizing"


# --- staging and leftovers -----------------------------------------------------------------


def test_staging_folder_checks_space_and_removal_never_touches_user_folders(
    make_simulator: MakeSimulator,
) -> None:
    sim = make_simulator(
        {"host": {"volumes": {"S": {"free_bytes": "1 GiB"}}}, "vms": [_vm("web01")]}, tls=False
    )
    vm_id = sim.emulator.vm_info("web01").id
    user_file = sim.local_path(r"S:\Users\alice\thesis.docx")
    user_file.parent.mkdir(parents=True)
    user_file.write_text("years of work")
    with _runner(sim) as runner:
        with pytest.raises(InsufficientSpaceError, match=r"1\.00 GiB free") as caught:
            _run(
                runner,
                "new-staging-folder",
                root=r"S:\Staging",
                job_id="job1",
                vm_id=vm_id,
                required_bytes=float(2 * 2**30),
            )
        assert caught.value.kind == "insufficient_space"
        staging = _run(
            runner,
            "new-staging-folder",
            root=r"S:\Staging",
            job_id="job1",
            vm_id=vm_id,
            required_bytes=float(MiB),
        )
        assert staging.path == rf"S:\Staging\hyperv-backup-job1\{vm_id}"
        assert staging.free_bytes == 2**30
        assert sim.local_path(staging.path).is_dir()
        assert sim.emulator.staging_folders == [staging.path]
        for victim in (r"S:\Users\alice", r"S:\Users", r"S:\Staging"):
            with pytest.raises(RemoteScriptError, match="Refusing"):
                _run(runner, "remove-staging-folder", path=victim)
        assert user_file.read_text() == "years of work"
        assert _run(runner, "remove-staging-folder", path=staging.path).removed
        assert not sim.local_path(r"S:\Staging\hyperv-backup-job1").exists()  # job folder too
        assert sim.emulator.staging_folders == []
        assert not _run(runner, "remove-staging-folder", path=staging.path).removed
        # The cleanup sweep removes whole job folders, and nothing above them.
        again = _run(
            runner,
            "new-staging-folder",
            root=r"S:\Staging",
            job_id="job2",
            vm_id=vm_id,
            required_bytes=0.0,
        )
        job_folder = r"S:\Staging\hyperv-backup-job2"
        assert _run(runner, "remove-staging-folder", path=job_folder).removed
        assert not sim.local_path(again.path).exists()
        assert sim.local_path(r"S:\Staging").is_dir()
        assert sim.emulator.staging_folders == []


def test_leftovers_of_earlier_runs_are_found(make_simulator: MakeSimulator) -> None:
    sim = make_simulator(
        {
            "vms": [
                _vm(
                    "web01",
                    checkpoints=[{"name": "hyperv-backup-old", "snapshot_type": "Recovery"}],
                ),
                _vm("db01", checkpoints=[{"name": "Before upgrade"}]),
            ]
        },
        tls=False,
    )
    with _runner(sim) as runner:
        _run(
            runner,
            "new-backup-checkpoint",
            vm_name="db01",
            checkpoint_name="hyperv-backup-job7 db01",
            checkpoint_type="Standard",
        )
        _run(
            runner,
            "new-staging-folder",
            root=r"D:\Staging",
            job_id="job7",
            vm_id=sim.emulator.vm_info("db01").id,
            required_bytes=0.0,
        )
        sim.local_path(r"D:\Staging\unrelated").mkdir()
        found = _run(
            runner,
            "get-backup-leftovers",
            prefix="hyperv-backup",
            staging_roots=[r"D:\Staging", r"D:\Nowhere", r"Q:\Missing"],
        )
    assert sorted((c.vm_name, c.name, c.snapshot_type) for c in found.checkpoints) == [
        ("db01", "hyperv-backup-job7 db01", "Standard"),
        ("web01", "hyperv-backup-old", "Recovery"),
    ]
    assert found.staging_folders == [r"D:\Staging\hyperv-backup-job7"]


# --- faults and lifecycle ------------------------------------------------------------------


def test_fault_with_a_vm_strikes_only_that_vm(make_simulator: MakeSimulator) -> None:
    sim = make_simulator({"vms": [_vm("web01"), _vm("web02")]}, tls=False)
    sim.add_fault(
        FaultSpec(script="get-vm-files", action="conflicting_operation", vm="web02", times=None)
    )
    with _runner(sim) as runner:
        _run(runner, "get-vm-files", vm_name="web01")
        with pytest.raises(ConflictingOperationError, match="'web02'"):
            _run(runner, "get-vm-files", vm_name="web02")


def test_host_files_live_under_host_root_and_are_removed_on_stop(tmp_path: Path) -> None:
    root = tmp_path / "host"
    with Simulator({"vms": [_vm("web01")]}, tls=False, host_root=root) as sim:
        assert sim.host_root == root.resolve()
        assert sim.path_map() == {"C:\\": root.resolve() / "C", "D:\\": root.resolve() / "D"}
        assert (
            sim.local_path(r"d:\vms\WEB01\disk0.vhdx") == root.resolve() / "D/VMs/web01/disk0.vhdx"
        )
        with _runner(sim) as runner:
            _run(runner, "new-paused-shadow", vm_name="web01", volumes=["D"], link_root=r"C:\L")
        assert any(root.rglob("*.vhdx"))
    assert not root.exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="empty"):
        Simulator({"vms": [_vm("web01")]}, tls=False, host_root=tmp_path / "busy").start()
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_stopping_mid_export_cuts_it_short_and_leaves_no_file(tmp_path: Path) -> None:
    root = tmp_path / "host"
    sim = Simulator({"vms": [_vm("web01")]}, tls=False, host_root=root)
    sim.start()
    sim.add_fault(FaultSpec(script="export-vm", action="delay", seconds=30))
    errors: list[BaseException] = []

    def export() -> None:
        try:
            with _runner(sim) as runner:
                _run(runner, "export-vm", vm_name="web01", destination=r"D:\Staging")
        except BaseException as err:  # the connection goes away with the simulator
            errors.append(err)

    client = threading.Thread(target=export)
    client.start()
    _wait_for(lambda: "export_started" in _events(sim, "web01"))
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 5
    client.join(30)
    assert errors
    time.sleep(0.2)  # nothing writes after stop() returned
    assert not root.exists()


def test_vms_are_backed_up_in_parallel_sessions(make_simulator: MakeSimulator) -> None:
    names = [f"vm{i}" for i in range(4)]
    sim = make_simulator({"vms": [_vm(n, drives=2) for n in names]}, tls=False)
    sim.add_fault(FaultSpec(script="export-vm", action="delay", seconds=1, times=None))
    failures: list[BaseException] = []

    def back_up(name: str) -> None:
        try:
            with _runner(sim) as runner:
                taken = _run(
                    runner,
                    "new-backup-checkpoint",
                    vm_name=name,
                    checkpoint_name="hyperv-backup-job1",
                    checkpoint_type="ProductionOnly",
                )
                _run(runner, "export-vm", vm_name=name, destination=rf"D:\Staging\{name}")
                _run(
                    runner,
                    "remove-backup-checkpoint",
                    vm_name=name,
                    checkpoint_id=taken.id,
                    merge_timeout_seconds=60,
                )
        except BaseException as err:
            failures.append(err)

    started = time.monotonic()
    threads = [threading.Thread(target=back_up, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert time.monotonic() - started < 3.5  # four one-second exports overlapped
    for name in names:
        assert sim.emulator.checkpoints(name) == []
        assert _events(sim, name).count("export_finished") == 1


def test_default_scenario_materializes_small_and_fast() -> None:
    started = time.monotonic()
    with Simulator(tls=False) as sim:
        took = time.monotonic() - started
        root = sim.host_root
        total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        for vm in sim.emulator.inventory():
            for disk in vm.virtual_disks:
                for link in disk.chain:
                    assert sim.local_path(link.path).stat().st_size == link.file_size
    assert took < 2
    assert total <= 125 * MiB
    assert not root.exists()


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
def test_base_disks_can_be_real_vhdx_images() -> None:
    scenario = {"vms": [{"name": "web01", "disks": [{"file": {"path": r"D:\VMs\web01.vhdx",
                "size": "500 GiB", "file_size": 2 * MiB}}]}]}  # fmt: skip
    with Simulator(scenario, tls=False, disk_images="qemu") as sim:
        image = sim.local_path(r"D:\VMs\web01.vhdx")
        info = subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert '"format": "vhdx"' in info
        assert f'"virtual-size": {500 * 2**30}' in info
        reported = sim.emulator.vm_info("web01").hard_disks[0].chain[0].file_size
        assert reported == os.path.getsize(image)
