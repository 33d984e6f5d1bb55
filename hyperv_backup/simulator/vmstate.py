"""One emulated VM at run time: its state, drives, disk chains and checkpoint tree.

Built from a :class:`~.scenario.VMSpec`, then changed by the scripts. The model follows
Hyper-V: taking a checkpoint freezes each drive's current file and gives the drive a new
differencing file on top of it; the checkpoint *owns* the frozen file. Removing a checkpoint
merges the one file that descends from its frozen file back into it.

A scenario declares only the current chain of each drive, so the files of the other
checkpoints are derived: the checkpoints from the tree's root to the current one own the
chain's files from the tip's parent downwards (differencing files are added on top when the
chain is shorter than that path), and a checkpoint on another branch owns a differencing
file ``<base>_<CHECKPOINT-ID>.avhdx`` whose parent is its parent checkpoint's file.

Nothing here locks: :class:`~.hoststate.HostState` holds the lock around every use.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hyperv_backup.models import (
    CheckpointInfo,
    CheckpointType,
    DiskChainLink,
    HardDisk,
    SnapshotType,
    VMInfo,
    VMState,
)
from hyperv_backup.ps_scripts import FileRole
from hyperv_backup.simulator.hostfs import HostFS, win_join, win_name, win_parent
from hyperv_backup.simulator.scenario import DiskFileSpec, HostSpec, VMSpec

__all__ = ["Checkpoint", "DiskFile", "Drive", "MergePlan", "VMFile", "VMRuntime"]

_KIB = 2**10
# Bytes of the small files; real ones are larger, these only need to be recognisable.
_DIFFERENCING_NEW = 8 * _KIB
_DIFFERENCING_DERIVED = 1024 * _KIB
_GUEST_STATE = 64 * _KIB
_RUNTIME_STATE = 256 * _KIB
_SAVED_MEMORY = 1024 * _KIB
_CHECKPOINT_MEMORY = 512 * _KIB
_HEADER = 8 * _KIB
_RUNNING = (VMState.RUNNING, VMState.PAUSED)
_WITH_RUNTIME_STATE = (VMState.RUNNING, VMState.PAUSED, VMState.SAVED, VMState.FAST_SAVED)


@dataclass(eq=False)
class DiskFile:
    """One virtual-disk file; ``parent`` links a differencing file to the file below it."""

    path: str
    size: int
    vhd_type: str
    vhd_format: str
    parent: DiskFile | None = None
    initial_bytes: int = 0
    """What the scenario says it holds (materialized at start)."""

    def chain(self) -> list[DiskFile]:
        """This file, then its parents down to the base."""
        links: list[DiskFile] = []
        node: DiskFile | None = self
        while node is not None:
            links.append(node)
            node = node.parent
        return links

    @property
    def base(self) -> DiskFile:
        """The bottom of the chain."""
        return self.chain()[-1]


@dataclass(eq=False)
class Drive:
    """A hard disk drive: a chain of files (``tip`` is the one written to) or pass-through."""

    controller_type: str
    controller_number: int
    controller_location: int
    tip: DiskFile | None
    passthrough_disk_number: int | None = None


@dataclass(eq=False)
class Checkpoint:
    """A checkpoint: ``disks[i]`` is the file of drive ``i`` it froze (None: pass-through)."""

    id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None
    snapshot_type: SnapshotType
    created: datetime
    disks: list[DiskFile | None]
    has_memory: bool = False

    def info(self) -> CheckpointInfo:
        """As ``get-inventory`` reports it."""
        return CheckpointInfo(
            id=self.id,
            name=self.name,
            parent_id=self.parent_id,
            snapshot_type=self.snapshot_type,
            created=self.created,
        )


@dataclass(frozen=True)
class VMFile:
    """A file of the VM: host path, place in the Export-VM layout, role."""

    path: str
    relative_path: str
    role: FileRole


@dataclass
class MergePlan:
    """What removing a checkpoint does to the disks once its merge has run."""

    checkpoint: Checkpoint
    merges: list[tuple[DiskFile, DiskFile]] = field(default_factory=list)
    """(child, parent): the child's bytes go into the parent, then the child is deleted."""
    deletes: list[DiskFile] = field(default_factory=list)
    """Differencing files nothing refers to any more."""


