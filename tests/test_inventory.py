"""Inventory end to end: pypsrp → WinRM/PSRP simulator → emulated host → typed models."""

from __future__ import annotations

import pytest

from hyperv_backup import (
    HyperVHost,
    ProtocolError,
    UnsupportedHostError,
    VMNotFoundError,
)
from hyperv_backup.ps_scripts import SCRIPTS, GetInventoryParams
from hyperv_backup.simulator import Simulator

ODD_NAME = 'O\'Brien; $(Remove-Item C:\\) "ü"'


def test_inventory_of_default_scenario_round_trips_every_field(simulator: Simulator) -> None:
    # The host's run-time view: the scenario's VMs with the real sizes of their files.
    expected = simulator.emulator.inventory()
    with HyperVHost(simulator.connection_settings()) as host:
        vms = host.inventory()
    assert [vm.name for vm in vms] == [vm.name for vm in expected]
    for got, want in zip(vms, expected, strict=True):
        # Whole-model equality: every field, nested disks, chains, checkpoints, replication.
        assert got == want, got.name
    assert len(vms) == 9


def test_host_info_round_trips(simulator: Simulator) -> None:
    with HyperVHost(simulator.connection_settings()) as host:
        info = host.ensure_supported()
    assert info == simulator.scenario.host.info()
    assert info.server_release == "2022"
    assert info.is_server


def test_odd_vm_name_arrives_byte_exact_as_a_parameter(simulator: Simulator) -> None:
    with HyperVHost(simulator.connection_settings()) as host:
        vms = host.inventory([ODD_NAME])
    assert [vm.name for vm in vms] == [ODD_NAME]
    call = simulator.emulator.calls_to("get-inventory")[-1]
    # The value reached the host's parameter binding unchanged, as data...
    assert call.raw_parameters == {"Name": [ODD_NAME]}
    assert call.params == GetInventoryParams(names=[ODD_NAME])
    # ...and the script text sent is exactly the shipped file: nothing was spliced into it.
    assert ODD_NAME not in SCRIPTS["get-inventory"].text


def test_wildcards_select_and_deduplicate(simulator: Simulator) -> None:
    with HyperVHost(simulator.connection_settings()) as host:
        vms = host.inventory(["*-box", "dev-*", "WEB0?", "[ae]r*"])
    assert [vm.name for vm in vms] == ["dev-box", "web01", "erp-replica", "archive"]


def test_wildcard_matching_nothing_is_not_an_error(simulator: Simulator) -> None:
    with HyperVHost(simulator.connection_settings()) as host:
        assert host.inventory(["nothing-like-this-*"]) == []


def test_unknown_vm_name_raises_vm_not_found(simulator: Simulator) -> None:
    with (
        HyperVHost(simulator.connection_settings()) as host,
        pytest.raises(VMNotFoundError) as caught,
    ):
        host.inventory(["web01", "no-such-vm"])
    assert caught.value.target == "no-such-vm"
    assert "no-such-vm" in str(caught.value)
    assert isinstance(caught.value, LookupError)


def test_desktop_windows_host_is_refused_clearly(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(
        {
            "host": {
                "computer_name": "LAPTOP7",
                "os_caption": "Microsoft Windows 11 Pro",
                "os_version": "10.0.22631",
                "os_build": 22631,
                "product_type": 1,
            },
            "vms": [{"name": "test-vm"}],
        }
    )
    with (
        HyperVHost(sim.connection_settings()) as host,
        pytest.raises(UnsupportedHostError) as caught,
    ):
        host.inventory()
    message = str(caught.value)
    assert "LAPTOP7" in message
    assert "Windows 11 Pro" in message
    assert "desktop edition" in message
    assert "Windows Server" in message
    assert sim.emulator.calls_to("get-inventory") == []  # refused before touching VMs


def test_host_without_hyperv_module_is_refused(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator({"host": {"hyperv_module": False}})
    with (
        HyperVHost(sim.connection_settings()) as host,
        pytest.raises(
            UnsupportedHostError, match="Install-WindowsFeature -Name Hyper-V-PowerShell"
        ),
    ):
        host.inventory()


def test_server_2012_r2_is_recognised(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(
        {
            "host": {
                "os_caption": "Microsoft Windows Server 2012 R2 Standard",
                "os_version": "6.3.9600",
                "os_build": 9600,
            }
        }
    )
    with HyperVHost(sim.connection_settings()) as host:
        assert host.ensure_supported().server_release == "2012 R2"


def test_result_that_does_not_match_the_model_is_a_protocol_error(simulator: Simulator) -> None:
    with (
        HyperVHost(simulator.connection_settings()) as host,
        pytest.raises(ProtocolError, match="does not match InventoryResult"),
    ):
        host.runner._validate_result(SCRIPTS["get-inventory"], {"vms": [{"name": "x"}]})
