"""How ``hyperv-backup demo`` shows what it did: numbered steps, tables, where things are."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from hyperv_backup.render import format_bytes
from hyperv_backup.results import JobResult, VMStatus
from hyperv_backup.simulator.demo import DEMO_PASSWORD, DemoReport, DemoStep, RepositoryRun

__all__ = ["print_report", "print_step", "repositories_table", "vm_table", "why_lines"]

_LEVEL_COLOURS = {"application": "green", "offline": "green", "crash": "yellow"}
_WIDE = 100
"""Terminals at least this wide get the per-VM table with its Why column."""


def print_step(console: Console, step: DemoStep) -> None:
    """``3. Back up every VM into … (2.4 s)`` and what came out, indented below."""
    mark = "" if step.ok else " [bold red]FAILED[/]"
    console.print(
        f"[bold]{step.number}. {escape(step.title)}[/] ({step.seconds:.1f} s){mark}",
        highlight=False,
    )
    console.print(Padding(Text(step.detail), (0, 0, 0, 3), expand=False))


def _consistency(requested: str, achieved: str | None) -> str:
    if achieved is None:
        return f"{requested} → [red]none[/]"
    colour = _LEVEL_COLOURS.get(achieved, "white")
    return f"{requested} → [{colour}]{achieved}[/]"


def vm_table(job: JobResult, *, with_why: bool = True) -> Table:
    """One row per VM: status, consistency requested → achieved and why, bytes, time,
    retries; exclusions and errors in the Why column (left out with ``with_why=False``, for
    narrow terminals: :func:`why_lines` then says it below the table)."""
    table = Table(title=f"Backup job {job.job_id}: {job.status.value}", expand=with_why)
    # No minimum widths and no no_wrap: rich then folds every column to fit a narrow
    # terminal instead of cropping the table's right-hand columns.
    table.add_column("VM", overflow="fold", max_width=16)
    table.add_column("Status", overflow="fold")
    table.add_column("Requested → achieved", overflow="fold")
    if with_why:
        table.add_column("Why", overflow="fold", ratio=1)
    table.add_column("Bytes", justify="right", overflow="fold")
    table.add_column("Time", justify="right", overflow="fold")
    table.add_column("Retries", justify="right", overflow="fold")
    for vm in job.vms:
        ok = vm.status == VMStatus.SUCCESS
        why = [escape(vm.consistency_reason)] if vm.consistency_reason else []
        if vm.error:
            why.insert(0, f"[red]{escape(vm.error)}[/]")
        why += [f"[red]excluded[/]: {escape(e.item.split(' (')[0])}" for e in vm.excluded]
        if vm.retries:
            why.append(f"[yellow]retried[/]: Hyper-V refused {vm.retries}× (conflicting operation)")
        cells = [
            escape(vm.vm_name),
            "[green]ok[/]" if ok else "[bold red]failed[/]",
            _consistency(vm.requested.value, vm.achieved.value if vm.achieved else None),
            "\n".join(why),
            format_bytes(vm.bytes),
            f"{vm.duration_seconds:.1f} s",
            f"[yellow]{vm.retries}[/]" if vm.retries else "0",
        ]
        if not with_why:
            del cells[3]
        table.add_row(*cells)
    return table


def why_lines(job: JobResult) -> list[str]:
    """``VM: why it got the consistency it got`` (and its error), one line per VM."""
    lines = []
    for vm in job.vms:
        why = vm.error or vm.consistency_reason
        lines.append(f"[bold]{escape(vm.vm_name)}[/]: {escape(why)}")
    return lines


def repositories_table(runs: list[RepositoryRun]) -> Table:
    """One column per repository: what this run read, how much of it the repository held
    already, what it added, the repository's size, and the ``check --read-data`` verdict."""
    table = Table(title="Repositories (encrypted, deduplicated)", expand=False)
    table.add_column("", overflow="fold", style="bold")
    for run in runs:
        table.add_column(escape(run.location), overflow="fold")
    rows: list[tuple[str, list[str]]] = [
        ("This run read", []),
        ("Chunks reused", []),
        ("New data stored", []),
        ("Repository size", []),
        ("check --read-data", []),
    ]
    for run in runs:
        d = run.dedup
        verdict = (
            f"[green]ok[/]: {format_bytes(run.check.bytes_read)} re-read, {run.check.packs} packs"
            if run.check.ok
            else f"[bold red]{len(run.check.errors)} error(s)[/]"
        )
        cells = [
            f"{format_bytes(d.bytes_read)} ({d.backups} VMs)",
            f"{d.reused_chunks} of {d.chunks} ({d.reused_percent:.0f} %)",
            f"{format_bytes(d.stored_bytes)} (compressed, encrypted)",
            f"{format_bytes(d.repository_stored_bytes)} for {d.repository_backups} backups "
            f"of {format_bytes(d.repository_logical_bytes)}"
            + (" (created now)" if run.created else ""),
            verdict,
        ]
        for (_label, values), cell in zip(rows, cells, strict=True):
            values.append(cell)
    for label, values in rows:
        table.add_row(label, *values)
    return table


