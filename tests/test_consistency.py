"""The consistency rules: which method each VM gets, and what level it can claim."""

from __future__ import annotations

import pytest

from hyperv_backup import (
    CaptureMethod,
    CheckpointType,
    ConsistencyLevel,
    ConsistencyPolicy,
    HostInfo,
    IntegrationService,
    ReplicationInfo,
    ReplicationMode,
    VMInfo,
    VMState,
    decide_consistency,
)

SERVER_2022 = HostInfo(
    computer_name="HV01",
    os_caption="Microsoft Windows Server 2022 Datacenter",
    os_version="10.0.20348",
    os_build=20348,
    product_type=3,
    hyperv_module=True,
    powershell_version="5.1",
)
SERVER_2012R2 = SERVER_2022.model_copy(
    update={"os_caption": "Windows Server 2012 R2", "os_version": "6.3.9600", "os_build": 9600}
)
SERVER_2012 = SERVER_2022.model_copy(
    update={"os_caption": "Windows Server 2012", "os_version": "6.2.9200", "os_build": 9200}
)
VSS_OK = IntegrationService(
    name="VSS",
    id="Microsoft:x\\35FA2E29-EA23-4236-96AE-3A6EBACBA440",
    enabled=True,
    primary_status="OK",
)


def vm(**changes: object) -> VMInfo:
    base = VMInfo(
        id="6f0c2c3e-8f2a-4d7c-9d55-0d8f5a0e7c11",
        name="web01",
        state=VMState.RUNNING,
        generation=2,
        configuration_version="10.0",
        path="D:\\VMs\\web01",
        checkpoint_type=CheckpointType.PRODUCTION,
        memory_startup=1,
        memory_assigned=1,
        has_saved_state=False,
        integration_services=[VSS_OK],
    )
    return base.model_copy(update=changes)


def test_healthy_guest_vss_gets_a_production_checkpoint_with_standard_fallback() -> None:
    decision = decide_consistency(SERVER_2022, vm(), ConsistencyPolicy.APP_PREFERRED)
    assert decision.method == CaptureMethod.PRODUCTION_CHECKPOINT
    assert decision.level == ConsistencyLevel.APPLICATION
    assert decision.fallback == CaptureMethod.STANDARD_CHECKPOINT
    assert decision.fallback_level == ConsistencyLevel.CRASH


def test_app_required_has_no_fallback() -> None:
    decision = decide_consistency(SERVER_2022, vm(), ConsistencyPolicy.APP_REQUIRED)
    assert decision.method == CaptureMethod.PRODUCTION_CHECKPOINT
    assert decision.fallback is None


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"integration_services": []}, "no VSS"),
        (
            {"integration_services": [VSS_OK.model_copy(update={"primary_status": "No Contact"})]},
            "No Contact",
        ),
        ({"integration_services": [VSS_OK.model_copy(update={"enabled": False})]}, "disabled"),
        ({"checkpoint_type": CheckpointType.STANDARD}, "standard checkpoints"),
    ],
)
def test_without_usable_guest_vss_a_standard_checkpoint_is_crash_consistent(
    changes: dict[str, object], why: str
) -> None:
    decision = decide_consistency(SERVER_2022, vm(**changes), ConsistencyPolicy.APP_PREFERRED)
    assert decision.method == CaptureMethod.STANDARD_CHECKPOINT
    assert decision.level == ConsistencyLevel.CRASH
    assert why in decision.reason
    refused = decide_consistency(SERVER_2022, vm(**changes), ConsistencyPolicy.APP_REQUIRED)
    assert refused.method is None
    assert refused.refusal is not None
    assert why in refused.refusal


def test_crash_ok_never_involves_the_guest() -> None:
    decision = decide_consistency(SERVER_2022, vm(), ConsistencyPolicy.CRASH_OK)
    assert decision.method == CaptureMethod.STANDARD_CHECKPOINT
    assert decision.level == ConsistencyLevel.CRASH


def test_checkpoints_disabled_means_pause_and_host_vss() -> None:
    decision = decide_consistency(
        SERVER_2022, vm(checkpoint_type=CheckpointType.DISABLED), ConsistencyPolicy.APP_PREFERRED
    )
    assert decision.method == CaptureMethod.PAUSE_AND_VSS
    assert decision.level == ConsistencyLevel.CRASH


def test_server_2012_uses_pause_and_host_vss() -> None:
    decision = decide_consistency(
        SERVER_2012, vm(integration_services=[]), ConsistencyPolicy.APP_PREFERRED
    )
    assert decision.method == CaptureMethod.PAUSE_AND_VSS


def test_server_2012_r2_has_standard_but_no_production_checkpoints() -> None:
    decision = decide_consistency(SERVER_2012R2, vm(), ConsistencyPolicy.APP_PREFERRED)
    assert decision.method == CaptureMethod.STANDARD_CHECKPOINT
    assert "2016" in decision.reason


@pytest.mark.parametrize("mode", [ReplicationMode.REPLICA, ReplicationMode.EXTENDED_REPLICA])
def test_replica_is_never_application_consistent(mode: ReplicationMode) -> None:
    replica = vm(state=VMState.OFF, replication=ReplicationInfo(mode=mode, primary_server="hv03"))
    decision = decide_consistency(SERVER_2022, replica, ConsistencyPolicy.APP_PREFERRED)
    assert decision.level == ConsistencyLevel.CRASH
    assert decision.method == CaptureMethod.VSS_SNAPSHOT
    refused = decide_consistency(SERVER_2022, replica, ConsistencyPolicy.APP_REQUIRED)
    assert refused.refusal is not None
    assert "hv03" in refused.refusal


def test_off_vm_is_offline_consistent_even_when_app_is_required() -> None:
    decision = decide_consistency(
        SERVER_2022, vm(state=VMState.OFF), ConsistencyPolicy.APP_REQUIRED
    )
    assert decision.method == CaptureMethod.STANDARD_CHECKPOINT
    assert decision.level == ConsistencyLevel.OFFLINE
