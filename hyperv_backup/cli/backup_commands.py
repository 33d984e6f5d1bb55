"""``plan``, ``backup`` and ``cleanup``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hyperv_backup.backup import BackupJob
from hyperv_backup.cli.cleanup_preview import preview_cleanup
from hyperv_backup.cli.console import err, exit_codes, fail, out, print_json
from hyperv_backup.cli.monitoring_options import (
    JobNameOpt,
    MetricsFileOpt,
    ReportFileOpt,
    WebhookHeaderOpt,
    WebhookOnOpt,
    WebhookUrlOpt,
    build_monitoring,
    publish_monitoring,
)
from hyperv_backup.cli.options import (
    AllOpt,
    AttemptsOpt,
    CaptureOpt,
    ConsistencyOpt,
    ExcludeOpt,
    HookOpt,
    JsonOpt,
    MergeOpt,
    NamesArg,
    ParallelOpt,
    PassthroughOpt,
    PathMapOpt,
    SmbPlainOpt,
    SmbPortOpt,
    SmbShareOpt,
    StagingOpt,
    StateOpt,
    SuspendOpt,
    build_policy,
    build_reader,
    build_selection,
)
from hyperv_backup.cli.progress import BackupProgress
from hyperv_backup.cli.repository_options import (
    PasswordFileOpt,
    RepositoryOptions,
    S3EndpointOpt,
    S3ProfileOpt,
    S3RegionOpt,
    make_target,
    read_password,
)
from hyperv_backup.config import ConnectionSettings
from hyperv_backup.errors import ConfigError, HyperVBackupError
from hyperv_backup.monitoring import WebhookOn, failed_job_result
from hyperv_backup.plain import PlainSink
from hyperv_backup.policy import BackupPolicy, CaptureMode, ConsistencyPolicy, PassthroughPolicy
from hyperv_backup.render import format_bytes, job_table, plan_table
from hyperv_backup.repository import Repository
from hyperv_backup.results import EXIT_USAGE, JobResult
from hyperv_backup.sink import CaptureSink, DirectorySink

__all__ = ["backup", "cleanup", "plan"]

ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        help="Store plain Export-VM folders (ready for Import-VM) in this folder or under "
        "s3://BUCKET/PREFIX, instead of a repository.",
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan; change nothing.")]


@exit_codes()
def plan(
    settings: ConnectionSettings,
    names: NamesArg = None,
    all_vms: AllOpt = False,
    exclude: ExcludeOpt = None,
    consistency: ConsistencyOpt = ConsistencyPolicy.APP_PREFERRED,
    capture: CaptureOpt = CaptureMode.AUTO,
    passthrough: PassthroughOpt = PassthroughPolicy.SKIP_DISK,
    suspend_replication: SuspendOpt = False,
    path_map: PathMapOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what a backup would do for each VM, touching nothing on the host.

    Per VM: the method (production or standard checkpoint, pause + host VSS, shadow copy) and
    the consistency it yields and why; in-place or export capture; disks, memory, checkpoint
    tree; what is excluded (pass-through disks) and why; the replication role; the size.
    """
    policy = build_policy(
        consistency=consistency,
        capture=capture,
        passthrough=passthrough,
        suspend_replication=suspend_replication,
        parallel=1,
        staging_root=None,
        merge_timeout=3600,
        retry_attempts=6,
    )
    selection = build_selection(names, all_vms, exclude)
    job = BackupJob(settings, policy, reader=build_reader(settings, path_map=path_map))
    try:
        the_plan = job.plan(selection)
    except ConfigError as error:
        fail(error, EXIT_USAGE)
    except HyperVBackupError as error:
        fail(error)
    if as_json:
        print(the_plan.model_dump_json(indent=2))
        return
    out().print(plan_table(the_plan))
    if the_plan.excluded_by_selection:
        out().print(
            f"Left out by --exclude: {', '.join(the_plan.excluded_by_selection)}", markup=False
        )