def _restore_table(report: DemoReport) -> Table | None:
    restore = report.restore
    if restore is None:
        return None
    table = Table(
        title=f"Restored {escape(restore.vm)} (backup {restore.snapshot[:8]}): every file's "
        "hash verified",
        expand=False,
    )
    table.add_column("File", overflow="fold")
    table.add_column("Bytes", justify="right", no_wrap=True)
    for path, size in restore.files:
        table.add_row(escape(path), format_bytes(size))
    return table


def _notes(report: DemoReport) -> list[str]:
    lines: list[str] = []
    job = report.local.job if report.local else None
    for vm in job.vms if job else []:
        for exclusion in vm.excluded:
            lines.append(
                f"[bold]{escape(vm.vm_name)}[/]: [red]not backed up[/]: {escape(exclusion.item)} — "
                f"{escape(exclusion.reason)}."
            )
            lines += [f"   workaround: {escape(w)}" for w in exclusion.workarounds]
    for vm in job.vms if job else []:
        if vm.retries:
            reason = vm.retry_reasons[0] if vm.retry_reasons else "conflicting operation"
            lines.append(
                f"[bold]{escape(vm.vm_name)}[/] ({escape(vm.replication_role)} of Hyper-V "
                f"Replica): refused {vm.retries}×, retried with backoff, then backed up. "
                f"First refusal: {escape(reason)}"
            )
    lines += [f"[dim]Injected by the demo: {escape(i)}.[/]" for i in report.injected]
    if report.s3.server and report.s3.conditional_writes is False:
        lines.append(
            f"[dim]{report.s3.server} serve s3 ignores conditional writes (S3 'If-None-Match'), "
            "so hyperv-backup warns that repository locks are not enforced there; AWS S3 "
            "enforces them.[/]"
        )
    return lines


def _where(report: DemoReport) -> list[str]:
    output = report.output
    lines = [
        f"Repository:   {output / 'repository'}   (password: {DEMO_PASSWORD})",
    ]
    if report.restore is not None:
        lines.append(f"Restored VM:  {report.restore.folder}")
    lines.append(f"Job journal:  {output / '.state'}")
    s3 = report.s3
    if s3.server is not None:
        kept = (
            f"objects in {s3.data_folder}"
            if s3.data_folder is not None
            else "in memory, gone when the demo ended"
        )
        lines.append(f"S3 copy:      {s3.location} at {s3.endpoint} ({s3.server}; {kept})")
    else:
        lines.append(f"S3 copy:      none; {s3.note}")
    lines.append(f"The emulated host {report.host} and its files were removed at the end.")
    return lines


def print_report(console: Console, report: DemoReport) -> None:
    """Everything after the steps: tables, notes, where things are, what to try next."""
    if report.local is not None:
        wide = console.width >= _WIDE
        console.print()
        console.print(vm_table(report.local.job, with_why=wide))
        if not wide:
            console.print("Why:", highlight=False)
            for line in why_lines(report.local.job):
                console.print(f"  {line}", highlight=False)
    notes = _notes(report)
    if notes:
        console.print()
        for line in notes:
            console.print(line, highlight=False)
    console.print()
    console.print(repositories_table(report.repositories))
    restored = _restore_table(report)
    if restored is not None:
        console.print()
        console.print(restored)
    console.print()
    console.print("[bold]Where everything is[/]", highlight=False)
    for line in _where(report):
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    console.print()
    console.print("[bold]Try next[/]", highlight=False)
    for command in report.next_commands():
        console.print(f"  {escape(command)}", highlight=False, soft_wrap=True)
    console.print()
    verdict = {0: "[green]success[/]", 3: "[yellow]partial[/]"}.get(
        report.exit_code, "[bold red]failed[/]"
    )
    console.print(
        f"Demo {verdict} in {report.seconds:.1f} s (exit code {report.exit_code}).",
        highlight=False,
    )
