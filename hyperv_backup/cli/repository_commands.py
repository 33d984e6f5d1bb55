"""``init``, ``snapshots``, ``check``, ``restore``, ``forget`` and ``prune``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hyperv_backup.cli.console import err, fail, out
from hyperv_backup.cli.host_restore import (
    HostRestoreRequest,
    SmbPlainOpt,
    SmbPortOpt,
    SmbShareOpt,
    restore_onto_host,
)
from hyperv_backup.cli.options import JsonOpt
from hyperv_backup.cli.repository_options import (
    PasswordFileOpt,
    RepoOpt,
    RepositoryOptions,
    S3EndpointOpt,
    S3ProfileOpt,
    S3RegionOpt,
    make_target,
    open_repository,
    read_password,
)
from hyperv_backup.config import ConnectionSettings
from hyperv_backup.errors import ConfigError, HyperVBackupError
from hyperv_backup.render import format_bytes
from hyperv_backup.repository import Repository, RetentionPolicy
from hyperv_backup.results import EXIT_FAILURE, EXIT_USAGE

__all__ = ["check", "forget", "init", "prune", "restore", "snapshots"]

NoEncryptionOpt = Annotated[
    bool, typer.Option("--no-encryption", help="Store unencrypted (no password).")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")
]


def _options(
    repo: str,
    s3_endpoint: str | None,
    s3_region: str | None,
    s3_profile: str | None,
    password_file: Path | None,
) -> RepositoryOptions:
    return RepositoryOptions(repo, s3_endpoint, s3_region, s3_profile, password_file)


def init(
    repo: RepoOpt,
    no_encryption: NoEncryptionOpt = False,
    password_file: PasswordFileOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    s3_profile: S3ProfileOpt = None,
) -> None:
    """Create a repository (encrypted with a password unless --no-encryption)."""
    options = _options(repo, s3_endpoint, s3_region, s3_profile, password_file)
    password = None if no_encryption else read_password(options, confirm=True)
    if password is None and not no_encryption:
        fail(
            ConfigError(
                "A new repository is encrypted: give its password (HYPERV_BACKUP_REPO_PASSWORD "
                "or --password-file), or choose --no-encryption explicitly."
            ),
            EXIT_USAGE,
        )
    try:
        repository = Repository.init(make_target(options), password)
    except HyperVBackupError as error:
        fail(error)
    with repository:
        kind = "encrypted" if repository.encrypted else "unencrypted"
        out().print(f"Created {kind} repository {repository.id} at {repo}", markup=False)


def snapshots(
    repo: RepoOpt,
    vm: Annotated[str | None, typer.Option(help="VM name or wildcard.")] = None,
    host: Annotated[str | None, typer.Option(help="Only backups taken on this host.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only backups with this tag.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Taken at or after (ISO date).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Taken before (ISO date).")] = None,
    password_file: PasswordFileOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    s3_profile: S3ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the VM backups in the repository, newest first."""
    with open_repository(_options(repo, s3_endpoint, s3_region, s3_profile, password_file)) as r:
        found = r.snapshots(vm=vm, host=host, since=since, until=until, tags=tag or ())
    if as_json:
        print(json.dumps([s.model_dump(mode="json", exclude={"files"}) for s in found], indent=2))
        return
    table = Table(title=f"{len(found)} backup(s)")
    for column in ("ID", "Time", "VM", "Host", "Consistency", "Size", "Status", "Tags"):
        table.add_column(column, overflow="fold")
    for s in found:
        table.add_row(
            s.short_id,
            s.time.strftime("%Y-%m-%d %H:%M"),
            escape(s.vm_name),
            escape(s.host),
            s.result.achieved.value if s.result.achieved else "-",
            format_bytes(s.result.bytes),
            "ok" if s.successful else "failed",
            escape(", ".join(s.tags)),
        )
    out().print(table)