@exit_codes("3 here: some VMs failed, or a cleanup step or an after-command did.")
def backup(
    settings: ConnectionSettings,
    names: NamesArg = None,
    all_vms: AllOpt = False,
    exclude: ExcludeOpt = None,
    to: ToOpt = None,
    repo: Annotated[
        str | None,
        typer.Option(
            "--repo",
            help="Store into this repository (folder or s3://BUCKET/PREFIX) instead of --to.",
            envvar="HYPERV_BACKUP_REPO",
        ),
    ] = None,
    password_file: PasswordFileOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    s3_profile: S3ProfileOpt = None,
    path_map: PathMapOpt = None,
    smb_port: SmbPortOpt = 445,
    smb_share: SmbShareOpt = None,
    smb_no_encryption: SmbPlainOpt = False,
    consistency: ConsistencyOpt = ConsistencyPolicy.APP_PREFERRED,
    capture: CaptureOpt = CaptureMode.AUTO,
    passthrough: PassthroughOpt = PassthroughPolicy.SKIP_DISK,
    suspend_replication: SuspendOpt = False,
    parallel: ParallelOpt = 2,
    staging_root: StagingOpt = None,
    merge_timeout: MergeOpt = 3600,
    retry_attempts: AttemptsOpt = 6,
    before_job: HookOpt = None,
    after_job: HookOpt = None,
    before_vm: HookOpt = None,
    after_vm: HookOpt = None,
    state_dir: StateOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    report_file: ReportFileOpt = None,
    metrics_file: MetricsFileOpt = None,
    job_name: JobNameOpt = "default",
    webhook_url: WebhookUrlOpt = None,
    webhook_on: WebhookOnOpt = WebhookOn.FAILURE,
    webhook_header: WebhookHeaderOpt = None,
) -> None:
    """Back up VMs: freeze each consistently, capture all of it, store it, clean up.

    Exits 0 when every VM was backed up and nothing needs attention, 3 when some VMs failed
    (or a cleanup step or after-command did), 1 when nothing was backed up, 2 for bad options.
    """
    policy = build_policy(
        consistency=consistency,
        capture=capture,
        passthrough=passthrough,
        suspend_replication=suspend_replication,
        parallel=parallel,
        staging_root=staging_root,
        merge_timeout=merge_timeout,
        retry_attempts=retry_attempts,
        before_job=before_job,
        after_job=after_job,
        before_vm=before_vm,
        after_vm=after_vm,
    )
    selection = build_selection(names, all_vms, exclude)
    monitoring = build_monitoring(
        report_file, metrics_file, job_name, webhook_url, webhook_on, webhook_header
    )
    reader = build_reader(
        settings,
        path_map=path_map,
        smb_port=smb_port,
        smb_shares=smb_share,
        smb_encrypt=not smb_no_encryption,
    )
    if dry_run:
        plan(
            settings,
            names=names,
            all_vms=all_vms,
            exclude=exclude,
            consistency=consistency,
            capture=capture,
            passthrough=passthrough,
            suspend_replication=suspend_replication,
            path_map=path_map,
            as_json=as_json,
        )
        return
    if (to is None) == (repo is None):
        fail(
            ConfigError("Where should the backup go? Give --repo REPOSITORY or --to FOLDER."),
            EXIT_USAGE,
        )
    sink: CaptureSink
    repository = None
    try:
        if repo is not None:
            options = RepositoryOptions(repo, s3_endpoint, s3_region, s3_profile, password_file)
            repository = Repository.open(make_target(options), read_password(options))
            sink = repository
        elif to is not None and to.startswith("s3://"):
            # Plain objects any S3 tool can fetch: <prefix>/<host>/<VM>/<job>/...
            options = RepositoryOptions(to, s3_endpoint, s3_region, s3_profile)
            sink = PlainSink(make_target(options))
        else:
            assert to is not None
            sink = DirectorySink(Path(to))
    except HyperVBackupError as error:
        # A repository that cannot be opened (wrong password, S3 unreachable) is a failed
        # night too: monitoring must say so rather than go stale.
        publish_monitoring(monitoring, failed_job_result(settings.host, error))
        fail(error)
    bars = BackupProgress(err(), enabled=not as_json)  # drawn on a terminal only
    job = BackupJob(
        settings,
        policy,
        sink=sink,
        reader=reader,
        state_dir=state_dir,
        progress=bars.callback,
    )
    try:
        with bars:
            if repository is not None:
                # A forget/prune started meanwhile must not delete what this job still needs.
                with repository.shared_lock(f"backup of {settings.host}"):
                    result = job.run(selection)
            else:
                result = job.run(selection)
    except HyperVBackupError as error:
        # Recorded as a failed job, so that monitoring alerts instead of going stale.
        publish_monitoring(monitoring, failed_job_result(settings.host, error))
        fail(error)
    finally:
        if repository is not None:
            repository.close()
    publish_monitoring(monitoring, result)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        report_job(result)
    raise typer.Exit(result.exit_code)


