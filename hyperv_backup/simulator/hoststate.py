"""The emulated host's run-time state, shared by the script handlers.

One :class:`HostState` per running simulator: the VMs (:mod:`.vmstate`), the file system
(:mod:`.hostfs`), shadows, hooks run, and an event log. The engine runs VMs in parallel
sessions, so every change happens under one lock; operations that take time (exports, shadow
copies, merges) mark their VM busy, drop the lock while they copy or wait, and can be cut
short when the simulator stops.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperv_backup.errors import ConfigError
from hyperv_backup.simulator.hostfs import HostFS, HostPathError, drive_of
from hyperv_backup.simulator.protocol import DropConnection
from hyperv_backup.simulator.scenario import FaultSpec, Scenario
from hyperv_backup.simulator.shares import ShareRecord, ShareServer
from hyperv_backup.simulator.vmstate import VMRuntime

__all__ = [
    "Call",
    "HookRecord",
    "HostEvent",
    "HostShutdownError",
    "HostState",
    "ScriptFailedError",
    "ShadowRecord",
]

logger = logging.getLogger(__name__)

_DEFAULT_FREE_BYTES = 2 * 2**40
_GUEST_WRITE = 64 * 2**10
_MAX_MATERIALIZED = 2 * 2**30
# The cmdlet behind each script, for the FullyQualifiedErrorId of Hyper-V's errors.
_CMDLETS = {
    "new-backup-checkpoint": "CheckpointVM",
    "remove-backup-checkpoint": "RemoveVMSnapshot",
    "export-vm": "ExportVM",
    "export-vm-config": "ExportVM",
    "new-paused-shadow": "SuspendVM",
    "resume-vm": "ResumeVM",
    "suspend-vm-replication": "SuspendVMReplication",
    "resume-vm-replication": "ResumeVMReplication",
    "import-vm": "ImportVM",
}
# Where each script takes an injected fault other than at its start (see FaultSpec).
_FAULT_STAGES: dict[str, dict[str, str]] = {
    "export-vm": {"fail": "midway", "delay": "paced"},
    "export-vm-config": {"fail": "midway", "delay": "paced"},
    "new-paused-shadow": {"fail": "paused", "delay": "paused", "drop_connection": "paused"},
}


class ScriptFailedError(Exception):
    """What a script reports in its error envelope (``kind`` as the .ps1 would set it)."""

    def __init__(
        self, kind: str, message: str, target: str | None = None, fqid: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.target = target
        self.fqid = fqid or f"Simulated,{kind}"

    @classmethod
    def conflicting_operation(cls, vm_name: str, cmdlet: str) -> ScriptFailedError:
        """Hyper-V's answer while replication (or another operation) holds the VM."""
        return cls(
            "unexpected",
            f"The virtual machine '{vm_name}' cannot start a backup operation because it is "
            "currently executing a conflicting operation. Try the backup again.",
            vm_name,
            f"OperationFailed,Microsoft.HyperV.PowerShell.Commands.{cmdlet}",
        )

    @classmethod
    def vm_not_found(cls, vm_name: str, computer_name: str) -> ScriptFailedError:
        """What the scripts report for a VM name the host does not have."""
        return cls(
            "vm_not_found",
            f"No virtual machine named '{vm_name}' exists on host {computer_name}.",
            vm_name,
            "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
        )


class HostShutdownError(Exception):
    """The simulator is stopping: a long operation gives up."""


@dataclass(frozen=True)
class HostEvent:
    """Something the host did, in order: ``time`` is ``time.monotonic()``."""

    time: float
    script: str
    vm: str | None
    event: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HookRecord:
    """A before/after command the host ran for ``invoke-hook``."""

    phase: str
    command: str
    vm_name: str | None
    vm_id: str | None
    job_id: str


@dataclass(frozen=True)
class ShadowRecord:
    """A VSS shadow copy of one volume, with the VM's files as they were when it was made."""

    id: uuid.UUID
    vm: str
    volume: str
    device_object: str
    link_path: str
    copy: Path


