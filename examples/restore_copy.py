#!/usr/bin/env python3
"""Restore the newest backup of one VM as a copy: to a local folder, and/or onto the host.

    export HYPERV_BACKUP_REPO_PASSWORD='…'
    # The Export-VM layout in a local folder (nothing on the host is touched):
    python restore_copy.py web01 --repo s3://backups/hyperv/hv01 --to /restore
    # Back onto the host over SMB, then Import-VM as a new VM beside the original:
    export HYPERV_BACKUP_PASSWORD='…'
    python restore_copy.py web01 --repo s3://backups/hyperv/hv01 \\
        --to-host 'D:\\Restore' --import-vm --new-name web01-restored \\
        --host hv01.corp.example -u 'CORP\\svc-backup'

Every file is checked against the SHA-256 recorded at backup as it is written; a damaged chunk
stops the restore and removes that file's partial copy. The local copy is then read back once
more and hashed again: the check an auditor asks for, after the files reached their disk.

On the host, ``Import-VM -Copy -GenerateNewId`` makes a new VM (new id, the ``--new-name``,
not started) from the restored folder: the original VM, if it still exists, is not touched, and
the two never share an id. Everything that can refuse does so before the first byte is written
(a taken name, too little space, existing files).

Exit code: 0 restored, 1 failed, 2 bad settings.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cli_settings import (
    add_host_arguments,
    add_reader_arguments,
    add_repository_arguments,
    connection_settings,
    file_writer,
    open_repository,
    run,
)

from hyperv_backup import ConfigError, HyperVHost, IntegrityError
from hyperv_backup.repository import Repository, Snapshot, restore_to_host

logger = logging.getLogger("restore")

MiB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Restore the newest backup of a VM to a folder and/or onto the host "
        "(optionally imported as a new VM)."
    )
    parser.add_argument("vm", help="the VM's name, as it was backed up")
    parser.add_argument("--snapshot", help="a backup id (prefix) instead of the newest")
    add_repository_arguments(parser)
    where = parser.add_argument_group("where to")
    where.add_argument("--to", type=Path, help="local folder for the Export-VM layout")
    where.add_argument("--to-host", metavar="HOSTFOLDER", help="folder on the host, D:\\Restore")
    where.add_argument("--import-vm", action="store_true", help="Import-VM it as a new VM")
    where.add_argument("--new-name", help="the imported VM's name (default: <vm>-restored)")
    where.add_argument("--import-to", metavar="HOSTFOLDER", help="the new VM's folder")
    add_host_arguments(parser, required=False)
    add_reader_arguments(parser, path_map=False)
    args = parser.parse_args()
    if args.to is None and args.to_host is None:
        parser.error("where should it go? give --to FOLDER and/or --to-host 'D:\\Restore'")
    if (args.import_vm or args.new_name or args.import_to) and args.to_host is None:
        parser.error("--import-vm, --new-name and --import-to need --to-host")
    return args


def newest_backup(repository: Repository, vm: str) -> Snapshot:
    """The newest successful backup of the VM named ``vm`` (exactly, ignoring case)."""
    # snapshots() takes wildcards; compare the name itself so 'web' never picks 'web01'.
    backups = [
        s
        for s in repository.snapshots(vm=vm)
        if s.vm_name.casefold() == vm.casefold() and s.successful
    ]
    if not backups:
        raise ConfigError(f"The repository holds no successful backup of a VM named {vm!r}.")
    return backups[0]  # newest first


def verify_folder(folder: Path, snapshot: Snapshot) -> None:
    """Hash every restored file again; :class:`IntegrityError` at the first mismatch."""
    for entry in snapshot.files:
        digest = entry.hasher()  # BLAKE3 (SHA-256 in backups made before BLAKE3 was used)
        with (folder / entry.path).open("rb") as stream:
            while block := stream.read(4 * MiB):
                digest.update(block)
        if not digest.matches():
            raise IntegrityError(f"{folder / entry.path} does not match its backup's {digest.name}")


def main() -> int:
    args = parse_args()
    # Settings first: a typo in them should fail before minutes of restoring.
    settings = connection_settings(args) if args.to_host else None
    with open_repository(args) as repository:
        if args.snapshot:
            snapshot = repository.snapshot(args.snapshot)
        else:
            snapshot = newest_backup(repository, args.vm)
        size = sum(f.size for f in snapshot.files)
        achieved = snapshot.result.achieved.value if snapshot.result.achieved else "?"
        logger.info(
            "restoring %s (%s-consistent, %d files, %.1f MiB)",
            snapshot.describe(),
            achieved,
            len(snapshot.files),
            size / MiB,
        )

        if args.to is not None:
            local = repository.restore(snapshot.id, args.to)
            verify_folder(local.folder, snapshot)
            print(
                f"restored {len(local.files)} files ({local.bytes / MiB:.1f} MiB) of "
                f"{snapshot.describe()} into {local.folder}; every SHA-256 verified twice"
            )

        if settings is not None:
            new_name = (args.new_name or f"{snapshot.vm_name}-restored") if args.import_vm else None
            with HyperVHost(settings) as host, file_writer(args, settings) as writer:
                onto = restore_to_host(
                    repository,
                    snapshot.id,
                    host,
                    writer,
                    args.to_host,
                    import_vm=args.import_vm,
                    new_name=new_name,
                    vm_path=args.import_to,
                )
            print(
                f"restored {len(onto.files)} files ({onto.bytes / MiB:.1f} MiB) into "
                f"{onto.folder} on {settings.host}; every SHA-256 verified"
            )
            if onto.imported is not None:
                vm = onto.imported
                print(
                    f"imported as VM {vm.name!r} id {vm.id} (backed-up id {vm.original_id}), "
                    f"state {vm.state}, files in {vm.path}"
                )
                for warning in vm.warnings:
                    logger.warning("%s", warning)
    return 0


if __name__ == "__main__":
    run(main)
