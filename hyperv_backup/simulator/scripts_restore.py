"""Restoring onto the host: ``get-free-space`` and ``import-vm``, as the .ps1 scripts do them.

``get-free-space`` reports each path's volume (a drive of the host, ``host.volumes`` in the
scenario) and its free bytes. ``import-vm`` does what ``Compare-VM`` + ``Import-VM -Copy
-GenerateNewId`` (+ ``Rename-VM``) do with a VM restored into the Export-VM layout: every
file is copied under ``VirtualMachinePath`` (``Virtual Machines``, ``Snapshots``,
``Virtual Hard Disks``), and a new VM — new id, state Off — appears in the inventory, its
drives on the copied disks. Refusals (kind ``import``) happen before anything is copied: a
name another VM has, an import folder that is not empty, a disk the restore lacks
(Compare-VM's incompatibility 40010). Event: ``vm_imported``.

Simplifications, stated so no test mistakes them for Hyper-V's behaviour: the new VM gets no
checkpoints (Hyper-V imports them; their files are copied all the same), and saved memory
is not carried over (the VM is Off). An in-place backup holds the disks as of its backup
checkpoint, without the active file the live configuration names; Hyper-V's configuration
export as of that checkpoint names the frozen file, the emulated export copies the live
configuration, so the emulated import starts each drive at the newest file of its chain
that the restore holds.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hyperv_backup.models import VMState
from hyperv_backup.ps_scripts import (
    FreeSpace,
    GetFreeSpaceParams,
    ImportedVM,
    ImportVMParams,
    VolumeSpace,
)
from hyperv_backup.simulator.hostfs import HostPathError, drive_of, win_join, win_name
from hyperv_backup.simulator.hoststate import Call, HostState, ScriptFailedError
from hyperv_backup.simulator.scenario import DiskFileSpec, DiskSpec, VMSpec, stable_id
from hyperv_backup.simulator.vmstate import VMRuntime

__all__ = ["get_free_space", "import_vm"]

_DISKS = "Virtual Hard Disks"
_MACHINES = "Virtual Machines"
_SNAPSHOTS = "Snapshots"
_VHD_NOT_FOUND = 40010  # Compare-VM's MessageId for a virtual hard disk it cannot find


def get_free_space(call: Call, params: GetFreeSpaceParams) -> FreeSpace:
    """The volume holding each path and its free bytes; nothing is created."""
    host = call.host
    volumes = []
    for path in params.paths:
        try:
            drive = drive_of(path)
        except HostPathError:
            drive = ""
        if drive not in host.fs.drives:
            raise ScriptFailedError(
                "unexpected",
                f"'{path}' is on no volume or share that host "
                f"{host.scenario.host.computer_name} can reach.",
                path,
            )
        volume = f"\\\\?\\Volume{{{stable_id('volume', drive)}}}\\"
        free = float(host.volume_free_bytes(path))
        volumes.append(VolumeSpace(path=path, volume=volume, free_bytes=free))
    return FreeSpace(volumes=volumes)


def import_vm(call: Call, params: ImportVMParams) -> ImportedVM:
    """Import the restored VM at ``Path`` as a copy with a new id (see the module docstring)."""
    host = call.host
    computer = host.scenario.host.computer_name
    configuration, document = _configuration(host, params.path)
    try:
        original_id = uuid.UUID(win_name(configuration).rsplit(".", 1)[0])
    except ValueError:
        raise ScriptFailedError(
            "import",
            f"The configuration '{configuration}' is not named after its VM id. Nothing was "
            "imported.",
            configuration,
        ) from None
    target = params.virtual_machine_path.rstrip("\\/")
    local_target = host.local(target)
    if local_target.exists() and any(local_target.iterdir()):
        raise ScriptFailedError(
            "import",
            f"The import folder '{target}' is not empty: a new VM's files never go where "
            "other files are. Choose an empty or new folder. Nothing was imported.",
            target,
        )
    original_name = str(document["name"])
    name = params.new_name or original_name
    disks, problems, warnings = _plan_drives(host, params.path, target, document)
    _refuse_a_taken_name(host, name)
    if problems:
        raise ScriptFailedError(
            "import",
            f"Compare-VM reports {len(problems)} incompatibility(ies) of '{original_name}' "
            f"with host {computer}: {' '.join(problems)} Nothing was imported.",
            configuration,
        )
    new_id = uuid.uuid4()
    copies = _copies(host, params.path, target, original_id, new_id)
    _check_space(host, target, sum(size for _source, _target, size in copies), original_name)

    spec = VMSpec(
        name=name,
        id=new_id,
        state=VMState.OFF,
        generation=int(document.get("generation", 2)),
        configuration_version=str(document.get("version", "10.0")),
        path=target,
        memory_startup=int(document.get("memory_startup", 4 * 2**30)),
        disks=disks,
    )
    vm = VMRuntime.from_spec(spec, host.scenario.host)
    for source, destination, size in copies:
        host.fs.copy_to(source, host.local(destination), size)
    vm.write_configuration(host.fs)
    with host.lock:
        _refuse_a_taken_name(host, name)  # another import may have finished meanwhile
        host.vms.append(vm)
    host.emit(
        call.script,
        name,
        "vm_imported",
        id=str(new_id),
        original_id=str(original_id),
        original_name=original_name,
        path=target,
    )
    return ImportedVM(
        id=new_id,
        name=name,
        original_id=original_id,
        original_name=original_name,
        path=target,
        disks=vm.active_disks(),
        state=vm.state.value,
        warnings=warnings,
    )


def _configuration(host: HostState, folder: str) -> tuple[str, dict[str, Any]]:
    """The one configuration directly in ``Virtual Machines`` (.vmcx, else .xml), parsed."""
    machines = host.local(win_join(folder, _MACHINES))
    if not machines.is_dir():
        raise ScriptFailedError(
            "import",
            f"'{folder}' holds no '{_MACHINES}' folder: it is not a restored VM.",
            folder,
        )
    files = [p for p in machines.iterdir() if p.is_file()]
    found = [p for p in files if p.suffix.lower() == ".vmcx"]
    found = found or [p for p in files if p.suffix.lower() == ".xml"]
    if len(found) != 1:
        raise ScriptFailedError(
            "import",
            f"Expected one VM configuration (.vmcx, or .xml) in '{folder}\\{_MACHINES}', "
            f"found {len(found)}. Nothing was imported.",
            folder,
        )
    path = win_join(folder, _MACHINES, found[0].name)
    try:
        document = json.loads(found[0].read_bytes())
    except ValueError:
        raise ScriptFailedError(
            "import",
            f"Compare-VM cannot import the restored configuration '{path}': the file is "
            "damaged. Nothing was imported.",
            path,
        ) from None
    return path, document


def _plan_drives(
    host: HostState, source: str, target: str, document: dict[str, Any]
) -> tuple[list[DiskSpec], list[str], list[str]]:
    """The new VM's drives on the copied disks; Compare-VM's incompatibilities; warnings."""
    folder = host.local(win_join(source, _DISKS))
    restored = {p.name.casefold(): p for p in folder.iterdir()} if folder.is_dir() else {}
    disks: list[DiskSpec] = []
    problems: list[str] = []
    warnings: list[str] = []
    for drive in document.get("drives", []):
        kind, number, location = _controller(str(drive["controller"]))
        if drive.get("passthrough_disk") is not None:
            warnings.append(
                f"Detached the pass-through drive at {kind} {number}:{location} (host disk "
                f"{drive['passthrough_disk']}) from the copy: one physical disk cannot serve "
                "two VMs."
            )
            continue
        chain = drive.get("chain") or ([{"path": drive["path"]}] if drive.get("path") else [])
        names = [win_name(str(link["path"])) for link in chain]
        # The newest file of the chain the restore holds (see the module docstring).
        first = next((i for i, n in enumerate(names) if n.casefold() in restored), None)
        missing = (
            names if first is None else [n for n in names[first:] if n.casefold() not in restored]
        )
        if missing:
            quoted = ", ".join(f"'{n}'" for n in missing)
            problems.append(
                f"[{_VHD_NOT_FOUND}] Virtual Hard Disk file not found: {quoted} of the drive "
                f"at {kind} {number}:{location} is not in '{source}\\{_DISKS}'."
            )
            continue
        if first is None:
            continue  # an empty drive: no file to find
        node: DiskFileSpec | None = None
        for link in reversed(chain[first:]):
            local = restored[win_name(str(link["path"])).casefold()]
            node = DiskFileSpec(
                path=win_join(target, _DISKS, local.name),
                size=int(link.get("size", 40 * 2**30)),
                file_size=local.stat().st_size,
                vhd_type=link.get("vhd_type"),
                parent=node,
            )
        disks.append(
            DiskSpec(
                controller_type="IDE" if kind == "IDE" else "SCSI",
                controller_number=number,
                controller_location=location,
                file=node,
            )
        )
    return disks, problems, warnings


def _controller(text: str) -> tuple[str, int, int]:
    """``'SCSI 0:1'`` → ('SCSI', 0, 1)."""
    kind, _, place = text.partition(" ")
    number, _, location = place.partition(":")
    return kind, int(number or 0), int(location or 0)


def _copies(
    host: HostState, source: str, target: str, original_id: uuid.UUID, new_id: uuid.UUID
) -> list[tuple[str, str, int]]:
    """(source, destination, bytes) of every file Import-VM -Copy takes along.

    Disks and checkpoints keep their names; of 'Virtual Machines' only the guest state goes,
    renamed after the new id: the configuration is written anew, runtime state is dropped.
    """
    root = host.local(source)
    vmgs = f"{original_id}.vmgs".casefold()
    out = []
    for local in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = local.relative_to(root).parts
        top = parts[0].casefold()
        if top == _DISKS.casefold():
            destination = win_join(target, _DISKS, *parts[1:])
        elif top == _SNAPSHOTS.casefold():
            destination = win_join(target, _SNAPSHOTS, *parts[1:])
        elif top == _MACHINES.casefold() and parts[1:] and parts[-1].casefold() == vmgs:
            destination = win_join(target, _MACHINES, f"{str(new_id).upper()}.vmgs")
        else:
            continue
        out.append((win_join(source, *parts), destination, local.stat().st_size))
    return out


def _refuse_a_taken_name(host: HostState, name: str) -> None:
    with host.lock:
        taken = next((v for v in host.vms if v.name.casefold() == name.casefold()), None)
    if taken is not None:
        raise ScriptFailedError(
            "import",
            f"A virtual machine named '{name}' exists on host "
            f"{host.scenario.host.computer_name} (id {taken.id}): refusing to import a second "
            "one under that name. Give the copy a new name. Nothing was imported.",
            name,
        )


def _check_space(host: HostState, target: str, total: int, vm_name: str) -> None:
    free = host.volume_free_bytes(target)
    if total > free:
        raise ScriptFailedError(
            "insufficient_space",
            f"Import-VM of '{vm_name}' failed: there is not enough space on the disk "
            f"({total / 2**30:,.2f} GiB needed, {free / 2**30:,.2f} GiB free). (0x80070070)",
            target,
        )