class HostState:
    """Everything the emulated host knows and has done; all of it guarded by ``lock``."""

    def __init__(self, scenario: Scenario, fs: HostFS) -> None:
        self.scenario = scenario
        self.fs = fs
        self.lock = threading.RLock()
        self.vms = [VMRuntime.from_spec(vm, scenario.host) for vm in scenario.vms]
        self.events: list[HostEvent] = []
        self.hooks: list[HookRecord] = []
        self.shadows: dict[uuid.UUID, ShadowRecord] = {}
        self.staging_folders: list[str] = []
        self.smb_shares: dict[str, ShareRecord] = {}
        """Shares made by ``new-staging-share``, by case-folded name."""
        self.share_server: ShareServer | None = None
        """Serves those shares over SMB when the simulator runs Samba."""
        self._shadow_count = 0
        self._closing = threading.Event()
        self._busy = threading.Condition()
        self._in_flight = 0
        self._background: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------------------

    def materialize(self) -> None:
        """Write every VM's files under the host root."""
        total = sum(d.initial_bytes for vm in self.vms for d in vm.disk_files())
        if total > _MAX_MATERIALIZED:
            raise ConfigError(
                f"The scenario's disks would take {total / 2**30:.1f} GiB on this machine (the "
                f"simulator writes every file; the limit is {_MAX_MATERIALIZED // 2**30} GiB). "
                "Give each disk a small 'file_size' (a few MiB); 'size', the virtual size, "
                "can stay realistic."
            )
        for drive in self.fs.drives:
            (self.fs.root / drive).mkdir(parents=True, exist_ok=True)
        for vm in self.vms:
            vm.materialize(self.fs)

    @contextmanager
    def call_in_flight(self) -> Iterator[None]:
        """Count a running script call, so :meth:`close` can wait for it."""
        with self._busy:
            if self._closing.is_set():
                raise HostShutdownError("the emulated host is stopping")
            self._in_flight += 1
        try:
            yield
        finally:
            with self._busy:
                self._in_flight -= 1
                self._busy.notify_all()

    def in_background(self, name: str, work: Callable[[], None]) -> None:
        """Run ``work`` on a thread that outlives the call (a merge that goes on)."""

        def run() -> None:
            try:
                work()
            except HostShutdownError:
                logger.info("simulator: %s cut short by shutdown", name)

        thread = threading.Thread(target=run, name=f"sim-{name}", daemon=True)
        with self._busy:
            self._background.append(thread)
        thread.start()

    def close(self, timeout: float) -> None:
        """Cut long operations short and wait (up to ``timeout``) for calls and threads."""
        self._closing.set()
        deadline = time.monotonic() + timeout
        with self._busy:
            while self._in_flight and self._busy.wait(max(0.0, deadline - time.monotonic())):
                pass
            threads = list(self._background)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._in_flight or any(t.is_alive() for t in threads):
            logger.warning("simulator: host operations still running at shutdown")

    def sleep(self, seconds: float) -> None:
        """Wait like a slow host does, unless the simulator stops meanwhile."""
        if seconds > 0 and self._closing.wait(seconds):
            raise HostShutdownError("the emulated host is stopping")
        self.check_open()

    def check_open(self) -> None:
        """Raise :class:`HostShutdownError` once the simulator is stopping."""
        if self._closing.is_set():
            raise HostShutdownError("the emulated host is stopping")

    # --- VMs and events ------------------------------------------------------------------

    def vm(self, name: str) -> VMRuntime:
        """The VM named exactly ``name`` (case-insensitive, like -eq), or ``vm_not_found``."""
        folded = name.casefold()
        for vm in self.vms:
            if vm.name.casefold() == folded:
                return vm
        raise ScriptFailedError.vm_not_found(name, self.scenario.host.computer_name)

    def emit(self, script: str, vm: str | None, event: str, **detail: Any) -> None:
        """Add to the event log."""
        with self.lock:
            self.events.append(HostEvent(time.monotonic(), script, vm, event, detail))
        logger.debug("simulator: %s %s %s %s", script, vm, event, detail)

    def guest_writes(self, vm: VMRuntime) -> None:
        """A running guest writes to its disks between any two host operations."""
        with self.lock:
            if vm.state.value != "Running":
                return
            vm.guest_writes += 1
            for path in vm.active_disks():
                self.fs.append_generated(
                    path, _GUEST_WRITE, seed=f"{path}#guest-write-{vm.guest_writes}"
                )

    def start_operation(self, vm: VMRuntime, operation: str, cmdlet: str) -> None:
        """Mark ``vm`` busy; Hyper-V refuses a second operation meanwhile."""
        with self.lock:
            if vm.operation is not None:
                raise ScriptFailedError.conflicting_operation(vm.name, cmdlet)
            vm.operation = operation

    def end_operation(self, vm: VMRuntime) -> None:
        """The VM's long operation is over."""
        with self.lock:
            vm.operation = None

    def refuse_while_replicating(self, script: str, vm: VMRuntime, cmdlet: str) -> None:
        """Fail like Hyper-V while replication holds the VM (scenario transient_attempts)."""
        with self.lock:
            if vm.reported_replication_state != "Resynchronizing":
                return
            vm.transient_attempts -= 1
            self.emit(script, vm.name, "backup_refused", remaining=vm.transient_attempts)
        raise ScriptFailedError.conflicting_operation(vm.name, cmdlet)

    # --- volumes and shadows -------------------------------------------------------------

    def volume_free_bytes(self, path: str) -> int:
        """Free space of the volume holding ``path`` (scenario ``host.volumes``)."""
        volume = self.scenario.host.volumes.get(drive_of(path))
        return volume.free_bytes if volume is not None else _DEFAULT_FREE_BYTES

    def local(self, path: str) -> Path:
        """:meth:`HostFS.local_path`, failing the script the way PowerShell would."""
        try:
            return self.fs.local_path(path)
        except HostPathError as err:
            raise ScriptFailedError(
                "unexpected", str(err), path, "DriveNotFound,Microsoft.PowerShell.Commands"
            ) from None

    def next_shadow_device(self) -> str:
        """The device name of the next shadow copy, numbered like Windows does."""
        with self.lock:
            self._shadow_count += 1
            return rf"\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy{self._shadow_count}"

    def delete_shadow(self, script: str, shadow: ShadowRecord) -> None:
        """Remove a shadow's link and its frozen copy."""
        link = self.fs.local_path(shadow.link_path)
        if link.is_symlink():
            link.unlink()
        shutil.rmtree(shadow.copy, ignore_errors=True)
        with self.lock:
            self.shadows.pop(shadow.id, None)
        self.emit(script, shadow.vm, "shadow_removed", id=str(shadow.id), volume=shadow.volume)


