"""``inventory``: what is on a host."""

from __future__ import annotations

from hyperv_backup.cli.console import exit_codes, fail, out
from hyperv_backup.cli.options import JsonOpt, NamesArg
from hyperv_backup.config import ConnectionSettings
from hyperv_backup.errors import ConfigError, HyperVBackupError
from hyperv_backup.host import HyperVHost
from hyperv_backup.render import host_summary, inventory_json, inventory_table
from hyperv_backup.results import EXIT_USAGE

__all__ = ["inventory", "print_inventory"]


@exit_codes()
def inventory(
    settings: ConnectionSettings,
    names: NamesArg = None,
    as_json: JsonOpt = False,
) -> None:
    """List the host's VMs with what decides how each is backed up.

    Shows state, generation, checkpoint setting and tree, the guest VSS integration service,
    disks (differencing chains, pass-through disks) and Hyper-V Replica role. Without NAMES,
    every VM.
    """
    print_inventory(settings, names or [], as_json=as_json)


def print_inventory(settings: ConnectionSettings, names: list[str], *, as_json: bool) -> None:
    """Fetch and print the inventory (JSON or table)."""
    try:
        with HyperVHost(settings) as hyperv:
            info = hyperv.ensure_supported()
            vms = hyperv.inventory(names)
    except ConfigError as error:
        fail(error, EXIT_USAGE)
    except HyperVBackupError as error:
        fail(error)
    if as_json:
        # Plain print: JSON must reach pipes and files untouched by rich's wrapping.
        print(inventory_json(info, vms))
        return
    out().print(host_summary(info), markup=False, highlight=False)
    out().print(inventory_table(vms))
