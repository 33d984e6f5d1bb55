"""``restore --to-host``: a backup written straight onto the Hyper-V host, optionally imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from hyperv_backup.cli.console import err, fail, out, print_json
from hyperv_backup.cli.options import build_writer
from hyperv_backup.cli.progress import ByteProgress
from hyperv_backup.cli.repository_options import RepositoryOptions, open_repository
from hyperv_backup.cli.restore_preview import RestorePreview, preview_host_restore, restore_bytes
from hyperv_backup.config import ConnectionSettings
from hyperv_backup.errors import ConfigError, HyperVBackupError
from hyperv_backup.host import HyperVHost
from hyperv_backup.render import format_bytes
from hyperv_backup.repository import Repository
from hyperv_backup.repository.host_restore import HostRestoreReport, restore_to_host
from hyperv_backup.results import EXIT_USAGE
from hyperv_backup.transfer import SMBWriter

__all__ = [
    "HostRestoreRequest",
    "SmbPlainOpt",
    "SmbPortOpt",
    "SmbShareOpt",
    "restore_onto_host",
]

SmbPortOpt = Annotated[
    int, typer.Option("--smb-port", help="SMB port of the host (--to-host writes over SMB).")
]
SmbShareOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--smb-share",
        help="HOSTPREFIX=SHARE: write files under a host folder through this share instead of "
        "the administrative shares (e.g. 'D:\\Restore=Restore'). Repeatable.",
    ),
]
SmbPlainOpt = Annotated[
    bool, typer.Option("--smb-no-encryption", help="Do not encrypt SMB traffic (SMB 3 encrypts).")
]


@dataclass(frozen=True)
class HostRestoreRequest:
    """What ``restore --to-host`` was asked to do."""

    snapshot: str
    destination: str
    import_vm: bool
    new_name: str | None
    import_to: str | None
    paths: list[str] | None
    overwrite: bool
    smb_port: int
    smb_shares: list[str] | None
    smb_encrypt: bool
    dry_run: bool = False


def restore_onto_host(
    options: RepositoryOptions,
    settings: ConnectionSettings,
    request: HostRestoreRequest,
    *,
    as_json: bool,
) -> None:
    """Restore (and import) as asked, then print the outcome; exit 1 or 2 on errors.

    With ``request.dry_run``, print what would be written where instead, writing nothing.
    """
    writer = build_writer(
        settings,
        smb_port=request.smb_port,
        smb_shares=request.smb_shares,
        smb_encrypt=request.smb_encrypt,
    )
    preview: RestorePreview | None = None
    with open_repository(options) as repository:
        try:
            with HyperVHost(settings) as host, writer:
                if request.dry_run:
                    preview = preview_host_restore(
                        repository,
                        request.snapshot,
                        host,
                        writer,
                        request.destination,
                        import_vm=request.import_vm,
                        new_name=request.new_name,
                        vm_path=request.import_to,
                        paths=request.paths,
                        overwrite=request.overwrite,
                    )
                else:
                    report = _restore(repository, host, writer, request, as_json=as_json)
        except ConfigError as error:
            fail(error, EXIT_USAGE)
        except HyperVBackupError as error:
            fail(error)
    if preview is not None:
        preview.print_and_exit(as_json=as_json)
    if as_json:
        print_json(_document(report, settings.host))
        return
    _print(report, settings.host)


def _restore(
    repository: Repository,
    host: HyperVHost,
    writer: SMBWriter,
    request: HostRestoreRequest,
    *,
    as_json: bool,
) -> HostRestoreReport:
    """The restore itself, under a progress bar on a terminal."""
    bars = ByteProgress(err(), "restoring", None, enabled=not as_json)
    if bars.callback is not None:
        chosen = repository.snapshot(request.snapshot)
        bars.description = (
            f"restoring {chosen.vm_name} ({chosen.short_id}) onto {host.settings.host}"
        )
        bars.total = restore_bytes(chosen, request.paths)
    with bars:
        return restore_to_host(
            repository,
            request.snapshot,
            host,
            writer,
            request.destination,
            import_vm=request.import_vm,
            new_name=request.new_name,
            vm_path=request.import_to,
            paths=request.paths,
            overwrite=request.overwrite,
            progress=bars.callback,
        )


def _document(report: HostRestoreReport, host: str) -> dict[str, object]:
    return {
        "snapshot": report.snapshot_id,
        "host": host,
        "folder": report.folder,
        "files": report.files,
        "bytes": report.bytes,
        "imported": report.imported.model_dump(mode="json") if report.imported else None,
    }


def _print(report: HostRestoreReport, host: str) -> None:
    out().print(
        f"Restored {len(report.files)} files ({format_bytes(report.bytes)}) of backup "
        f"{report.snapshot_id[:8]} into {report.folder} on {host}; every file matched its "
        "recorded hash.",
        markup=False,
    )
    imported = report.imported
    if imported is None:
        return
    out().print(
        f"Imported it as VM {imported.name!r} (id {imported.id}, {imported.state}) with its "
        f"files in {imported.path}; it was not started. Once it runs well, {report.folder} "
        "can be deleted.",
        markup=False,
    )
    for warning in imported.warnings:
        err().print(f"warning: {warning}", markup=False, highlight=False)
