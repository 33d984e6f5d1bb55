"""How results look to a person at a terminal (rich tables) and to a program (JSON).

Kept apart from the command definitions so the CLI stays a thin layer over the public API.
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.table import Table

from hyperv_backup.models import HostInfo, VMInfo

__all__ = ["format_bytes", "host_summary", "inventory_json", "inventory_table"]


def format_bytes(value: int) -> str:
    """Binary units, e.g. ``40.0 GiB``."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def host_summary(info: HostInfo) -> str:
    """One line describing the host."""
    cluster = f", cluster {info.cluster_name}" if info.cluster_name else ""
    release = info.server_release or "desktop"
    return (
        f"{info.computer_name}: {info.os_caption} ({info.os_version}, Windows Server "
        f"{release}){cluster}, PowerShell {info.powershell_version}"
    )


def _backup_service_text(vm: VMInfo) -> str:
    service = vm.backup_service
    if service is None:
        return "[yellow]none[/]"
    if not service.enabled:
        return "[yellow]disabled[/]"
    status = escape(service.primary_status or "?")
    return status if service.is_healthy else f"[yellow]{status}[/]"


def _disks_text(vm: VMInfo) -> str:
    parts = []
    for disk in vm.virtual_disks:
        chain = len(disk.chain)
        size = format_bytes(disk.chain[0].size) if disk.chain else "?"
        parts.append(f"{size}" + (f" (chain of {chain})" if chain > 1 else ""))
    for disk in vm.passthrough_disks:
        parts.append(f"[red]pass-through disk {disk.disk_number}[/]")
    return "\n".join(parts) or "-"


def _replication_text(vm: VMInfo) -> str:
    rep = vm.replication
    if rep.mode.value == "None":
        return "-"
    return escape(f"{rep.mode.value} ({rep.state or '?'}, {rep.health or '?'})")


def inventory_table(vms: list[VMInfo]) -> Table:
    """A table with one row per VM and the facts that decide how it is backed up."""
    table = Table(title=f"{len(vms)} virtual machine(s)", expand=False)
    for column in ("Name", "State", "Gen", "Checkpoints", "Guest VSS", "Disks", "Replication"):
        table.add_column(column, overflow="fold")
    for vm in vms:
        table.add_row(
            escape(vm.name),  # VM names may contain [brackets] that rich would read as markup
            vm.state.value,
            str(vm.generation),
            f"{vm.checkpoint_type.value}, {len(vm.checkpoints)} in tree",
            _backup_service_text(vm),
            _disks_text(vm),
            _replication_text(vm),
        )
    return table


def inventory_json(info: HostInfo, vms: list[VMInfo]) -> str:
    """The inventory as one JSON document (stable keys; dates ISO 8601)."""
    document: dict[str, Any] = {
        "host": info.model_dump(mode="json"),
        "vms": [vm.model_dump(mode="json") for vm in vms],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)
