"""How results look to a person at a terminal (rich tables) and to a program (JSON).

Kept apart from the command definitions so the CLI stays a thin layer over the public API.
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.table import Table

from hyperv_backup.models import HostInfo, VMInfo
from hyperv_backup.plan import BackupPlan
from hyperv_backup.results import JobResult

__all__ = [
    "format_bytes",
    "host_summary",
    "inventory_json",
    "inventory_table",
    "job_table",
    "plan_table",
]


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


_METHOD_LABELS = {
    "production_checkpoint": "production",
    "standard_checkpoint": "standard",
    "pause_and_vss": "pause+VSS",
    "vss_snapshot": "shadow copy",
}


def _method_text(method: object | None) -> str:
    if method is None:
        return "-"
    value = str(getattr(method, "value", method))
    return _METHOD_LABELS.get(value, value)


def _level_text(level: object | None) -> str:
    if level is None:
        return "-"
    value = str(getattr(level, "value", level))
    colour = {"application": "green", "offline": "green", "crash": "yellow"}.get(value, "white")
    return f"[{colour}]{value}[/]"


def plan_table(plan: BackupPlan) -> Table:
    """One row per VM: method, expected consistency and why, capture mode, size, exclusions."""
    table = Table(title=f"Plan: {len(plan.vms)} VM(s), about {format_bytes(plan.estimated_bytes)}")
    for column in ("VM", "Method", "Consistency", "Capture", "Est. size", "Notes"):
        table.add_column(column, overflow="fold")
    for vm in plan.vms:
        notes = [escape(vm.reason)]
        if vm.fallback is not None:
            notes.append(f"falls back to {vm.fallback.value} if the guest cannot flush")
        notes += [f"[red]excluded[/]: {escape(e.item)}" for e in vm.excluded]
        if vm.replication_note:
            notes.append(escape(vm.replication_note))
        if vm.will_fail:
            notes.insert(0, f"[bold red]will fail[/]: {escape(vm.will_fail)}")
        table.add_row(
            escape(vm.vm_name),
            _method_text(vm.method),
            _level_text(vm.expected),
            vm.capture_mode.value,
            format_bytes(vm.estimated_bytes),
            "\n".join(notes),
        )
    return table


def job_table(result: JobResult) -> Table:
    """One row per VM of a finished job."""
    table = Table(title=f"Job {result.job_id}: {result.status.value}")
    for column in ("VM", "Status", "Consistency", "Method", "Bytes", "Time", "Retries"):
        table.add_column(
            column,
            no_wrap=column != "VM",
            overflow="fold",
            min_width=12 if column == "VM" else None,
        )
    table.add_column("Notes", overflow="fold", ratio=1)
    for vm in result.vms:
        status = "[green]ok[/]" if vm.status.value == "success" else "[bold red]failed[/]"
        notes = []
        if vm.error:
            notes.append(f"[red]{escape(vm.error)}[/]")
        notes += [
            f"excluded: {escape(e.item.split(' (')[0])} ({escape(e.reason.split(',')[0])})"
            for e in vm.excluded
        ]
        if vm.pause_seconds:
            notes.append(f"paused {vm.pause_seconds:.2f} s")
        notes += [f"[yellow]warning[/]: {escape(w)}" for w in vm.warnings]
        table.add_row(
            escape(vm.vm_name),
            status,
            _level_text(vm.achieved),
            _method_text(vm.method),
            format_bytes(vm.bytes),
            f"{vm.duration_seconds:.1f} s",
            str(vm.retries),
            "\n".join(notes),
        )
    return table
