"""The Hyper-V host as a Python object: connect, describe it, list its VMs.

>>> from hyperv_backup import ConnectionSettings, HyperVHost
>>> settings = ConnectionSettings(host="hv01.corp.example", username="CORP\\\\backup",
...                               password="...")               # doctest: +SKIP
>>> with HyperVHost(settings) as host:                           # doctest: +SKIP
...     for vm in host.inventory(["web*"]):
...         print(vm.name, vm.state.value, vm.replication.mode.value)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType

from hyperv_backup.config import ConnectionSettings
from hyperv_backup.errors import UnsupportedHostError
from hyperv_backup.models import HostInfo, VMInfo
from hyperv_backup.ps_scripts import SCRIPTS, GetHostInfoParams, GetInventoryParams
from hyperv_backup.remote.runner import ScriptRunner
from hyperv_backup.remote.session import Session

__all__ = ["HyperVHost", "check_host_supported"]

logger = logging.getLogger(__name__)

_OLDEST_SUPPORTED = (6, 2)  # Windows Server 2012


def check_host_supported(info: HostInfo) -> None:
    """Raise :class:`UnsupportedHostError` unless ``info`` is a Hyper-V host we can back up."""
    if not info.is_server:
        raise UnsupportedHostError(
            f"Host {info.computer_name!r} runs {info.os_caption} ({info.os_version}), a desktop "
            "edition of Windows. hyperv-backup supports Hyper-V on Windows Server 2012 and "
            "newer only (Client Hyper-V lacks the backup integration hyperv-backup relies "
            "on). Back up VMs from a Windows Server host.",
            kind="unsupported_host",
            target=info.computer_name,
        )
    if info.version_tuple[:2] < _OLDEST_SUPPORTED:
        raise UnsupportedHostError(
            f"Host {info.computer_name!r} runs {info.os_caption} ({info.os_version}); "
            "hyperv-backup needs Windows Server 2012 or newer.",
            kind="unsupported_host",
            target=info.computer_name,
        )
    if not info.hyperv_module:
        raise UnsupportedHostError(
            f"Host {info.computer_name!r} has no Hyper-V PowerShell module. Install it on the "
            "host with: Install-WindowsFeature -Name Hyper-V-PowerShell",
            kind="unsupported_host",
            target=info.computer_name,
        )


class HyperVHost:
    """A connection to one Hyper-V host. Use as a context manager; closes its session."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.session = Session(settings)
        self.runner = ScriptRunner(self.session)
        self._info: HostInfo | None = None

    def __repr__(self) -> str:
        return f"HyperVHost({self.settings.endpoint!r})"

    def __enter__(self) -> HyperVHost:
        self.session.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the remote session. Safe to call twice."""
        self.session.close()

    def info(self, *, refresh: bool = False) -> HostInfo:
        """The host's identity and capabilities (fetched once, then cached)."""
        if self._info is None or refresh:
            self._info = self.runner.run(SCRIPTS["get-host-info"], GetHostInfoParams())
        return self._info

    def ensure_supported(self) -> HostInfo:
        """The host's info, after refusing desktop Windows, old releases, no Hyper-V module."""
        info = self.info()
        check_host_supported(info)
        return info

    def inventory(self, names: Sequence[str] = ()) -> list[VMInfo]:
        """Describe the VMs matching ``names`` (exact names or wildcards; empty = all).

        Raises :class:`~hyperv_backup.errors.VMNotFoundError` for an exact name that matches no
        VM, and :class:`~hyperv_backup.errors.UnsupportedHostError` for hosts we cannot back up.
        """
        self.ensure_supported()
        params = GetInventoryParams(names=list(names))
        result = self.runner.run(SCRIPTS["get-inventory"], params)
        logger.info("%s: %d VM(s) matched %s", self.settings.host, len(result.vms), names or "all")
        vms: list[VMInfo] = result.vms
        return vms
