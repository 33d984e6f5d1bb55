#!/usr/bin/env python3
"""Before-commands: a Python check before each VM, and PowerShell on the host before the job.

    export HYPERV_BACKUP_PASSWORD='…'
    python custom_before_command.py --to /backups --maintenance 'db-*' \\
        --host hv01.corp.example -u 'CORP\\svc-backup' \\
        --before-job "if ((Get-Service vmms).Status -ne 'Running') { throw 'vmms is down' }"

Hooks (``hyperv_backup.Hooks``) run before and after the job, and before and after each VM:

- a Python hook is any callable taking a ``HookContext`` (job id, phase, host, the VM, and for
  after-VM hooks its result); raising anything fails it;
- a ``PowerShellHook`` is your text, run on the host. It sees ``$VMName``, ``$VMId``,
  ``$JobId`` and ``$Phase`` as variables — never spliced into the text, so a VM name cannot
  inject code — and a ``throw`` (or any terminating error) fails it.

A failing before-VM hook stops that VM before anything is done on the host (no checkpoint, no
shadow copy): its result is FAILED with error_type ``HookError`` and the hook's message, and
the other VMs go on (exit code 3). A failing before-job hook stops the whole job before any VM
is touched (exit code 1). After-hooks always run, also after a failure.

Here the before-VM hook refuses VMs on a maintenance list (``--maintenance`` wildcards, or a
file with one per line) and, with the after-VM hook, records when each VM's backup ran. The
backups go to a plain folder (the Export-VM layout per VM, plus a backup.json report).
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
from datetime import datetime, timezone
from pathlib import Path

from cli_settings import (
    add_host_arguments,
    add_reader_arguments,
    connection_settings,
    file_reader,
    run,
)

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    ConfigError,
    DirectorySink,
    HookContext,
    HookOutcome,
    Hooks,
    PowerShellHook,
    Selection,
    VMStatus,
)

logger = logging.getLogger("hooks")

DEFAULT_BEFORE_JOB = 'Write-Output "hyperv-backup job $JobId starting on $env:COMPUTERNAME"'


class UnderMaintenanceError(Exception):
    """The VM is on the maintenance list: it is not backed up tonight."""


class MaintenanceWindow:
    """Before-VM: refuse VMs on the maintenance list, note the start; after-VM: note the end."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = patterns
        self.started: dict[str, datetime] = {}
        self.finished: dict[str, datetime] = {}

    def before_vm(self, context: HookContext) -> None:
        assert context.vm is not None  # VM phases always carry the VM
        name = context.vm.name
        for pattern in self.patterns:
            if fnmatch.fnmatchcase(name.casefold(), pattern.casefold()):
                raise UnderMaintenanceError(
                    f"{name} is under maintenance (matches {pattern!r}): not backed up tonight"
                )
        self.started[name] = datetime.now(timezone.utc)

    def after_vm(self, context: HookContext) -> None:
        # Runs for refused and failed VMs too; only the ones that started get an end time.
        assert context.vm is not None
        if context.vm.name in self.started:
            self.finished[context.vm.name] = datetime.now(timezone.utc)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Back up VMs into a folder, refusing VMs under maintenance (a Python "
        "before-VM hook) after a PowerShell before-job command on the host."
    )
    parser.add_argument("vms", nargs="*", help="VM names or wildcards (default: all)")
    parser.add_argument("--to", type=Path, required=True, help="folder for the backups")
    parser.add_argument(
        "--maintenance",
        action="append",
        default=[],
        metavar="PATTERN",
        help="refuse VMs matching this wildcard (repeatable)",
    )
    parser.add_argument(
        "--maintenance-file", type=Path, help="file of such patterns, one a line (# comments)"
    )
    parser.add_argument(
        "--before-job",
        default=DEFAULT_BEFORE_JOB,
        metavar="POWERSHELL",
        help="PowerShell run on the host before any VM; a throw stops the job",
    )
    add_host_arguments(parser)
    add_reader_arguments(parser)
    return parser.parse_args()


def maintenance_patterns(args: argparse.Namespace) -> list[str]:
    """``--maintenance`` patterns, then those of ``--maintenance-file``."""
    patterns = list(args.maintenance)
    if args.maintenance_file is not None:
        try:
            text = args.maintenance_file.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"--maintenance-file: {error}") from None
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                patterns.append(line.strip())
    return patterns


def describe(hook: HookOutcome) -> str:
    said = f" said {hook.output}" if hook.output else ""
    return f"  {hook.phase} {hook.hook}: " + (f"ok{said}" if hook.ok else f"FAILED: {hook.error}")


def main() -> int:
    args = parse_args()
    settings = connection_settings(args)
    window = MaintenanceWindow(maintenance_patterns(args))
    policy = BackupPolicy(
        hooks=Hooks(
            before_job=[PowerShellHook(command=args.before_job, name="before-job check")],
            before_vm=[window.before_vm],
            after_vm=[window.after_vm],
        )
    )
    selection = Selection(names=args.vms) if args.vms else Selection(all=True)
    with file_reader(args, settings) as reader:
        job = BackupJob(
            settings,
            policy,
            sink=DirectorySink(args.to),
            reader=reader,
            state_dir=args.state_dir,
        )
        result = job.run(selection)

    print(f"job {result.job_id}: {result.status.value}")
    for hook in result.hooks:  # the before/after-job commands
        print(describe(hook))
    if result.error:
        # A failed before-job command lands here: no VM was touched.
        print(f"job stopped: {result.error}")
    for vm in result.vms:
        if vm.status == VMStatus.SUCCESS:
            start, end = window.started[vm.vm_name], window.finished[vm.vm_name]
            print(
                f"{vm.vm_name}: success, backed up {start:%H:%M:%S}-{end:%H:%M:%S} UTC "
                f"into {vm.location}"
            )
        else:
            print(f"{vm.vm_name}: FAILED ({vm.error_type}) {vm.error}")
        for hook in vm.hooks:
            print(describe(hook))
    return result.exit_code


if __name__ == "__main__":
    run(main)
