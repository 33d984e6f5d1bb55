"""Restore straight back onto the Hyper-V host, and optionally import the VM there.

>>> with Repository.open(target, "…") as repo, HyperVHost(settings) as host, \\
...         SMBWriter("hv01", username="CORP\\\\backup", password="…") as writer:  # doctest: +SKIP
...     report = restore_to_host(repo, "1a2b3c4d", host, writer, "D:\\\\Restore",
...                              import_vm=True, new_name="web01-restored")

The snapshot's files are written to ``<destination>\\<VM folder>\\<relative path>`` on the
host — the Export-VM layout, as :meth:`Repository.restore` writes it locally — through a
:class:`~hyperv_backup.transfer.FileWriter` (:class:`~hyperv_backup.transfer.SMBWriter`).
Each file streams chunk by chunk from the repository (the same reads ahead as a local
restore), its hash computed on the way and compared with the one recorded at backup
before the file gets its name: a damaged chunk aborts the restore and deletes that file's
partial copy on the host; files finished before it stay (each of them verified).

Everything that can refuse does so before the first byte is written: with ``import_vm`` a
VM of the name the copy would take, or an existing import folder; then the free space of
each volume involved (``get-free-space``: the restore's bytes on the destination's volume,
and with ``import_vm`` the same again on the import folder's, for ``Import-VM -Copy``); then
any file that would be overwritten (unless ``overwrite``).

With ``import_vm`` the host then runs ``import-vm``: ``Compare-VM`` and ``Import-VM -Copy
-GenerateNewId`` into ``vm_path`` (default ``<destination>\\Hyper-V\\<name>``), then
``Rename-VM`` to ``new_name``. Why a copy with a new id rather than registering the restored
files in place: see ``ps_scripts/import-vm.ps1``. In short, a registration keeps the
backed-up VM's id, which must never meet the original still on the host; and the restored
folder stays an untouched, verified copy (delete it once the new VM runs well).
"""

from __future__ import annotations

import logging
import ntpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hyperv_backup.errors import (
    ConfigError,
    HostFileExistsError,
    InsufficientSpaceError,
    IntegrityError,
    RepositoryError,
    TransferError,
    VMImportError,
    VMNotFoundError,
)
from hyperv_backup.host import HyperVHost
from hyperv_backup.ps_scripts import (
    SCRIPTS,
    GetFreeSpaceParams,
    GetInventoryParams,
    ImportedVM,
    ImportVMParams,
)
from hyperv_backup.repository.repository import Repository
from hyperv_backup.repository.restore import ChunkReader, _selected, vm_folder_name
from hyperv_backup.repository.snapshot import Snapshot, SnapshotFile
from hyperv_backup.sink import safe_relative_path
from hyperv_backup.transfer import FileUpload, FileWriter

__all__ = ["HostRestoreReport", "restore_to_host"]

logger = logging.getLogger(__name__)

_DRIVE_PATH = re.compile(r"^[A-Za-z]:\\")
_IMPORT_FOLDER = "Hyper-V"


@dataclass
class HostRestoreReport:
    """What a restore onto the host wrote, and the VM it imported (if asked)."""

    snapshot_id: str
    folder: str
    """The host folder holding the restored Export-VM layout."""
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    imported: ImportedVM | None = None