def check(
    repo: RepoOpt,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="Re-read and re-hash every stored byte.")
    ] = False,
    password_file: PasswordFileOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    s3_profile: S3ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify the repository: structure, and with --read-data every chunk's hash.

    Exits 1 when anything is damaged, naming the VM backups and files affected.
    """
    with open_repository(_options(repo, s3_endpoint, s3_region, s3_profile, password_file)) as r:
        report = r.check(read_data=read_data)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "errors": [str(e) for e in report.errors],
                    "warnings": report.warnings,
                    "snapshots": report.snapshots,
                    "packs": report.packs,
                    "blobs": report.blobs,
                    "bytes_read": report.bytes_read,
                },
                indent=2,
            )
        )
    else:
        for problem in report.errors:
            err().print(f"damaged: {problem}", markup=False, highlight=False)
        for warning in report.warnings:
            err().print(f"warning: {warning}", markup=False, highlight=False)
        what = f"read and verified {format_bytes(report.bytes_read)}" if read_data else "structure"
        verdict = "no errors" if report.ok else f"{len(report.errors)} error(s)"
        out().print(
            f"{report.snapshots} backups, {report.packs} packs, {what}: {verdict}", markup=False
        )
    raise typer.Exit(0 if report.ok else EXIT_FAILURE)


def restore(
    snapshot: Annotated[str, typer.Argument(help="Backup id (or a unique prefix of it).")],
    repo: RepoOpt,
    connect: Callable[[], ConnectionSettings] | None,
    to: Annotated[
        Path | None, typer.Option("--to", help="Folder on this machine to restore into.")
    ] = None,
    to_host: Annotated[
        str | None,
        typer.Option(
            "--to-host",
            help="Folder on the Hyper-V host (--host) to restore into over SMB, e.g. "
            "'D:\\Restore'.",
        ),
    ] = None,
    import_vm: Annotated[
        bool,
        typer.Option(
            "--import",
            help="With --to-host: then import the VM on the host as a new VM (new id, "
            "not started).",
        ),
    ] = False,
    new_name: Annotated[
        str | None,
        typer.Option(help="With --import: the new VM's name (needed while the original exists)."),
    ] = None,
    import_to: Annotated[
        str | None,
        typer.Option(
            "--import-to",
            help="With --import: a new host folder for the VM's files "
            "(default <to-host>\\Hyper-V\\<name>).",
        ),
    ] = None,
    path: Annotated[
        list[str] | None, typer.Option(help="Only files under this relative path (repeatable).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace files that exist.")] = False,
    password_file: PasswordFileOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    s3_profile: S3ProfileOpt = None,
    smb_port: SmbPortOpt = 445,
    smb_share: SmbShareOpt = None,
    smb_no_encryption: SmbPlainOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore a VM backup into the Export-VM folder layout, verifying every file's hash.

    With --to, into a folder here (import it on a host with Import-VM). With --to-host,
    straight onto the Hyper-V host over SMB; with --import the host then imports it as a new
    VM (Import-VM -Copy -GenerateNewId; never over the original, never started).
    """
    options = _options(repo, s3_endpoint, s3_region, s3_profile, password_file)
    if (to is None) == (to_host is None):
        fail(
            ConfigError(
                "Give exactly one of --to FOLDER (restore on this machine) and --to-host "
                "HOSTFOLDER (restore onto the Hyper-V host given by --host)."
            ),
            EXIT_USAGE,
        )
    if to_host is not None:
        if connect is None:
            fail(ConfigError("--to-host needs the host: give --host and its account."), EXIT_USAGE)
        request = HostRestoreRequest(
            snapshot=snapshot,
            destination=to_host,
            import_vm=import_vm,
            new_name=new_name,
            import_to=import_to,
            paths=path,
            overwrite=overwrite,
            smb_port=smb_port,
            smb_shares=smb_share,
            smb_encrypt=not smb_no_encryption,
        )
        restore_onto_host(options, connect(), request, as_json=as_json)
        return
    if import_vm or new_name or import_to:
        fail(ConfigError("--import, --new-name and --import-to go with --to-host."), EXIT_USAGE)
    assert to is not None
    with open_repository(options) as r:
        try:
            report = r.restore(snapshot, to, paths=path, overwrite=overwrite)
        except HyperVBackupError as error:
            fail(error)
    if as_json:
        print(
            json.dumps(
                {
                    "snapshot": report.snapshot_id,
                    "folder": str(report.folder),
                    "files": report.files,
                    "bytes": report.bytes,
                },
                indent=2,
            )
        )
        return
    out().print(
        f"Restored {len(report.files)} files ({format_bytes(report.bytes)}) of backup "
        f"{report.snapshot_id[:8]} into {report.folder}; every file matched its SHA-256.",
        markup=False,
    )


