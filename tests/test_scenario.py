"""Scenario files: validated, with clear errors, and realistic defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperv_backup import ConfigError, ReplicationMode, VMState
from hyperv_backup.simulator import default_scenario_path, load_scenario

ODD_NAME = 'O\'Brien; $(Remove-Item C:\\) "ü"'


def test_default_scenario_has_every_case_the_engine_must_handle() -> None:
    scenario = load_scenario(default_scenario_path())
    vms = {vm.name: vm.info(scenario.host) for vm in scenario.vms}
    running_with_vss = [
        v
        for v in vms.values()
        if v.state == VMState.RUNNING
        and v.generation == 2
        and v.backup_service
        and v.backup_service.is_healthy
    ]
    assert running_with_vss
    assert any(v.state == VMState.RUNNING and v.backup_service is None for v in vms.values())
    assert any(len(v.checkpoints) >= 3 for v in vms.values())
    assert any(v.replication.mode == ReplicationMode.PRIMARY for v in vms.values())
    assert any(v.replication.mode == ReplicationMode.REPLICA for v in vms.values())
    assert any(v.passthrough_disks for v in vms.values())
    assert any(v.state == VMState.OFF for v in vms.values())
    assert ODD_NAME in vms


def test_checkpoint_tree_links_parents_by_id() -> None:
    scenario = load_scenario()
    dev = next(vm for vm in scenario.vms if vm.name == "dev-box").info(scenario.host)
    by_name = {c.name: c for c in dev.checkpoints}
    assert by_name["Before upgrade"].parent_id is None
    assert by_name["Experiment 2"].parent_id == by_name["Experiment"].id
    assert dev.parent_checkpoint_id == by_name["After upgrade"].id
    assert [link.vhd_type for link in dev.hard_disks[0].chain] == [
        "Differencing",
        "Differencing",
        "Dynamic",
    ]


def test_sizes_accept_units() -> None:
    scenario = load_scenario({"vms": [{"name": "a", "memory_startup": "1.5 GiB"}]})
    assert scenario.vms[0].memory_startup == 1536 * 2**20


def test_invalid_scenario_names_file_and_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "vms:\n"
        "  - name: a\n    checkpoints: [{name: x, parent: nope}]\n"
        "  - name: b\n    state: Flying\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert str(path) in message
    assert "unknown parent 'nope'" in message
    assert "vms.1.state" in message


def test_missing_scenario_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read scenario file"):
        load_scenario(tmp_path / "missing.yaml")


def test_duplicate_vm_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="unique"):
        load_scenario({"vms": [{"name": "a"}, {"name": "a"}]})
