#!/usr/bin/env python3
"""Nightly: every VM of a host into an encrypted repository on S3, then retention.

    export HYPERV_BACKUP_PASSWORD='…'        # the host account's
    export HYPERV_BACKUP_REPO_PASSWORD='…'   # the repository's: keep a copy somewhere safe
    export AWS_ACCESS_KEY_ID='…' AWS_SECRET_ACCESS_KEY='…'
    python nightly_to_s3.py --host hv01.corp.example -u 'CORP\\svc-backup' \\
        --bucket backups --prefix hyperv/hv01 --exclude 'test-*'

1. Open the repository at s3://BUCKET/PREFIX, or create it (encrypted) on the first night.
2. Back up every VM except the ``--exclude`` patterns, holding the repository's shared lock
   for the whole job: a forget/prune started elsewhere then refuses instead of deleting data
   this backup deduplicates against.
3. Unless nothing was backed up, apply retention to this host's backups, per VM (7 daily,
   4 weekly, 6 monthly by default). ``forget`` and ``prune`` each take the repository's
   exclusive lock, so they refuse while any backup writes; the newest successful backup of
   every VM is always kept, whatever the policy.
4. One line per VM on stdout. Exit code: 0 all good, 3 some VMs failed or something needs
   attention, 1 nothing was backed up, 2 bad settings.
"""

from __future__ import annotations

import argparse
import logging

from cli_settings import (
    EXIT_PARTIAL,
    add_host_arguments,
    add_reader_arguments,
    connection_settings,
    file_reader,
    repository_password,
    run,
)
from pydantic import ValidationError

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    ConfigError,
    JobStatus,
    LockedError,
    Selection,
    VMBackupResult,
    VMStatus,
)
from hyperv_backup.repository import Repository, RetentionPolicy
from hyperv_backup.targets import S3Settings, S3Target

logger = logging.getLogger("nightly")

MiB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Back up every VM of a host into an encrypted S3 repository, then "
        "apply retention."
    )
    add_host_arguments(parser)
    add_reader_arguments(parser)
    s3 = parser.add_argument_group("S3 (credentials: AWS_ACCESS_KEY_ID/… or --s3-profile)")
    s3.add_argument("--bucket", required=True)
    s3.add_argument("--prefix", default="", help="key prefix, e.g. hyperv/hv01")
    s3.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS)")
    s3.add_argument("--s3-region")
    s3.add_argument("--s3-profile")
    job = parser.add_argument_group("backup")
    job.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out VMs matching this wildcard (repeatable)",
    )
    job.add_argument("--parallel", type=int, default=2, help="VMs backed up at once")
    keep = parser.add_argument_group("retention, per VM")
    keep.add_argument("--keep-daily", type=int, default=7)
    keep.add_argument("--keep-weekly", type=int, default=4)
    keep.add_argument("--keep-monthly", type=int, default=6)
    keep.add_argument(
        "--retention-dry-run",
        action="store_true",
        help="only say which backups retention would remove",
    )
    return parser.parse_args()


def summary(vm: VMBackupResult) -> str:
    """One line a person reads in the morning."""
    if vm.status != VMStatus.SUCCESS:
        return f"{vm.vm_name}: FAILED ({vm.error_type}) {vm.error}"
    level = vm.achieved.value if vm.achieved else "?"
    method = vm.method.value if vm.method else "?"
    snapshot = (vm.location or "").rpartition(":")[2][:8]
    line = (
        f"{vm.vm_name}: success, {level}-consistent ({method}), {vm.bytes / MiB:.1f} MiB "
        f"in {vm.duration_seconds:.1f} s, backup {snapshot}"
    )
    if vm.excluded:  # e.g. pass-through disks, which Hyper-V cannot back up
        line += f"; NOT included: {', '.join(e.item for e in vm.excluded)}"
    if vm.warnings:
        line += f"; {len(vm.warnings)} warning(s): {'; '.join(vm.warnings)}"
    return line


def apply_retention(
    repository: Repository, policy: RetentionPolicy, host: str, *, dry_run: bool
) -> bool:
    """Forget what ``policy`` does not keep of ``host``'s backups, then prune; False if refused."""
    try:
        # Only this host's backups: other hosts may share the repository, on their own policy.
        forgot = repository.forget(policy, dry_run=dry_run, host=host)
        verb = "would forget" if dry_run else "forgot"
        for decision in forgot.removed:
            print(f"retention: {verb} {decision.snapshot.describe()}")
        if dry_run or not forgot.removed:
            removed = "would forget" if dry_run else "forgotten"
            print(f"retention: {len(forgot.kept)} kept, {len(forgot.removed)} {removed}")
            return True
        pruned = repository.prune(dry_run=False)
    except LockedError as error:
        # Another backup (or prune) holds the repository: try again tomorrow night.
        logger.warning("retention skipped, the repository is busy: %s", error)
        return False
    print(
        f"retention: {len(forgot.kept)} kept, {len(forgot.removed)} forgotten; prune deleted "
        f"{len(pruned.packs_deleted)} pack(s), {pruned.bytes_freed / MiB:.1f} MiB freed"
    )
    return True


def main() -> int:
    args = parse_args()
    settings = connection_settings(args)
    password = repository_password()
    try:  # every setting is checked before the host or the bucket is contacted
        s3 = S3Settings(
            bucket=args.bucket,
            prefix=args.prefix,
            endpoint_url=args.s3_endpoint,
            region=args.s3_region,
            profile=args.s3_profile,
        )
        policy = BackupPolicy(parallel_vms=args.parallel, tags=["nightly"])
        retention = RetentionPolicy(
            keep_daily=args.keep_daily,
            keep_weekly=args.keep_weekly,
            keep_monthly=args.keep_monthly,
        )
    except ValidationError as error:
        problem = error.errors()[0]
        raise ConfigError(f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None

    with S3Target(s3) as target:
        if not Repository.exists(target):  # the first night
            logger.info("creating an encrypted repository at %s", s3.location)
            repository = Repository.init(target, password)
        else:
            repository = Repository.open(target, password)
        with repository, file_reader(args, settings) as reader:
            job = BackupJob(
                settings, policy, sink=repository, reader=reader, state_dir=args.state_dir
            )
            with repository.shared_lock(f"nightly backup of {settings.host}"):
                result = job.run(Selection(all=True, exclude=args.exclude))
            for vm in result.vms:
                print(summary(vm))
            if result.error:
                logger.error("job %s: %s", result.job_id, result.error)
            if result.status == JobStatus.FAILED:
                # Nothing new was stored: every older backup stays as it is.
                logger.error("nothing was backed up, so retention was not applied")
                return result.exit_code
            retention_done = apply_retention(
                repository, retention, settings.host, dry_run=args.retention_dry_run
            )
    return result.exit_code if retention_done else max(result.exit_code, EXIT_PARTIAL)


if __name__ == "__main__":
    run(main)