def forget(
    repo: RepoOpt,
    keep_last: Annotated[int, typer.Option(help="Keep the newest N backups per VM.")] = 0,
    keep_hourly: Annotated[int, typer.Option(help="Keep one per hour for N hours.")] = 0,
    keep_daily: Annotated[int, typer.Option(help="Keep one per day for N days.")] = 0,
    keep_weekly: Annotated[int, typer.Option(help="Keep one per week for N weeks.")] = 0,
    keep_monthly: Annotated[int, typer.Option(help="Keep one per month for N months.")] = 0,
    keep_yearly: Annotated[int, typer.Option(help="Keep one per year for N years.")] = 0,
    vm: Annotated[str | None, typer.Option(help="Only this VM (name or wildcard).")] = None,
    prune_after: Annotated[bool, typer.Option("--prune", help="Then delete unused data.")] = False,
    dry_run: DryRunOpt = False,
    password_file: PasswordFileOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    s3_profile: S3ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove backups the retention policy does not keep (never a VM's newest good one).

    Refuses while a backup holds the repository's lock.
    """
    policy = RetentionPolicy(
        keep_last=keep_last,
        keep_hourly=keep_hourly,
        keep_daily=keep_daily,
        keep_weekly=keep_weekly,
        keep_monthly=keep_monthly,
        keep_yearly=keep_yearly,
    )
    if policy.empty:
        fail(ConfigError("Give at least one --keep-* rule."), EXIT_USAGE)
    with open_repository(_options(repo, s3_endpoint, s3_region, s3_profile, password_file)) as r:
        try:
            report = r.forget(policy, dry_run=dry_run, vm=vm)
            pruned = r.prune(dry_run=dry_run) if prune_after else None
        except HyperVBackupError as error:
            fail(error)
    if as_json:
        print(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "kept": [
                        {"id": d.snapshot.id, "vm": d.snapshot.vm_name, "reasons": d.reasons}
                        for d in report.kept
                    ],
                    "removed": [
                        {"id": d.snapshot.id, "vm": d.snapshot.vm_name} for d in report.removed
                    ],
                    "bytes_freed": pruned.bytes_freed if pruned else None,
                },
                indent=2,
            )
        )
        return
    verb = "would remove" if dry_run else "removed"
    for decision in report.removed:
        out().print(
            f"{verb} {decision.snapshot.short_id} {decision.snapshot.vm_name} "
            f"{decision.snapshot.time:%Y-%m-%d %H:%M}",
            markup=False,
        )
    out().print(f"{len(report.kept)} kept, {len(report.removed)} {verb}", markup=False)
    if pruned is not None:
        out().print(
            f"prune: {format_bytes(pruned.bytes_freed)} {'would be ' if dry_run else ''}freed",
            markup=False,
        )


def prune(
    repo: RepoOpt,
    dry_run: DryRunOpt = False,
    password_file: PasswordFileOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    s3_profile: S3ProfileOpt = None,
) -> None:
    """Delete data no backup uses any more. Refuses while a backup holds the lock."""
    with open_repository(_options(repo, s3_endpoint, s3_region, s3_profile, password_file)) as r:
        try:
            report = r.prune(dry_run=dry_run)
        except HyperVBackupError as error:
            fail(error)
    out().print(
        f"{len(report.packs_deleted)} pack(s) {'would be ' if dry_run else ''}deleted, "
        f"{format_bytes(report.bytes_freed)} freed",
        markup=False,
    )
