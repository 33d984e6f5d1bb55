"""``init``, ``snapshots``, ``check``, ``restore``, ``forget`` and ``prune``."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hyperv_backup.cli.console import err, exit_codes, fail, out, print_json
from hyperv_backup.cli.host_restore import (
    HostRestoreRequest,
    SmbPlainOpt,
    SmbPortOpt,
    SmbShareOpt,
    restore_onto_host,
)
from hyperv_backup.cli.options import JsonOpt
from hyperv_backup.cli.progress import ByteProgress
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
from hyperv_backup.cli.restore_preview import (
    RestorePreview,
    preview_local_restore,
    restore_bytes,
)
from hyperv_backup.config import ConnectionSettings
from hyperv_backup.errors import ConfigError, HyperVBackupError
from hyperv_backup.render import format_bytes
from hyperv_backup.repository import Repository, RetentionPolicy
from hyperv_backup.repository.config import CONFIG_KEY
from hyperv_backup.repository.index import INDEX_PREFIX
from hyperv_backup.repository.pack import PACK_PREFIX
from hyperv_backup.repository.snapshot import SNAPSHOT_PREFIX
from hyperv_backup.results import EXIT_FAILURE, EXIT_USAGE
from hyperv_backup.targets import LocalTarget, Target

__all__ = ["check", "forget", "init", "prune", "restore", "snapshots"]

NoEncryptionOpt = Annotated[
    bool, typer.Option("--no-encryption", help="Store unencrypted (no password).")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")
]
PreviewOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Show what would be created or written, and whether it would be refused (then "
        "exit as the command would); change nothing.",
    ),
]


def _options(
    repo: str,
    s3_endpoint: str | None,
    s3_region: str | None,
    s3_profile: str | None,
    password_file: Path | None,
) -> RepositoryOptions:
    return RepositoryOptions(repo, s3_endpoint, s3_region, s3_profile, password_file)


@exit_codes()
def init(
    repo: RepoOpt,
    no_encryption: NoEncryptionOpt = False,
    password_file: PasswordFileOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    s3_profile: S3ProfileOpt = None,
    dry_run: PreviewOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a repository (encrypted with a password unless --no-encryption)."""
    options = _options(repo, s3_endpoint, s3_region, s3_profile, password_file)
    if dry_run:
        _preview_init(options, encrypted=not no_encryption, as_json=as_json)
        return
    password = None if no_encryption else read_password(options, confirm=True)
    if password is None and not no_encryption:
        fail(ConfigError(_ENCRYPTION_UNKEYED), EXIT_USAGE)
    try:
        repository = Repository.init(make_target(options), password)
    except HyperVBackupError as error:
        fail(error)
    with repository:
        if as_json:
            print_json({"repository": repo, "id": repository.id, "encrypted": repository.encrypted})
            return
        kind = "encrypted" if repository.encrypted else "unencrypted"
        out().print(f"Created {kind} repository {repository.id} at {repo}", markup=False)


_ENCRYPTION_UNKEYED = (
    "A new repository is encrypted: give its password (HYPERV_BACKUP_REPO_PASSWORD or "
    "--password-file), or choose --no-encryption explicitly."
)


def _preview_init(options: RepositoryOptions, *, encrypted: bool, as_json: bool) -> None:
    """What ``init`` would create, and why it would refuse; creates nothing (not even the
    folder of a local repository)."""
    local = not options.repo.startswith("s3://")
    folder_exists = Path(options.repo).is_dir() if local else True
    would_create = [] if folder_exists else [f"folder {options.repo}"]
    would_create.append(f"{options.repo.rstrip('/')}/{CONFIG_KEY}")
    refusals: list[tuple[str, int]] = []
    if folder_exists:
        try:
            refusal = _occupied(LocalTarget(Path(options.repo)) if local else make_target(options))
        except HyperVBackupError as error:
            fail(error)
        if refusal:
            refusals.append((refusal, EXIT_FAILURE))
    password_from = _password_source(options) if encrypted else None
    if encrypted and password_from is None:
        refusals.append((_ENCRYPTION_UNKEYED, EXIT_USAGE))
    document = {
        "dry_run": True,
        "repository": options.repo,
        "encrypted": encrypted,
        "password_from": password_from,
        "would_create": would_create,
        "refusals": [text for text, _code in refusals],
    }
    if as_json:
        print_json(document)
    else:
        kind = "an encrypted" if encrypted else "an unencrypted"
        out().print(f"Would create {kind} repository at {options.repo}:", markup=False)
        for thing in would_create:
            out().print(f"  {thing}", markup=False, highlight=False)
        if encrypted:
            out().print(f"  password from: {password_from or 'nowhere'}", markup=False)
        for text, _code in refusals:
            err().print(f"would refuse: {text}", markup=False, highlight=False)
    if refusals:
        raise typer.Exit(max(code for _text, code in refusals))