@dataclass(eq=False)
class VMRuntime:
    """The run-time state of one VM. Read it through the emulator's helpers."""

    spec: VMSpec
    state: VMState
    checkpoint_type: CheckpointType
    drives: list[Drive]
    checkpoints: list[Checkpoint]
    current_checkpoint_id: uuid.UUID | None
    replication_state: str | None
    transient_attempts: int
    operation: str | None = None
    """A long operation in progress ('exporting', 'merging', 'shadow copy'), else None."""
    guest_writes: int = 0

    @property
    def id(self) -> uuid.UUID:
        """The VM id."""
        return self.spec.vm_id

    @property
    def name(self) -> str:
        """The VM name."""
        return self.spec.name

    @property
    def folder(self) -> str:
        """The folder holding the configuration and the Snapshots folder."""
        return self.spec.folder

    @property
    def is_running(self) -> bool:
        """Running or paused: the guest's memory is live."""
        return self.state in _RUNNING

    @property
    def replicated(self) -> bool:
        """Hyper-V Replica is enabled for the VM."""
        return self.spec.replication.mode.value != "None"

    @property
    def reported_replication_state(self) -> str | None:
        """The state Get-VMReplication shows: 'Resynchronizing' while a backup would clash."""
        if self.replicated and self.transient_attempts > 0 and not self.replication_suspended:
            return "Resynchronizing"
        return self.replication_state

    @property
    def replication_suspended(self) -> bool:
        """Replication is suspended (backups no longer clash with it)."""
        return self.replication_state == "Suspended"

    @property
    def legacy_configuration(self) -> bool:
        """Configuration version below 6 (Server 2012 R2): .xml/.bin/.vsv, not .vmcx/.vmrs."""
        major = self.spec.configuration_version.split(".", 1)[0]
        return major.isdigit() and int(major) < 6

    @classmethod
    def from_spec(cls, spec: VMSpec, host: HostSpec) -> VMRuntime:
        """The VM as the scenario declares it, with every checkpoint's files derived."""
        declared = spec.info(host)
        checkpoints = [
            Checkpoint(
                id=c.id,
                name=c.name,
                parent_id=c.parent_id,
                snapshot_type=c.snapshot_type,
                created=c.created,
                disks=[],
                has_memory=c.snapshot_type == SnapshotType.STANDARD and spec.state in _RUNNING,
            )
            for c in declared.checkpoints
        ]
        vm = cls(
            spec=spec,
            state=spec.state,
            checkpoint_type=spec.checkpoint_type,
            drives=[],
            checkpoints=checkpoints,
            current_checkpoint_id=declared.parent_checkpoint_id,
            replication_state=spec.replication.state
            if spec.replication.mode.value != "None"
            else None,
            transient_attempts=spec.replication.transient_attempts,
        )
        for disk, hard_disk in zip(spec.disk_specs(), declared.hard_disks, strict=True):
            tip = None if disk.file is None else vm._derive_checkpoint_files(disk.file)
            vm.drives.append(
                Drive(
                    controller_type=hard_disk.controller_type,
                    controller_number=hard_disk.controller_number,
                    controller_location=hard_disk.controller_location,
                    tip=tip,
                    passthrough_disk_number=disk.passthrough_disk_number,
                )
            )
            if tip is None:
                for checkpoint in checkpoints:
                    checkpoint.disks.append(None)
        return vm

    def _derive_checkpoint_files(self, declared: DiskFileSpec) -> DiskFile:
        """Build the declared chain, give every checkpoint its file; return the tip."""
        files = [_disk_file(node) for node in _spec_chain(declared)]  # tip first
        for child, parent in itertools.pairwise(files):
            child.parent = parent
        tip = files[0]
        by_id = {c.id: c for c in self.checkpoints}
        path = self._ancestors(self.current_checkpoint_id)  # root first
        # A VM with checkpoints runs on differencing files: add those the scenario left out.
        # The file added on top of a root-first chain of L files was made by checkpoint L-1.
        while len(files) - 1 < len(path):
            creator = path[len(files) - 1]
            tip = self._new_differencing(tip, creator.id, _DIFFERENCING_DERIVED)
            files.insert(0, tip)
        owned: dict[uuid.UUID, DiskFile] = {
            checkpoint.id: files[len(path) - index] for index, checkpoint in enumerate(path)
        }
        for checkpoint in sorted(self.checkpoints, key=lambda c: len(self._ancestors(c.id))):
            if checkpoint.id not in owned:
                below = owned.get(checkpoint.parent_id) if checkpoint.parent_id else None
                owned[checkpoint.id] = self._new_differencing(
                    below or files[-1], checkpoint.id, _DIFFERENCING_DERIVED
                )
            by_id[checkpoint.id].disks.append(owned[checkpoint.id])
        return tip

    def _ancestors(self, checkpoint_id: uuid.UUID | None) -> list[Checkpoint]:
        by_id = {c.id: c for c in self.checkpoints}
        path: list[Checkpoint] = []
        while checkpoint_id is not None and checkpoint_id in by_id:
            path.insert(0, by_id[checkpoint_id])
            checkpoint_id = by_id[checkpoint_id].parent_id
        return path

    @staticmethod
    def _new_differencing(parent: DiskFile, checkpoint_id: uuid.UUID, size: int) -> DiskFile:
        base = parent.base
        stem, _, _ = win_name(base.path).rpartition(".")
        extension = "avhd" if base.vhd_format == "VHD" else "avhdx"
        name = f"{stem}_{str(checkpoint_id).upper()}.{extension}"
        return DiskFile(
            path=win_join(win_parent(parent.path), name),
            size=parent.size,
            vhd_type="Differencing",
            vhd_format=parent.vhd_format,
            parent=parent,
            initial_bytes=size,
        )

    # --- files ---------------------------------------------------------------------------

    def disk_files(self) -> list[DiskFile]:
        """Every file of every chain of the drives and of the checkpoints, each once."""
        seen: dict[int, DiskFile] = {}
        tips = [d.tip for d in self.drives] + [f for c in self.checkpoints for f in c.disks]
        for tip in tips:
            for node in tip.chain() if tip is not None else []:
                seen.setdefault(id(node), node)
        return list(seen.values())

    def active_disks(self) -> list[str]:
        """The files the VM writes to: each drive's tip."""
        return [d.tip.path for d in self.drives if d.tip is not None]

    def configuration_files(self) -> list[VMFile]:
        """Configuration and runtime-state files, under ``Virtual Machines``."""
        vm_id = str(self.id).upper()
        live = self.state in _WITH_RUNTIME_STATE
        if self.legacy_configuration:
            names = [(f"{vm_id}.xml", FileRole.CONFIGURATION)]
            if live:
                names += [(f"{vm_id}\\{vm_id}.bin", FileRole.RUNTIME_STATE)]
                names += [(f"{vm_id}\\{vm_id}.vsv", FileRole.RUNTIME_STATE)]
        else:
            names = [(f"{vm_id}.vmcx", FileRole.CONFIGURATION)]
            if self.spec.generation == 2:
                names.append((f"{vm_id}.vmgs", FileRole.CONFIGURATION))
            if live:
                names.append((f"{vm_id}.vmrs", FileRole.RUNTIME_STATE))
        return [self._file("Virtual Machines", name, role) for name, role in names]

    def checkpoint_files(self, checkpoint: Checkpoint) -> list[VMFile]:
        """A checkpoint's configuration and state files, under ``Snapshots``."""
        cp_id = str(checkpoint.id).upper()
        role = FileRole.CHECKPOINT_CONFIGURATION
        if self.legacy_configuration:
            names = [f"{cp_id}.xml"]
            if checkpoint.has_memory:
                names += [f"{cp_id}\\{cp_id}.bin", f"{cp_id}\\{cp_id}.vsv"]
        else:
            names = [f"{cp_id}.vmcx", f"{cp_id}.vmrs"]
            if self.spec.generation == 2:
                names.append(f"{cp_id}.vmgs")
        return [self._file("Snapshots", name, role) for name in names]

    def all_files(self) -> list[VMFile]:
        """Everything ``get-vm-files`` reports: configuration, checkpoints, every disk file."""
        files = self.configuration_files()
        for checkpoint in self.checkpoints:
            files += self.checkpoint_files(checkpoint)
        files += [
            VMFile(d.path, f"Virtual Hard Disks\\{win_name(d.path)}", FileRole.DISK)
            for d in self.disk_files()
        ]
        return files

    def _file(self, folder: str, name: str, role: FileRole) -> VMFile:
        relative = f"{folder}\\{name}"
        return VMFile(win_join(self.folder, relative), relative, role)

    def materialize(self, fs: HostFS) -> None:
        """Write every file of the VM (at start)."""
        for disk in self.disk_files():
            fs.write_disk(disk.path, disk.initial_bytes, disk.size, disk.vhd_type)
        for checkpoint in self.checkpoints:
            self.write_checkpoint_files(fs, checkpoint)
        for vm_file in self.configuration_files():
            if vm_file.role == FileRole.RUNTIME_STATE:
                saved = self.state in (VMState.SAVED, VMState.FAST_SAVED)
                fs.write_generated(vm_file.path, _SAVED_MEMORY if saved else _RUNTIME_STATE)
            elif vm_file.path.lower().endswith(".vmgs"):
                fs.write_generated(vm_file.path, _GUEST_STATE)
        self.write_configuration(fs)

    def write_configuration(self, fs: HostFS) -> None:
        """(Re)write the configuration file: it names the disks and checkpoints, as a .vmcx does."""
        document = self._describe(
            [d.tip for d in self.drives], self.current_checkpoint_id, self.state.value
        )
        document["checkpoints"] = [
            {"id": str(c.id), "name": c.name, "parent": str(c.parent_id or "")}
            for c in self.checkpoints
        ]
        fs.write_bytes(self.configuration_files()[0].path, _text(document))

    def write_checkpoint_files(self, fs: HostFS, checkpoint: Checkpoint) -> None:
        """Write a checkpoint's files; the state file holds memory only when it captured it."""
        for vm_file in self.checkpoint_files(checkpoint):
            suffix = vm_file.path.rsplit(".", 1)[-1].lower()
            if suffix in ("vmcx", "xml"):
                state = "Running" if checkpoint.has_memory else "Off"
                document = self._describe(checkpoint.disks, checkpoint.parent_id, state)
                document["checkpoint"] = {"id": str(checkpoint.id), "name": checkpoint.name}
                fs.write_bytes(vm_file.path, _text(document))
            elif suffix == "vmgs":
                fs.write_generated(vm_file.path, _GUEST_STATE)
            else:
                memory = checkpoint.has_memory and suffix in ("vmrs", "bin")
                fs.write_generated(vm_file.path, _CHECKPOINT_MEMORY if memory else _HEADER)

    def _describe(
        self, disks: list[DiskFile | None], parent: uuid.UUID | None, state: str
    ) -> dict[str, Any]:
        return {
            "configuration": "hyperv-backup simulator",
            "id": str(self.id),
            "name": self.name,
            "generation": self.spec.generation,
            "version": self.spec.configuration_version,
            "state": state,
            "memory_startup": self.spec.memory_startup,
            "parent_checkpoint": str(parent or ""),
            "drives": [
                {
                    "controller": f"{d.controller_type} {d.controller_number}:"
                    f"{d.controller_location}",
                    "path": disk.path if disk is not None else None,
                    "passthrough_disk": d.passthrough_disk_number,
                    # The file, then its parents: what a real differencing disk records in
                    # its own header (parent locators). The emulated import follows it.
                    "chain": [
                        {"path": f.path, "vhd_type": f.vhd_type, "size": f.size}
                        for f in (disk.chain() if disk is not None else [])
                    ],
                }
                for d, disk in zip(self.drives, disks, strict=True)
            ],
        }

    # --- the tree ------------------------------------------------------------------------

    def checkpoint(self, checkpoint_id: uuid.UUID) -> Checkpoint | None:
        """The checkpoint with that id, if it exists."""
        return next((c for c in self.checkpoints if c.id == checkpoint_id), None)

    def take_checkpoint(self, fs: HostFS, name: str, now: datetime) -> Checkpoint:
        """Freeze every drive's tip under a new checkpoint; new differencing files on top."""
        checkpoint_id = uuid.uuid4()
        frozen = [d.tip for d in self.drives]
        for drive in self.drives:
            if drive.tip is not None:
                drive.tip = self._new_differencing(drive.tip, checkpoint_id, _DIFFERENCING_NEW)
                fs.write_generated(drive.tip.path, drive.tip.initial_bytes)
        checkpoint = Checkpoint(
            id=checkpoint_id,
            name=name,
            parent_id=self.current_checkpoint_id,
            snapshot_type=SnapshotType.STANDARD,
            created=now,
            disks=frozen,
            # A standard checkpoint of a running VM saves its memory; a production one does
            # not (the guest flushed to disk through VSS instead).
            has_memory=self.is_running and self.checkpoint_type == CheckpointType.STANDARD,
        )
        self.checkpoints.append(checkpoint)
        self.current_checkpoint_id = checkpoint.id
        self.write_checkpoint_files(fs, checkpoint)
        self.write_configuration(fs)
        return checkpoint

    def remove_checkpoint(self, fs: HostFS, checkpoint: Checkpoint) -> MergePlan:
        """Take the checkpoint out of the tree now; return the merge that finishes it."""
        for child in self.checkpoints:
            if child.parent_id == checkpoint.id:
                child.parent_id = checkpoint.parent_id
        if self.current_checkpoint_id == checkpoint.id:
            self.current_checkpoint_id = checkpoint.parent_id
        self.checkpoints.remove(checkpoint)
        for vm_file in self.checkpoint_files(checkpoint):
            fs.remove(vm_file.path)
        plan = MergePlan(checkpoint)
        all_files = self.disk_files()
        for frozen in checkpoint.disks:
            if frozen is None or any(frozen in c.disks for c in self.checkpoints):
                continue  # pass-through, or still frozen by another checkpoint
            children = [f for f in all_files if f.parent is frozen]
            if len(children) == 1:
                plan.merges.append((children[0], frozen))
            elif not children and frozen.parent is not None:
                plan.deletes.append(frozen)
        self.write_configuration(fs)
        return plan

    def finish_merge(self, fs: HostFS, plan: MergePlan) -> None:
        """Apply a merge: each child's bytes into its parent, references moved, child gone."""
        for child, parent in plan.merges:
            fs.append_file(parent.path, child.path)
            for drive in self.drives:
                if drive.tip is child:
                    drive.tip = parent
            for checkpoint in self.checkpoints:
                checkpoint.disks = [parent if f is child else f for f in checkpoint.disks]
            for disk in self.disk_files():
                if disk.parent is child:
                    disk.parent = parent
            fs.remove(child.path)
        for orphan in plan.deletes:
            fs.remove(orphan.path)
        self.write_configuration(fs)

    # --- inventory -----------------------------------------------------------------------

    def info(self, host: HostSpec, fs: HostFS) -> VMInfo:
        """The VM as ``get-inventory`` reports it now, with the real sizes of its files."""
        declared = self.spec.info(host)
        hard_disks: list[HardDisk] = []
        for drive, disk in zip(self.drives, declared.hard_disks, strict=True):
            if drive.tip is None:
                hard_disks.append(disk)
                continue
            chain = [
                DiskChainLink(
                    path=f.path,
                    vhd_type=f.vhd_type,
                    vhd_format=f.vhd_format,
                    file_size=fs.size(f.path),
                    size=f.size,
                )
                for f in drive.tip.chain()
            ]
            hard_disks.append(disk.model_copy(update={"path": drive.tip.path, "chain": chain}))
        replication = declared.replication
        if self.replicated:
            replication = replication.model_copy(update={"state": self.reported_replication_state})
        return declared.model_copy(
            update={
                "state": self.state,
                "checkpoint_type": self.checkpoint_type,
                "hard_disks": hard_disks,
                "checkpoints": [c.info() for c in self.checkpoints],
                "parent_checkpoint_id": self.current_checkpoint_id,
                "replication": replication,
            }
        )


def _spec_chain(node: DiskFileSpec) -> list[DiskFileSpec]:
    chain = [node]
    while chain[-1].parent is not None:
        chain.append(chain[-1].parent)
    return chain


def _disk_file(spec: DiskFileSpec) -> DiskFile:
    return DiskFile(
        path=spec.path,
        size=spec.size,
        vhd_type=spec.type,
        vhd_format=spec.format,
        initial_bytes=spec.bytes_on_host,
    )


def _text(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