def report_job(result: JobResult) -> None:
    """The job's table, cleanup and errors, for a person."""
    for line in result.cleanup.undone:
        err().print(f"cleanup: {line}", markup=False, highlight=False)
    for line in result.cleanup.errors:
        err().print(f"cleanup failed: {line}", markup=False, highlight=False)
    if result.vms:
        out().print(job_table(result))
    if result.error:
        err().print(f"job failed: {result.error}", markup=False, highlight=False)
    total = sum(v.bytes for v in result.vms)
    out().print(
        f"{result.status.value}: {len(result.vms)} VM(s), {format_bytes(total)}",
        markup=False,
        highlight=False,
    )


@exit_codes("1 here: a step of the cleanup failed (the others were done).")
def cleanup(
    settings: ConnectionSettings,
    staging_root: StagingOpt = None,
    state_dir: StateOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="List what would be undone (journal and host); change nothing."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Undo what killed or failed runs left on the host.

    First whatever this machine's journal says a dead run still holds (a paused VM is resumed
    first, then shadow copies, checkpoints — merges awaited — staging folders, and suspended
    replication), then anything on the host named hyperv-backup-*. Every backup does this
    before it starts, too.
    """
    policy = build_policy(
        consistency=ConsistencyPolicy.APP_PREFERRED,
        capture=CaptureMode.AUTO,
        passthrough=PassthroughPolicy.SKIP_DISK,
        suspend_replication=False,
        parallel=1,
        staging_root=staging_root,
        merge_timeout=3600,
        retry_attempts=6,
    )
    if dry_run:
        _preview_cleanup(settings, policy, state_dir, as_json=as_json)
        return
    try:
        report = BackupJob(settings, policy, state_dir=state_dir).cleanup()
    except HyperVBackupError as error:
        fail(error)
    if as_json:
        print(json.dumps(report.model_dump(), indent=2))
    else:
        for line in report.undone:
            out().print(f"undone: {line}", markup=False, highlight=False)
        for line in report.errors:
            err().print(f"failed: {line}", markup=False, highlight=False)
        if not report.undone and not report.errors:
            out().print("Nothing was left behind on the host.", markup=False)
    raise typer.Exit(1 if report.errors else 0)


def _preview_cleanup(
    settings: ConnectionSettings, policy: BackupPolicy, state_dir: Path | None, *, as_json: bool
) -> None:
    try:
        preview = preview_cleanup(settings, policy, state_dir)
    except HyperVBackupError as error:
        fail(error)
    if as_json:
        print_json(preview.document())
        return
    for item in preview.would_undo:
        out().print(f"would {item.action}", markup=False, highlight=False)
    for share in preview.left_alone:
        out().print(f"left alone: share {share} (not one of ours)", markup=False)
    if not preview.would_undo:
        out().print("Nothing was left behind on the host.", markup=False)
