"""The same checks against a real Hyper-V host; skipped unless one is configured.

Set ``HYPERV_BACKUP_LIVE_HOST`` (and ``HYPERV_BACKUP_LIVE_USERNAME``,
``HYPERV_BACKUP_LIVE_PASSWORD``, optionally ``HYPERV_BACKUP_LIVE_AUTH`` (default negotiate),
``HYPERV_BACKUP_LIVE_CA_BUNDLE``, ``HYPERV_BACKUP_LIVE_NO_TLS=1``) to run them. They only
read: nothing on the host is changed.
"""

from __future__ import annotations

import os
import uuid

import pytest
from pydantic import SecretStr

from hyperv_backup import ConnectionSettings, HyperVHost, VMNotFoundError

LIVE_HOST = os.environ.get("HYPERV_BACKUP_LIVE_HOST")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not LIVE_HOST, reason="no live Hyper-V host (HYPERV_BACKUP_LIVE_HOST)"),
]


@pytest.fixture(scope="module")
def live_settings() -> ConnectionSettings:
    env = os.environ
    password = env.get("HYPERV_BACKUP_LIVE_PASSWORD")
    return ConnectionSettings(
        host=LIVE_HOST or "",
        auth=env.get("HYPERV_BACKUP_LIVE_AUTH", "negotiate"),  # type: ignore[arg-type]
        username=env.get("HYPERV_BACKUP_LIVE_USERNAME"),
        password=SecretStr(password) if password else None,
        ca_bundle=env.get("HYPERV_BACKUP_LIVE_CA_BUNDLE") or None,
        use_tls=env.get("HYPERV_BACKUP_LIVE_NO_TLS") != "1",
    )


def test_live_host_is_a_supported_windows_server(live_settings: ConnectionSettings) -> None:
    with HyperVHost(live_settings) as host:
        info = host.ensure_supported()
    assert info.server_release is not None
    assert info.powershell_version.startswith("5.1")


def test_live_inventory_validates_against_the_models(live_settings: ConnectionSettings) -> None:
    with HyperVHost(live_settings) as host:
        vms = host.inventory()
    for vm in vms:
        for disk in vm.virtual_disks:
            assert disk.chain, f"{vm.name}: {disk.location} has no chain"
            assert disk.chain[-1].vhd_type != "Differencing"
        ids = {c.id for c in vm.checkpoints}
        assert all(c.parent_id is None or c.parent_id in ids for c in vm.checkpoints)


def test_live_unknown_vm_is_vm_not_found(live_settings: ConnectionSettings) -> None:
    name = f"hyperv-backup-no-such-vm-{uuid.uuid4().hex[:8]}"
    with HyperVHost(live_settings) as host, pytest.raises(VMNotFoundError):
        host.inventory([name])
