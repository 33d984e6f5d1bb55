"""Scenario files: the emulated Hyper-V host described in YAML or JSON.

A scenario names the host (Windows edition and version, cluster), the credentials the
simulator accepts, its VMs (state, generation, integration services, checkpoint setting,
disks with differencing chains, pass-through disks, checkpoint tree, replication, memory),
the host's volumes, and faults to inject. Anything left out gets a realistic default, so a VM
can be as short as ``{name: web01}``. Sizes accept integers (bytes) or strings such as
``"40 GiB"``.

The simulator writes every VM file to a local folder, so a disk's ``file_size`` is what really
lands on disk (keep it to a few MiB); its virtual ``size`` can stay realistic.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from hyperv_backup.errors import ConfigError
from hyperv_backup.models import (
    CheckpointInfo,
    CheckpointType,
    DiskChainLink,
    HardDisk,
    HostInfo,
    IntegrationService,
    ReplicationInfo,
    ReplicationMode,
    SnapshotType,
    VMInfo,
    VMState,
)
from hyperv_backup.simulator.hostfs import sanitize_file_name

__all__ = [
    "CheckpointSpec",
    "DiskFileSpec",
    "DiskSpec",
    "FaultSpec",
    "HostSpec",
    "IntegrationServiceSpec",
    "ReplicationSpec",
    "Scenario",
    "VMSpec",
    "VolumeSpec",
    "default_scenario_path",
    "load_scenario",
]

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
DEFAULT_FILE_SIZE = 4 * 2**20
"""Bytes a disk file occupies when the scenario gives no ``file_size`` (it is materialized)."""
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SIM_NAMESPACE = uuid.UUID("5f0b8a52-94a4-4c55-9d38-0d3c1e4c6a11")
_EPOCH = datetime(2026, 1, 5, 22, 0, tzinfo=timezone.utc)


def _parse_size(value: Any) -> Any:
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(f"not a size: {value!r} (use bytes or e.g. '40 GiB', '512 MB')")
        return int(float(match.group(1)) * _UNITS[unit])
    return value


Size = Annotated[int, BeforeValidator(_parse_size), Field(ge=0)]


def stable_id(*parts: str) -> uuid.UUID:
    """A deterministic id for a scenario object, so scenario runs are repeatable."""
    return uuid.uuid5(_SIM_NAMESPACE, "/".join(parts))


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VolumeSpec(_Spec):
    """One volume (drive letter) of the host; ``free_bytes`` drives the staging space check."""

    free_bytes: Size = 2 * 2**40
    size: Size = 4 * 2**40


def _upper_drive_letters(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, spec in value.items():
            letter = str(key).rstrip(":\\").upper()
            if not re.fullmatch(r"[A-Z]", letter):
                raise ValueError(f"not a drive letter: {key!r} (use e.g. 'D')")
            out[letter] = spec
        return out
    return value


class HostSpec(_Spec):
    """The emulated host's identity; defaults describe a Windows Server 2022 node.

    ``volumes`` maps drive letters to their free space; drives that VMs use (and ``C``) exist
    anyway, with plenty of room.
    """

    computer_name: str = "HV01"
    domain: str | None = "corp.example"
    os_caption: str = "Microsoft Windows Server 2022 Datacenter"
    os_version: str = "10.0.20348"
    os_build: int = 20348
    product_type: int = Field(default=3, ge=1, le=3)
    hyperv_module: bool = True
    hyperv_module_version: str | None = "2.0.0.0"
    cluster_name: str | None = None
    powershell_version: str = "5.1.20348.2849"
    volumes: Annotated[dict[str, VolumeSpec], BeforeValidator(_upper_drive_letters)] = Field(
        default_factory=dict
    )

    def info(self) -> HostInfo:
        """As ``get-host-info`` reports it."""
        return HostInfo.model_validate(self.model_dump(exclude={"volumes"}))


class CredentialsSpec(_Spec):
    """The one account the simulator accepts (it is a test double: never a real secret)."""

    username: str = "administrator"
    password: str = "Simulat0r!"  # noqa: S105 - a test double, documented as such


class IntegrationServiceSpec(_Spec):
    """One integration service; status 'OK', 'No Contact', 'Lost Communication' ..."""

    name: str
    enabled: bool = True
    primary_status: str | None = "OK"
    secondary_status: str | None = None


# Names and service ids as Windows Server 2016+ reports them.
_STANDARD_SERVICES: tuple[tuple[str, str], ...] = (
    ("Guest Service Interface", "6C09BB55-D683-4DA0-8931-C9BF705F6480"),
    ("Heartbeat", "84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47"),
    ("Key-Value Pair Exchange", "2A34B1C2-FD73-4043-8A5B-DD2159BC743F"),
    ("Shutdown", "9F8233AC-BE49-4C79-8EE3-E7E1985B2077"),
    ("Time Synchronization", "2497F4DE-E9FA-4204-80E4-4B75C46419C0"),
    ("VSS", "35FA2E29-EA23-4236-96AE-3A6EBACBA440"),
)


class DiskFileSpec(_Spec):
    """One virtual-disk file; ``parent`` makes it a differencing disk."""

    path: str
    size: Size = Field(default=40 * 2**30, description="Virtual size.")
    file_size: Size | None = Field(
        default=None,
        description="Bytes the file occupies on the host, materialized by the simulator; "
        "default min(size, 4 MiB).",
    )
    vhd_type: Literal["Fixed", "Dynamic", "Differencing"] | None = None
    parent: DiskFileSpec | None = None

    @property
    def type(self) -> str:
        """Fixed, Dynamic or Differencing."""
        return self.vhd_type or ("Differencing" if self.parent else "Dynamic")

    @property
    def format(self) -> str:
        """VHD, VHDX or VHDSet, from the file extension."""
        suffix = self.path.rsplit(".", 1)[-1].lower()
        return {"vhd": "VHD", "avhd": "VHD", "vhds": "VHDSet"}.get(suffix, "VHDX")

    @property
    def bytes_on_host(self) -> int:
        """``file_size``, or its default."""
        return self.file_size if self.file_size is not None else min(self.size, DEFAULT_FILE_SIZE)

    def chain(self) -> list[DiskChainLink]:
        """This file, then its parents down to the base."""
        links: list[DiskChainLink] = []
        node: DiskFileSpec | None = self
        while node is not None:
            links.append(
                DiskChainLink(
                    path=node.path,
                    vhd_type=node.type,
                    vhd_format=node.format,
                    file_size=node.bytes_on_host,
                    size=node.size,
                )
            )
            node = node.parent
        return links


class DiskSpec(_Spec):
    """A hard disk drive: a virtual-disk ``file``, or a pass-through ``disk_number``."""

    controller_type: Literal["IDE", "SCSI"] | None = None
    controller_number: int = Field(default=0, ge=0)
    controller_location: int | None = Field(default=None, ge=0)
    file: DiskFileSpec | None = None
    passthrough_disk_number: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_kind(self) -> DiskSpec:
        if (self.file is None) == (self.passthrough_disk_number is None):
            raise ValueError("a disk has either 'file' or 'passthrough_disk_number'")
        return self


class CheckpointSpec(_Spec):
    """A checkpoint; ``parent`` is another checkpoint's name (None = a root)."""

    name: str
    parent: str | None = None
    snapshot_type: SnapshotType = SnapshotType.STANDARD
    created: datetime | None = None
    id: uuid.UUID | None = None


