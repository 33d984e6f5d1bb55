#!/usr/bin/env python3
"""Back up the replica VMs held by a Hyper-V Replica server.

    export HYPERV_BACKUP_PASSWORD='…' HYPERV_BACKUP_REPO_PASSWORD='…'
    python backup_replica.py --host hv02.corp.example -u 'CORP\\svc-backup' \\
        --repo /backups/replicas

Backing up on the Replica server keeps checkpoints and backup I/O away from the primary.
A replica is not running and replication keeps applying log files to its disks, so it is read
from a host VSS shadow copy: the backup is crash-consistent, never application-consistent
(back the VM up on its primary for that).

For each VM, replication is suspended while it is copied (``suspend_replication=True``) and
resumed afterwards — also when its backup fails; a killed run's next run resumes it. A VM whose
replication is still busy (resynchronising, applying a cycle) makes Hyper-V refuse backups with
"conflicting operation": the retry policy waits that out patiently (by default up to 10 tries
over at most two hours, with backoff). Primary and unreplicated VMs on the same host are listed
and skipped.

Exit code: 0 all good, 3 some VMs failed or need attention, 1 nothing backed up, 2 bad settings.
"""

from __future__ import annotations

import argparse
import logging

from cli_settings import (
    add_host_arguments,
    add_reader_arguments,
    add_repository_arguments,
    connection_settings,
    file_reader,
    open_repository,
    run,
)

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    ConfigError,
    ConsistencyPolicy,
    HyperVHost,
    RetryPolicy,
    Selection,
    VMBackupResult,
    VMStatus,
)

logger = logging.getLogger("replica")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Back up the replica VMs of a Hyper-V Replica server (crash-consistent, "
        "replication suspended per VM and always resumed)."
    )
    parser.add_argument("vms", nargs="*", help="VM names or wildcards (default: every replica)")
    add_host_arguments(parser)
    add_reader_arguments(parser)
    add_repository_arguments(parser)
    retry = parser.add_argument_group("retrying while replication is busy")
    retry.add_argument("--retry-attempts", type=int, default=10)
    retry.add_argument("--retry-initial-wait", type=float, default=30.0, help="seconds")
    retry.add_argument("--retry-max-wait", type=float, default=600.0, help="seconds")
    retry.add_argument("--retry-deadline", type=float, default=7200.0, help="seconds, in all")
    parser.add_argument("--parallel", type=int, default=2, help="VMs backed up at once")
    return parser.parse_args()


def report(vm: VMBackupResult) -> list[str]:
    """What to know about one replica's backup."""
    if vm.status != VMStatus.SUCCESS:
        lines = [f"{vm.vm_name}: FAILED ({vm.error_type}) {vm.error}"]
    else:
        level = vm.achieved.value if vm.achieved else "?"
        method = vm.method.value if vm.method else "?"
        lines = [f"{vm.vm_name}: success, consistency={level} method={method}"]
    suspended = "suspended during the backup" if vm.replication_suspended else "not suspended"
    lines.append(f"  retries={vm.retries} replication={suspended}")
    lines += [f"  retry {n}: {reason}" for n, reason in enumerate(vm.retry_reasons, 1)]
    lines.append(f"  why: {vm.consistency_reason}")
    lines += [f"  warning: {warning}" for warning in vm.warnings]
    return lines


def main() -> int:
    args = parse_args()
    settings = connection_settings(args)
    with HyperVHost(settings) as host:
        found = host.inventory(args.vms)
    replicas = [vm for vm in found if vm.replication.is_replica]
    for vm in found:
        if not vm.replication.is_replica:
            logger.info("skipping %s: replication role %s", vm.name, vm.replication.mode.value)
    if not replicas:
        raise ConfigError(f"No replica VM on {settings.host} matched {args.vms or 'all'}.")

    policy = BackupPolicy(
        # A replica is never application-consistent: ask for what it can be, so that the
        # result says so plainly instead of "application preferred, got crash".
        consistency=ConsistencyPolicy.CRASH_OK,
        suspend_replication=True,
        retry=RetryPolicy(
            attempts=args.retry_attempts,
            initial_wait=args.retry_initial_wait,
            max_wait=args.retry_max_wait,
            deadline=args.retry_deadline,
        ),
        parallel_vms=args.parallel,
        tags=["replica"],
    )
    with open_repository(args, create=True) as repository, file_reader(args, settings) as reader:
        job = BackupJob(settings, policy, sink=repository, reader=reader, state_dir=args.state_dir)
        with repository.shared_lock(f"replica backup on {settings.host}"):
            result = job.run(Selection(names=[vm.name for vm in replicas]))
    for vm_result in result.vms:
        print("\n".join(report(vm_result)))
    if result.error:
        logger.error("job %s: %s", result.job_id, result.error)
    return result.exit_code


if __name__ == "__main__":
    run(main)