def _occupied(target: Target) -> str | None:
    """Why ``Repository.init`` would refuse ``target`` (the checks it makes), if it would."""
    if target.stat(CONFIG_KEY) is not None:
        return f"{target!r} already holds a repository; open it instead"
    if any(True for _ in target.list(SNAPSHOT_PREFIX)) or any(
        True for _ in target.list(INDEX_PREFIX)
    ):
        return (
            f"{target!r} holds repository objects but no config; refusing to create a new "
            "repository over them"
        )
    return None


def _password_source(options: RepositoryOptions) -> str | None:
    """Where ``read_password`` would take the password from (without asking for it)."""
    if options.password_file is not None:
        return f"password file {options.password_file}"
    if os.environ.get("HYPERV_BACKUP_REPO_PASSWORD"):
        return "HYPERV_BACKUP_REPO_PASSWORD"
    return "a prompt" if sys.stdin.isatty() else None


@exit_codes()
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
        try:
            found = r.snapshots(vm=vm, host=host, since=since, until=until, tags=tag or ())
        except HyperVBackupError as error:
            fail(error)
    if as_json:
        print_json([s.model_dump(mode="json", exclude={"files"}) for s in found])
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


@exit_codes("1 here: something is damaged.")
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
        try:
            bars = ByteProgress(
                err(),
                "reading and verifying packs",
                None,
                enabled=read_data and not as_json,
            )
            if bars.callback is not None:  # the total is worth a listing only for the bar
                bars.total = sum(info.size for info in r.target.list(PACK_PREFIX))
            with bars:
                report = r.check(read_data=read_data, progress=bars.callback)
        except HyperVBackupError as error:
            fail(error)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "read_data": report.read_data,
                "errors": [str(e) for e in report.errors],
                "damaged_snapshots": sorted(report.damaged_snapshots),
                "warnings": report.warnings,
                "snapshots": report.snapshots,
                "packs": report.packs,
                "blobs": report.blobs,
                "bytes_read": report.bytes_read,
            }
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


@exit_codes()
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
    dry_run: PreviewOpt = False,
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
            dry_run=dry_run,
        )
        restore_onto_host(options, connect(), request, as_json=as_json)
        return
    if import_vm or new_name or import_to:
        fail(ConfigError("--import, --new-name and --import-to go with --to-host."), EXIT_USAGE)
    assert to is not None
    preview: RestorePreview | None = None
    with open_repository(options) as r:
        try:
            if dry_run:
                preview = preview_local_restore(r, snapshot, to, paths=path, overwrite=overwrite)
            else:
                bars = ByteProgress(err(), "restoring", None, enabled=not as_json)
                if bars.callback is not None:
                    chosen = r.snapshot(snapshot)
                    bars.description = f"restoring {chosen.vm_name} ({chosen.short_id})"
                    bars.total = restore_bytes(chosen, path)
                with bars:
                    report = r.restore(
                        snapshot, to, paths=path, overwrite=overwrite, progress=bars.callback
                    )
        except HyperVBackupError as error:
            fail(error)
    if preview is not None:
        preview.print_and_exit(as_json=as_json)
    if as_json:
        print_json(
            {
                "snapshot": report.snapshot_id,
                "folder": str(report.folder),
                "files": report.files,
                "bytes": report.bytes,
            }
        )
        return
    out().print(
        f"Restored {len(report.files)} files ({format_bytes(report.bytes)}) of backup "
        f"{report.snapshot_id[:8]} into {report.folder}; every file matched its recorded hash.",
        markup=False,
    )


@exit_codes()
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
        print_json(
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
                "prune": dataclasses.asdict(pruned) if pruned else None,
            }
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


@exit_codes()
def prune(
    repo: RepoOpt,
    dry_run: DryRunOpt = False,
    password_file: PasswordFileOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    s3_profile: S3ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete data no backup uses any more. Refuses while a backup holds the lock."""
    with open_repository(_options(repo, s3_endpoint, s3_region, s3_profile, password_file)) as r:
        try:
            report = r.prune(dry_run=dry_run)
        except HyperVBackupError as error:
            fail(error)
    if as_json:
        print_json(dataclasses.asdict(report))
        return
    out().print(
        f"{len(report.packs_deleted)} pack(s) {'would be ' if dry_run else ''}deleted, "
        f"{format_bytes(report.bytes_freed)} freed",
        markup=False,
    )