class ReplicationSpec(_Spec):
    """Hyper-V Replica relationship of a VM."""

    mode: ReplicationMode = ReplicationMode.NONE
    state: str | None = "Replicating"
    health: str | None = "Normal"
    primary_server: str | None = None
    replica_server: str | None = None
    relationship_type: str | None = "Simple"
    transient_attempts: int = Field(
        default=0,
        ge=0,
        description="Replication is busy for this many steps: meanwhile the state reads "
        "'Resynchronizing' and backups (new-backup-checkpoint, export-vm) fail with Hyper-V's "
        "'conflicting operation'. Each refused attempt and each inventory that reports the "
        "busy state is one step. Suspending replication ends it.",
    )


class VMSpec(_Spec):
    """One emulated VM. Only ``name`` is required."""

    name: str = Field(min_length=1)
    id: uuid.UUID | None = None
    state: VMState = VMState.RUNNING
    generation: int = Field(default=2, ge=1, le=2)
    configuration_version: str = "10.0"
    path: str | None = None
    checkpoint_type: CheckpointType = CheckpointType.PRODUCTION
    memory_startup: Size = 4 * 2**30
    memory_assigned: Size | None = None
    dynamic_memory: bool = False
    integration_services: Literal["all", "none"] | list[IntegrationServiceSpec] = "all"
    disks: list[DiskSpec] | None = None
    checkpoints: list[CheckpointSpec] = Field(default_factory=list)
    current_checkpoint: str | None = Field(
        default=None, description="Checkpoint the running state descends from; default: newest."
    )
    replication: ReplicationSpec = Field(default_factory=ReplicationSpec)
    merge_seconds: float = Field(
        default=0.0, ge=0, description="How long removing a checkpoint takes to merge."
    )

    @model_validator(mode="after")
    def _checkpoint_tree_is_sound(self) -> VMSpec:
        names = [c.name for c in self.checkpoints]
        if len(set(names)) != len(names):
            raise ValueError(f"VM {self.name!r}: checkpoint names must be unique")
        for checkpoint in self.checkpoints:
            if checkpoint.parent is not None and checkpoint.parent not in names:
                raise ValueError(
                    f"VM {self.name!r}: checkpoint {checkpoint.name!r} names an unknown "
                    f"parent {checkpoint.parent!r}"
                )
        if self.current_checkpoint is not None and self.current_checkpoint not in names:
            raise ValueError(f"VM {self.name!r}: unknown current_checkpoint")
        return self

    @property
    def vm_id(self) -> uuid.UUID:
        """The configured id, or a stable one derived from the name."""
        return self.id or stable_id("vm", self.name)

    @property
    def folder(self) -> str:
        """The folder holding the VM's configuration (``path``, default D:\\Hyper-V\\<name>).

        In the default, characters Windows forbids in a file name become ``_``.
        """
        return self.path or rf"D:\Hyper-V\{sanitize_file_name(self.name)}"

    def disk_specs(self) -> list[DiskSpec]:
        """The VM's drives; by default one dynamic VHDX named after the VM."""
        if self.disks is not None:
            return list(self.disks)
        return [
            DiskSpec(
                file=DiskFileSpec(
                    path=rf"{self.folder}\Virtual Hard Disks\{sanitize_file_name(self.name)}.vhdx"
                )
            )
        ]

    def info(self, host: HostSpec) -> VMInfo:
        """The VM as the scenario declares it (the emulated host starts from this state)."""
        folder = self.folder
        running = self.state in (VMState.RUNNING, VMState.PAUSED)
        return VMInfo(
            id=self.vm_id,
            name=self.name,
            state=self.state,
            generation=self.generation,
            configuration_version=self.configuration_version,
            path=folder,
            checkpoint_type=self.checkpoint_type,
            checkpoint_file_location=folder,
            memory_startup=self.memory_startup,
            memory_assigned=(
                self.memory_assigned
                if self.memory_assigned is not None
                else (self.memory_startup if running else 0)
            ),
            dynamic_memory=self.dynamic_memory,
            has_saved_state=self.state in (VMState.SAVED, VMState.FAST_SAVED),
            integration_services=self.integration_service_infos(),
            hard_disks=self._disks(),
            checkpoints=self._checkpoints(),
            parent_checkpoint_id=self._current_checkpoint_id(),
            replication=ReplicationInfo(
                **self.replication.model_dump(exclude={"transient_attempts"})
            )
            if (self.replication.mode != ReplicationMode.NONE)
            else ReplicationInfo(),
        )

    def integration_service_infos(self) -> list[IntegrationService]:
        """The integration services as Get-VMIntegrationService reports them."""
        if self.integration_services == "none":
            return []
        ids = dict(_STANDARD_SERVICES)
        if self.integration_services == "all":
            specs = [IntegrationServiceSpec(name=name) for name, _ in _STANDARD_SERVICES]
        else:
            specs = self.integration_services
        return [
            IntegrationService(
                name=s.name,
                id=f"Microsoft:{str(self.vm_id).upper()}\\"
                f"{ids.get(s.name, str(stable_id('service', s.name)).upper())}",
                enabled=s.enabled,
                primary_status=s.primary_status,
                secondary_status=s.secondary_status,
            )
            for s in specs
        ]

    def _disks(self) -> list[HardDisk]:
        specs = self.disk_specs()
        default_controller = "SCSI" if self.generation == 2 else "IDE"
        disks = []
        for index, spec in enumerate(specs):
            passthrough = spec.passthrough_disk_number is not None
            disks.append(
                HardDisk(
                    controller_type=spec.controller_type or default_controller,
                    controller_number=spec.controller_number,
                    controller_location=(
                        spec.controller_location if spec.controller_location is not None else index
                    ),
                    path=(
                        f"Disk {spec.passthrough_disk_number} 5.00 TB Bus 0 Lun 0 Target "
                        f"{spec.passthrough_disk_number}"
                        if passthrough
                        else spec.file.path  # type: ignore[union-attr]
                    ),
                    is_passthrough=passthrough,
                    disk_number=spec.passthrough_disk_number,
                    chain=[] if spec.file is None else spec.file.chain(),
                )
            )
        return disks

    def _checkpoint_ids(self) -> dict[str, uuid.UUID]:
        return {
            c.name: c.id or stable_id("checkpoint", self.name, c.name) for c in self.checkpoints
        }

    def _checkpoints(self) -> list[CheckpointInfo]:
        ids = self._checkpoint_ids()
        return [
            CheckpointInfo(
                id=ids[c.name],
                name=c.name,
                parent_id=ids[c.parent] if c.parent else None,
                snapshot_type=c.snapshot_type,
                created=c.created or _EPOCH + timedelta(days=index),
            )
            for index, c in enumerate(self.checkpoints)
        ]

    def _current_checkpoint_id(self) -> uuid.UUID | None:
        if not self.checkpoints:
            return None
        name = self.current_checkpoint or self.checkpoints[-1].name
        return self._checkpoint_ids()[name]


