"""``restore --dry-run``: what a restore would write where, and whether it would be refused.

Nothing is written, here or on the host: the backup's files are listed with their sizes
and destinations, each destination looked up, and the checks a restore makes before its
first byte (existing files without ``--overwrite``; onto the host also free space, and with
``--import`` the VM name and import folder) are run the same way — the very functions the
restore calls — their refusals collected instead of raised.
"""

from __future__ import annotations

import ntpath
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from hyperv_backup.cli.console import err, out, print_json
from hyperv_backup.errors import ConfigError, HyperVBackupError, RepositoryError
from hyperv_backup.host import HyperVHost
from hyperv_backup.render import format_bytes
from hyperv_backup.repository import Repository
from hyperv_backup.repository.host_restore import (
    _IMPORT_FOLDER,
    _check_apart,
    _check_space,
    _host_folder,
    _refuse_existing,
    _refuse_import,
    _targets,
)
from hyperv_backup.repository.restore import _selected, vm_folder_name
from hyperv_backup.repository.snapshot import Snapshot
from hyperv_backup.results import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from hyperv_backup.sink import safe_relative_path
from hyperv_backup.transfer import FileWriter

__all__ = [
    "PlannedFile",
    "RestorePreview",
    "preview_host_restore",
    "preview_local_restore",
    "restore_bytes",
]


@dataclass(frozen=True)
class PlannedFile:
    """A file of the backup, where it would go, and whether something is there already."""

    path: str
    destination: str
    bytes: int
    exists: bool


@dataclass
class RestorePreview:
    """What a restore would do; ``refusals``: why it would stop before writing anything."""

    snapshot_id: str
    vm_name: str
    folder: str
    folder_exists: bool
    host: str | None = None
    files: list[PlannedFile] = field(default_factory=list)
    import_to: str | None = None
    refusals: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK
    """What the restore would exit with: 0, or that of its first refusal (1, or 2)."""

    def refuse(self, refusal: HyperVBackupError) -> None:
        """Record why the restore would stop (and the exit code it would stop with)."""
        self.refusals.append(str(refusal).replace(" Nothing was written.", ""))
        code = EXIT_USAGE if isinstance(refusal, ConfigError) else EXIT_FAILURE
        self.exit_code = self.exit_code or code

    @property
    def bytes(self) -> int:
        """What would be written."""
        return sum(f.bytes for f in self.files)

    def document(self) -> dict[str, object]:
        """The ``--json`` document."""
        fields = asdict(self)
        del fields["exit_code"]
        return {"dry_run": True, **fields, "bytes": self.bytes}

    def print_and_exit(self, *, as_json: bool) -> NoReturn:
        """Print it (JSON, or for a person) and exit as the restore would have begun."""
        if as_json:
            print_json(self.document())
        else:
            self.show()
        raise typer.Exit(self.exit_code)

    def show(self) -> None:
        """Print it for a person: stdout for the plan, stderr for the refusals."""
        where = f" on {self.host}" if self.host else ""
        state = "exists" if self.folder_exists else "new"
        out().print(
            f"Would restore {len(self.files)} file(s), {format_bytes(self.bytes)}, of backup "
            f"{self.snapshot_id[:8]} ({self.vm_name}) into {self.folder}{where} ({state} "
            "folder):",
            markup=False,
            highlight=False,
        )
        # Each file goes to the same relative path under the folder (--json gives each path).
        table = Table(box=None, pad_edge=False)
        table.add_column("File (in that folder)", overflow="fold")
        table.add_column("Size", justify="right")
        table.add_column("Exists already")
        for f in self.files:
            table.add_row(escape(f.path), format_bytes(f.bytes), "yes" if f.exists else "")
        out().print(table)
        if self.import_to is not None:
            out().print(
                f"Then import it as a new VM, its files copied into {self.import_to}.",
                markup=False,
                highlight=False,
            )
        for refusal in self.refusals:
            err().print(f"would refuse: {refusal}", markup=False, highlight=False)


def preview_local_restore(
    repository: Repository,
    snapshot_id: str,
    destination: Path,
    *,
    paths: Sequence[str] | None,
    overwrite: bool,
) -> RestorePreview:
    """A restore into ``destination`` on this machine (see :meth:`Repository.restore`)."""
    snapshot = repository.snapshot(snapshot_id)
    folder = destination / vm_folder_name(snapshot.vm_name)
    chosen = [f for f in snapshot.files if _selected(f.path, paths)]
    if paths and not chosen:
        raise RepositoryError(_nothing_under(snapshot, paths))
    preview = RestorePreview(snapshot.id, snapshot.vm_name, str(folder), folder.exists())
    for entry in chosen:
        target = folder.joinpath(*safe_relative_path(entry.path).parts)
        preview.files.append(PlannedFile(entry.path, str(target), entry.size, target.exists()))
    existing = [f.destination for f in preview.files if f.exists]
    if existing and not overwrite:
        preview.refuse(
            RepositoryError(
                f"refusing to overwrite {len(existing)} existing file(s), e.g. {existing[0]}; "
                "restore into an empty folder or pass --overwrite"
            )
        )
    return preview


def restore_bytes(snapshot: Snapshot, paths: Sequence[str] | None) -> int:
    """The bytes a restore of ``snapshot`` (only ``paths``, if given) writes."""
    return sum(f.size for f in snapshot.files if _selected(f.path, paths))


def preview_host_restore(
    repository: Repository,
    snapshot_id: str,
    host: HyperVHost,
    writer: FileWriter,
    destination: str,
    *,
    import_vm: bool,
    new_name: str | None,
    vm_path: str | None,
    paths: Sequence[str] | None,
    overwrite: bool,
) -> RestorePreview:
    """A restore onto the host (see :func:`~hyperv_backup.repository.restore_to_host`)."""
    if (new_name or vm_path) and not import_vm:
        raise ConfigError("--new-name and --import-to go with --import")
    if import_vm and paths:
        raise ConfigError("--import needs the whole VM: restore every file (no --path)")
    root = _host_folder(destination, "destination")
    snapshot = repository.snapshot(snapshot_id)
    folder = ntpath.join(root, vm_folder_name(snapshot.vm_name))
    targets = _targets(snapshot, folder, paths)
    preview = RestorePreview(
        snapshot.id, snapshot.vm_name, folder, writer.exists(folder), host=host.settings.host
    )
    preview.files = [
        PlannedFile(entry.path, path, entry.size, writer.exists(path)) for entry, path in targets
    ]
    total = preview.bytes
    checks: list[Callable[[], None]] = []
    needs = [(root, total)]
    if import_vm:
        name = new_name or snapshot.vm_name
        import_to = (
            _host_folder(vm_path, "vm_path")
            if vm_path
            else ntpath.join(root, _IMPORT_FOLDER, vm_folder_name(name))
        )
        preview.import_to = import_to
        needs.append((import_to, total))  # Import-VM -Copy copies it all again
        checks += [
            lambda: _check_apart(folder, import_to),
            lambda: _refuse_import(host, writer, name, import_to),
        ]
    checks += [
        lambda: _check_space(host, needs),
        lambda: _refuse_existing(writer, targets, overwrite),
    ]
    for check in checks:
        try:
            check()
        except HyperVBackupError as refusal:
            preview.refuse(refusal)
    return preview


def _nothing_under(snapshot: Snapshot, paths: Sequence[str]) -> str:
    return (
        f"{snapshot.describe()} has no file under {list(paths)}; "
        f"its files are: {[f.path for f in snapshot.files]}"
    )