def restore_to_host(
    repository: Repository,
    snapshot_id: str,
    host: HyperVHost,
    writer: FileWriter,
    destination: str,
    *,
    import_vm: bool = False,
    new_name: str | None = None,
    vm_path: str | None = None,
    paths: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> HostRestoreReport:
    """Write a snapshot onto the host under ``destination`` and, with ``import_vm``, import it.

    ``destination``: a folder on the host (``D:\\Restore``); the files go to
    ``<destination>\\<VM folder>\\``. ``new_name``: the imported VM's name (default: the
    backed-up VM's; refused while a VM of that name exists). ``vm_path``: where the imported
    VM's files go (must not exist yet; default ``<destination>\\Hyper-V\\<name>``).
    ``paths``: only files under these relative paths (not with ``import_vm``: an import needs
    the whole VM). ``overwrite``: replace existing files of the restore. ``progress``: called
    with the byte count of each chunk written (zero chunks, which are skipped, included).

    Raises :class:`InsufficientSpaceError`, :class:`HostFileExistsError` or
    :class:`VMImportError` before anything is written, :class:`IntegrityError` when stored
    data is damaged (the file's partial copy is deleted), a
    :class:`~hyperv_backup.errors.TransferError` when writing fails, and
    :class:`VMImportError` when the host refuses the import (the files stay restored).
    """
    if (new_name or vm_path) and not import_vm:
        raise ConfigError("new_name and vm_path are for import_vm=True")
    if import_vm and paths:
        raise ConfigError("import_vm needs the whole VM: restore every file (no paths)")
    root = _host_folder(destination, "destination")
    snapshot = repository.snapshot(snapshot_id)
    folder = ntpath.join(root, vm_folder_name(snapshot.vm_name))
    targets = _targets(snapshot, folder, paths)
    name = new_name or snapshot.vm_name
    import_to: str | None = None  # set exactly when importing
    if import_vm:
        import_to = (
            _host_folder(vm_path, "vm_path")
            if vm_path
            else ntpath.join(root, _IMPORT_FOLDER, vm_folder_name(name))
        )
        _check_apart(folder, import_to)
    with repository.shared_lock(f"restore of {snapshot.short_id} onto {host.settings.host}"):
        if import_to is not None:
            _refuse_import(host, writer, name, import_to)
        restore_bytes = sum(entry.size for entry, _path in targets)
        needs = [(root, restore_bytes)]
        if import_to is not None:
            needs.append((import_to, restore_bytes))  # Import-VM -Copy copies it all again
        _check_space(host, needs)
        _refuse_existing(writer, targets, overwrite)
        report = HostRestoreReport(snapshot_id=snapshot.id, folder=folder)
        _write_files(
            repository, snapshot, targets, writer, report, overwrite=overwrite, progress=progress
        )
    if import_to is not None:
        params = ImportVMParams(path=folder, virtual_machine_path=import_to, new_name=new_name)
        report.imported = host.runner.run(SCRIPTS["import-vm"], params)
        logger.info("imported %s as %s (%s)", folder, report.imported.name, report.imported.id)
    return report


def _write_files(
    repository: Repository,
    snapshot: Snapshot,
    targets: list[tuple[SnapshotFile, str]],
    writer: FileWriter,
    report: HostRestoreReport,
    *,
    overwrite: bool,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Every chosen file onto the host, one after the other (under the caller's lock)."""
    # The repository's blob store: this module belongs to the repository package.
    store = repository._store
    store.refresh_index()
    reader = ChunkReader(store)
    made: set[str] = set()
    for entry, path in targets:
        parent = ntpath.dirname(path)
        if parent.casefold() not in made:
            writer.makedirs(parent)
            made.add(parent.casefold())
        _restore_file(reader, snapshot, entry, writer, path, overwrite=overwrite, progress=progress)
        report.files.append(entry.path)
        report.bytes += entry.size
        logger.info("restored %s (%d bytes) to %s", entry.path, entry.size, path)


def _host_folder(path: str, what: str) -> str:
    normalised = ntpath.normpath(path.replace("/", "\\"))
    if not _DRIVE_PATH.match(normalised + "\\"):
        raise ConfigError(
            f"{what} {path!r} is not a folder on a drive of the host (e.g. D:\\Restore)"
        )
    return normalised


def _check_apart(folder: str, vm_path: str) -> None:
    """The import folder and the restored folder must not contain one another."""
    a, b = folder.casefold().rstrip("\\") + "\\", vm_path.casefold().rstrip("\\") + "\\"
    if a.startswith(b) or b.startswith(a):
        raise ConfigError(
            f"The import folder {vm_path!r} and the restored folder {folder!r} overlap: "
            "Import-VM copies from one into the other. Choose another vm_path."
        )


def _targets(
    snapshot: Snapshot, folder: str, paths: Sequence[str] | None
) -> list[tuple[SnapshotFile, str]]:
    chosen = [f for f in snapshot.files if _selected(f.path, paths)]
    if paths and not chosen:
        raise RepositoryError(
            f"{snapshot.describe()} has no file under {list(paths)}; "
            f"its files are: {[f.path for f in snapshot.files]}"
        )
    return [(f, ntpath.join(folder, *safe_relative_path(f.path).parts)) for f in chosen]


def _refuse_import(host: HyperVHost, writer: FileWriter, name: str, import_to: str) -> None:
    """Refuse, before any byte is written, an import the host would refuse after the copy."""
    host.ensure_supported()
    _refuse_taken_name(host, name)
    # Import-VM writes there, not the writer: a folder no share covers is the script's to check.
    if writer.reachable(import_to) and writer.exists(import_to):
        raise VMImportError(
            f"The import folder {import_to!r} exists on the host: the imported VM's files go "
            "into a new folder. Choose another (vm_path / --import-to). Nothing was written.",
            kind="import",
            target=import_to,
        )


def _refuse_taken_name(host: HyperVHost, name: str) -> None:
    """A name that a VM on the host has is refused."""
    try:
        found = host.runner.run(
            SCRIPTS["get-inventory"], GetInventoryParams(names=[name], exact=True)
        )
    except VMNotFoundError:
        return
    taken = found.vms[0]
    raise VMImportError(
        f"A virtual machine named {name!r} exists on host {host.settings.host} (id "
        f"{taken.id}): the restored VM would be imported beside it under the same name. "
        "Give it a new name (new_name / --new-name). Nothing was written.",
        kind="import",
        target=name,
    )


def _check_space(host: HyperVHost, needs: list[tuple[str, int]]) -> None:
    """Refuse when a volume has less free space than what goes to it (paths may share one)."""
    params = GetFreeSpaceParams(paths=[path for path, _bytes in needs])
    found = host.runner.run(SCRIPTS["get-free-space"], params).volumes
    totals: dict[str, tuple[float, int, list[str]]] = {}
    for (path, need), volume in zip(needs, found, strict=True):
        free, total, where = totals.get(volume.volume, (volume.free_bytes, 0, []))
        totals[volume.volume] = (free, total + need, [*where, path])
    for free, total, where in totals.values():
        if total > free:
            raise InsufficientSpaceError(
                f"Not enough free space on host {host.settings.host} for this restore: the "
                f"volume holding {' and '.join(where)} has {_gib(free)} ({free:.0f} bytes) "
                f"free, {_gib(total)} ({total} bytes) are needed"
                + (" (the restore, and Import-VM's copy of it)" if len(where) > 1 else "")
                + ". Nothing was written. Free space there, or restore to a folder on "
                "another volume.",
                script="get-free-space",
                kind="insufficient_space",
                target=where[0],
            )


def _refuse_existing(
    writer: FileWriter, targets: list[tuple[SnapshotFile, str]], overwrite: bool
) -> None:
    if overwrite:
        return
    existing = [path for _entry, path in targets if writer.exists(path)]
    if existing:
        raise HostFileExistsError(
            f"refusing to overwrite {len(existing)} existing file(s) on the host, e.g. "
            f"{existing[0]}; restore into another folder or pass overwrite=True "
            "(--overwrite). Nothing was written."
        )


def _restore_file(
    reader: ChunkReader,
    snapshot: Snapshot,
    entry: SnapshotFile,
    writer: FileWriter,
    path: str,
    *,
    overwrite: bool,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stream one file onto the host; it gets its name only once its hash matched."""
    try:
        with writer.create(path, overwrite=overwrite) as upload:
            _stream(reader, entry, upload, progress)
            upload.commit()
    except TransferError:
        raise  # writing failed: the host's side, not the repository's
    except (IntegrityError, FileNotFoundError) as err:
        raise IntegrityError(
            f"{entry.path!r} of {snapshot.describe()} cannot be restored: {err}; its partial "
            "file on the host was removed. Run check(read_data=True)."
        ) from err


def _stream(
    reader: ChunkReader,
    entry: SnapshotFile,
    upload: FileUpload,
    progress: Callable[[int], None] | None = None,
) -> None:
    """The file's chunks into ``upload``; :class:`IntegrityError` unless all of it matched."""
    digest = entry.hasher()
    written = 0
    for length, data in reader.chunks(reader.chunk_ids(entry)):
        if data is None:  # all zeros: nothing crosses the network
            digest.update(bytes(length))
            upload.skip(length)
        else:
            digest.update(data)
            upload.write(data)
        written += length
        if progress is not None:
            progress(length)
    if written != entry.size or not digest.matches():
        raise IntegrityError(
            f"the data read back does not match the {digest.name} recorded at backup "
            f"({written} of {entry.size} bytes)"
        )


def _gib(value: float) -> str:
    return f"{value / 2**30:,.2f} GiB"