FaultAction = Literal["drop_connection", "fail", "delay", "conflicting_operation"]


class FaultSpec(_Spec):
    """Something to go wrong when a script runs.

    - ``drop_connection``: the host's WinRM dies mid-call (the client's pool breaks).
    - ``fail``: the script reports ``kind``/``message`` in its envelope.
    - ``conflicting_operation``: Hyper-V's "currently executing a conflicting operation".
    - ``delay``: the script takes ``seconds`` longer (then runs normally).

    ``seconds`` delays every action, so ``fail`` with ``seconds`` is "slow, then fails".
    ``times`` limits how often it fires (``None``: every time); ``vm`` restricts it to calls
    whose VM name parameter (``Name`` of get-inventory, ``VMName`` of the others) equals it.

    Where it strikes follows the script: before it does anything, except that ``export-vm``
    and ``export-vm-config`` spread a ``delay`` over the copying (the export is visibly in
    progress) and ``fail`` half-way (a partial export is left), and ``new-paused-shadow``
    applies every fault while the VM is paused (it is resumed all the same).
    """

    script: str
    action: FaultAction
    times: int | None = Field(default=1, ge=1)
    seconds: float = Field(default=0.0, ge=0)
    kind: str = "unexpected"
    message: str = "Simulated failure."
    vm: str | None = None


class Scenario(_Spec):
    """A whole emulated host."""

    host: HostSpec = Field(default_factory=HostSpec)
    credentials: CredentialsSpec = Field(default_factory=CredentialsSpec)
    vms: list[VMSpec] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_vms(self) -> Scenario:
        ids = [vm.vm_id for vm in self.vms]
        if len(set(ids)) != len(ids):
            raise ValueError("VM names and ids must be unique within a scenario")
        return self


def default_scenario_path() -> Path:
    """The scenario shipped with the package (used by ``hyperv-backup demo``)."""
    return Path(str(resources.files("hyperv_backup.simulator").joinpath("scenarios/default.yaml")))


def load_scenario(source: str | Path | dict[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario (a YAML/JSON path, a dict, or None for the default).

    Raises :class:`ConfigError` naming the file and every problem in it.
    """
    if isinstance(source, dict):
        data: Any = source
        origin = "scenario"
    else:
        path = Path(source) if source is not None else default_scenario_path()
        origin = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"Cannot read scenario file {origin}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"Scenario file {origin} is not valid YAML/JSON: {err}") from None
    try:
        return Scenario.model_validate(data or {})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"Scenario {origin} is invalid: {problems}") from None