@dataclass
class Call:
    """One script call: its name, the host, and the fault injected into it (if any)."""

    script: str
    host: HostState
    fault: FaultSpec | None = None
    vm_name: str | None = None

    @property
    def cmdlet(self) -> str:
        """The Hyper-V cmdlet the script is built around (names errors like Hyper-V does)."""
        return _CMDLETS.get(self.script, "GetVM")

    def fault_point(self, stage: str) -> None:
        """Fire the injected fault if this is where it strikes for this script."""
        fault = self.fault
        if fault is None or _FAULT_STAGES.get(self.script, {}).get(fault.action, "start") != stage:
            return
        self.fault = None
        logger.info("simulator: injecting %s into %s", fault.action, self.script)
        self.host.emit(self.script, self.vm_name, "fault_injected", action=fault.action)
        self.host.sleep(fault.seconds)
        if fault.action == "drop_connection":
            raise DropConnection(f"fault injected into {self.script}")
        if fault.action == "fail":
            raise ScriptFailedError(fault.kind, fault.message, fault.vm or self.vm_name)
        if fault.action == "conflicting_operation":
            name = fault.vm or self.vm_name or "the virtual machine"
            raise ScriptFailedError.conflicting_operation(name, self.cmdlet)

    def paced_delay(self) -> float:
        """Seconds of an injected ``delay`` to spread over a long operation (then consumed)."""
        fault = self.fault
        if fault is None or _FAULT_STAGES.get(self.script, {}).get(fault.action) != "paced":
            return 0.0
        self.fault = None
        self.host.emit(self.script, self.vm_name, "fault_injected", action=fault.action)
        return fault.seconds
