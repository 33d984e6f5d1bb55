"""The emulated Hyper-V host: answers hyperv-backup's scripts from a :class:`Scenario`.

It recognises a script by its ``# hyperv-backup-script: <name>`` marker line, validates the
parameters with the same pydantic model the client used, applies injected faults, and writes
the same JSON envelope the real script would. What it does not know it answers the way
PowerShell would: an unknown command or parameter becomes a terminating error record.

The host is stateful and file-backed: at :meth:`EmulatedHost.start` every VM's files are
written under a host root folder (see :mod:`.hostfs`), and the scripts change VMs and files
as Hyper-V would (:mod:`.scripts_checkpoints`, :mod:`.scripts_storage`,
:mod:`.scripts_replication`, :mod:`.scripts_restore`). Everything it did is in
:attr:`EmulatedHost.events`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from hyperv_backup.models import CheckpointInfo, VMInfo
from hyperv_backup.ps_scripts import SCRIPTS, GetVMFilesParams, ScriptParams, VMFiles, marker_of
from hyperv_backup.simulator import scripts_checkpoints as checkpoints
from hyperv_backup.simulator import scripts_files as files
from hyperv_backup.simulator import scripts_inventory as inventory
from hyperv_backup.simulator import scripts_replication as replication
from hyperv_backup.simulator import scripts_restore as restore
from hyperv_backup.simulator import scripts_shadow as shadow
from hyperv_backup.simulator import scripts_smb as smb
from hyperv_backup.simulator import scripts_storage as storage
from hyperv_backup.simulator.hostfs import HostFS, drive_of
from hyperv_backup.simulator.hoststate import (
    Call,
    HookRecord,
    HostEvent,
    HostShutdownError,
    HostState,
    ScriptFailedError,
    ShadowRecord,
)
from hyperv_backup.simulator.protocol import ErrorRecordSpec, ScriptInvocation, ScriptOutcome
from hyperv_backup.simulator.scenario import FaultSpec, Scenario
from hyperv_backup.simulator.shares import ShareRecord, ShareServer
from hyperv_backup.simulator.vmstate import VMRuntime

__all__ = [
    "HANDLED_SCRIPTS",
    "DiskImages",
    "EmulatedHost",
    "HookRecord",
    "HostEvent",
    "RecordedCall",
]

logger = logging.getLogger(__name__)

DiskImages = Literal["plain", "qemu"]
_Handler = Callable[[Call, Any], BaseModel]
_HANDLERS: dict[str, _Handler] = {
    "get-host-info": inventory.get_host_info,
    "get-inventory": inventory.get_inventory,
    "get-vm-files": checkpoints.get_vm_files,
    "new-backup-checkpoint": checkpoints.new_backup_checkpoint,
    "remove-backup-checkpoint": checkpoints.remove_backup_checkpoint,
    "get-backup-leftovers": checkpoints.get_backup_leftovers,
    "new-staging-folder": storage.new_staging_folder,
    "remove-staging-folder": storage.remove_staging_folder,
    "export-vm-config": storage.export_vm_config,
    "export-vm": storage.export_vm,
    "new-paused-shadow": shadow.new_paused_shadow,
    "remove-shadow": shadow.remove_shadow,
    "resume-vm": shadow.resume_vm,
    "suspend-vm-replication": replication.suspend_vm_replication,
    "resume-vm-replication": replication.resume_vm_replication,
    "invoke-hook": replication.invoke_hook,
    "new-staging-share": smb.new_staging_share,
    "remove-staging-share": smb.remove_staging_share,
    "read-file-chunk": files.read_file_chunk,
    "get-free-space": restore.get_free_space,
    "import-vm": restore.import_vm,
}
HANDLED_SCRIPTS = frozenset(_HANDLERS)
"""The scripts the emulated host answers."""
_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class RecordedCall:
    """A script call as the emulated host received it (for tests to inspect)."""

    script: str
    raw_parameters: dict[str, Any]
    params: ScriptParams | None
    username: str
    outcome: str = "ok"


@dataclass
class _FaultState:
    spec: FaultSpec
    fired: int = 0


@dataclass
class _Root:
    path: Path
    owned: bool = field(default=False)
    """Created by us (removed whole on stop); otherwise only emptied."""


class EmulatedHost:
    """A :class:`~hyperv_backup.simulator.protocol.ScriptHandler` backed by a scenario.

    ``host_root`` is the folder the host's drives live in (it must be empty or absent; by
    default a temporary folder); everything in it is removed by :meth:`stop`.
    ``disk_images='qemu'`` makes dynamic base disks real VHDX/VHD images (needs ``qemu-img``).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        host_root: Path | None = None,
        disk_images: DiskImages = "plain",
    ) -> None:
        self.scenario = scenario
        self.calls: list[RecordedCall] = []
        self._faults = [_FaultState(f) for f in scenario.faults]
        self._lock = threading.Lock()
        self._requested_root = host_root
        self._disk_images = disk_images
        self._root: _Root | None = None
        self._state: HostState | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Build the run-time state and write every VM's files under the host root."""
        if self._state is not None:
            return
        root = self._make_root()
        try:
            fs = HostFS(root.path, self._drives(), disk_images=self._disk_images)
            state = HostState(self.scenario, fs)
            state.materialize()
        except BaseException:
            _remove_root(root)
            raise
        self._root, self._state = root, state
        logger.info("simulator: host files under %s", root.path)

    def stop(self) -> None:
        """Cut long operations short, wait for them, and remove every file. Idempotent."""
        state, self._state = self._state, None
        root, self._root = self._root, None
        if state is not None:
            state.close(_STOP_TIMEOUT)
        if root is not None:
            _remove_root(root)

    def _make_root(self) -> _Root:
        if self._requested_root is None:
            return _Root(Path(tempfile.mkdtemp(prefix="hyperv-backup-host-")), owned=True)
        path = self._requested_root.resolve()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            # Everything in host_root is deleted on stop: never take a folder with content.
            raise ValueError(f"host_root {path} must be an empty folder or not exist yet")
        owned = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        return _Root(path, owned=owned)

    def _drives(self) -> set[str]:
        drives = {"C", *self.scenario.host.volumes}
        for vm in self.scenario.vms:
            drives.add(drive_of(vm.folder))
            for disk in vm.disk_specs():
                node = disk.file
                while node is not None:
                    drives.add(drive_of(node.path))
                    node = node.parent
        return drives

    @property
    def state(self) -> HostState:
        """The run-time state (raises unless started)."""
        if self._state is None:
            raise RuntimeError("the emulated host is not started")
        return self._state

    # --- inspection ----------------------------------------------------------------------

    @property
    def host_root(self) -> Path:
        """The folder holding the host's drives (``<host_root>/D`` is ``D:\\``)."""
        return self.state.fs.root

    def local_path(self, host_path: str) -> Path:
        """Where a Windows path of the host lives on this machine."""
        return self.state.fs.local_path(host_path)

    def path_map(self) -> dict[str, Path]:
        """``{"D:\\\\": <host_root>/D, ...}`` for every drive of the host."""
        return self.state.fs.path_map()

    @property
    def events(self) -> list[HostEvent]:
        """Everything the host did so far, oldest first (a copy)."""
        with self.state.lock:
            return list(self.state.events)

    def events_for(self, vm: str) -> list[HostEvent]:
        """The events concerning the VM named ``vm``."""
        return [e for e in self.events if e.vm == vm]

    @property
    def hooks(self) -> list[HookRecord]:
        """The hook commands run so far (a copy)."""
        with self.state.lock:
            return list(self.state.hooks)

    @property
    def shadows(self) -> list[ShadowRecord]:
        """The shadow copies that exist now."""
        with self.state.lock:
            return list(self.state.shadows.values())

    @property
    def staging_folders(self) -> list[str]:
        """Staging folders created by ``new-staging-folder`` and not removed since."""
        with self.state.lock:
            return list(self.state.staging_folders)

    @property
    def smb_shares(self) -> list[ShareRecord]:
        """Shares created by ``new-staging-share`` and not removed since."""
        with self.state.lock:
            return list(self.state.smb_shares.values())

    def attach_share_server(self, server: ShareServer | None) -> None:
        """Serve the shares the scripts create through ``server`` (the simulator's Samba)."""
        with self.state.lock:
            self.state.share_server = server

    def vm_runtime(self, name: str) -> VMRuntime:
        """The live run-time state of a VM (read it; change it only through scripts)."""
        try:
            return self.state.vm(name)
        except ScriptFailedError as err:
            raise KeyError(err.message) from None

    def vm_info(self, name: str) -> VMInfo:
        """The VM as ``get-inventory`` would report it now."""
        with self.state.lock:
            return self.vm_runtime(name).info(self.scenario.host, self.state.fs)

    def inventory(self) -> list[VMInfo]:
        """Every VM as ``get-inventory`` would report it now, in host order."""
        with self.state.lock:
            return [vm.info(self.scenario.host, self.state.fs) for vm in self.state.vms]

    def checkpoints(self, name: str) -> list[CheckpointInfo]:
        """The VM's checkpoint tree now, oldest first."""
        with self.state.lock:
            return [c.info() for c in self.vm_runtime(name).checkpoints]

    def vm_files(self, name: str) -> VMFiles:
        """What ``get-vm-files`` would report now (without the guest writing meanwhile)."""
        call = Call("get-vm-files", self.state)
        return checkpoints.get_vm_files(call, GetVMFilesParams(vm_name=name))

    def add_fault(self, fault: FaultSpec) -> None:
        """Inject a fault at run time (tests use this between calls)."""
        with self._lock:
            self._faults.append(_FaultState(fault))

    def calls_to(self, script: str) -> list[RecordedCall]:
        """The recorded calls of one script, oldest first."""
        with self._lock:
            return [c for c in self.calls if c.script == script]

    # --- the handler ---------------------------------------------------------------------

    def __call__(self, invocation: ScriptInvocation) -> ScriptOutcome:
        name = marker_of(invocation.script) if invocation.is_script else None
        spec = SCRIPTS.get(name or "")
        if name is None or spec is None or name not in _HANDLERS:
            return _unknown_command(invocation, name)
        try:
            params = spec.params.model_validate(
                _bind_case_insensitively(spec.params, invocation.parameters),
                by_alias=True,
                by_name=False,
            )
        except ValidationError as err:
            self._record(name, invocation, None, "invalid parameters")
            return _parameter_binding_error(name, err)
        fault = self._take_fault(name, params)
        self._record(name, invocation, params, fault.spec.action if fault else "ok")
        vm_name = getattr(params, "vm_name", None)
        state = self._state
        if state is None:
            return ScriptOutcome(
                errors=[ErrorRecordSpec(message="The emulated host is not started.")],
                failed=True,
            )
        try:
            with state.call_in_flight():
                call = Call(name, state, fault.spec if fault else None, vm_name)
                if vm_name is not None:
                    _guest_writes(state, vm_name)
                call.fault_point("start")
                result = _HANDLERS[name](call, params)
        except ScriptFailedError as failure:
            return _envelope_error(failure)
        except HostShutdownError as err:
            return ScriptOutcome(
                errors=[ErrorRecordSpec(message=f"The host is shutting down: {err}")],
                failed=True,
            )
        return ScriptOutcome(output=[_envelope_ok(result)])

    def _record(
        self, name: str, invocation: ScriptInvocation, params: ScriptParams | None, outcome: str
    ) -> None:
        with self._lock:
            self.calls.append(
                RecordedCall(
                    script=name,
                    raw_parameters=dict(invocation.parameters),
                    params=params,
                    username=invocation.username,
                    outcome=outcome,
                )
            )

    def _take_fault(self, name: str, params: ScriptParams) -> _FaultState | None:
        vm_names = set(getattr(params, "names", []) or []) | {getattr(params, "vm_name", None)}
        with self._lock:
            for state in self._faults:
                spec = state.spec
                if spec.script != name or (spec.vm is not None and spec.vm not in vm_names):
                    continue
                if spec.times is not None and state.fired >= spec.times:
                    continue
                state.fired += 1
                return state
        return None


def _guest_writes(state: HostState, vm_name: str) -> None:
    try:
        vm = state.vm(vm_name)
    except ScriptFailedError:
        return  # the script itself reports the unknown VM
    state.guest_writes(vm)


def _remove_root(root: _Root) -> None:
    if root.owned:
        shutil.rmtree(root.path, ignore_errors=True)
        return
    for entry in root.path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _bind_case_insensitively(model: type[ScriptParams], raw: dict[str, Any]) -> dict[str, Any]:
    """PowerShell matches parameter names regardless of case; so does the simulator."""
    canonical = {
        (info.alias or name).lower(): info.alias or name
        for name, info in model.model_fields.items()
    }
    return {canonical.get(key.lower(), key): value for key, value in raw.items()}


def _envelope_ok(result: BaseModel) -> str:
    return json.dumps({"ok": True, "result": result.model_dump(mode="json")}, separators=(",", ":"))


def _envelope_error(failure: ScriptFailedError) -> ScriptOutcome:
    error = {
        "kind": failure.kind,
        "message": failure.message,
        "fqid": failure.fqid,
        "target": failure.target,
    }
    return ScriptOutcome(output=[json.dumps({"ok": False, "error": error}, separators=(",", ":"))])


def _unknown_command(invocation: ScriptInvocation, marker: str | None) -> ScriptOutcome:
    first_line = invocation.script.strip().splitlines()[0] if invocation.script.strip() else ""
    what = f"script {marker!r}" if marker else repr(first_line[:80])
    message = (
        f"The term {what} is not recognized by the Hyper-V simulator: it answers only "
        f"hyperv-backup's scripts ({', '.join(sorted(_HANDLERS))}), identified by their "
        "'# hyperv-backup-script: <name>' marker line."
    )
    return ScriptOutcome(
        errors=[ErrorRecordSpec(message=message, fqid="CommandNotFoundException", category=13)],
        failed=True,
    )


def _parameter_binding_error(name: str, err: ValidationError) -> ScriptOutcome:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = f"Cannot bind parameter '{where}' of {name}: {first['msg']}."
    return ScriptOutcome(
        errors=[
            ErrorRecordSpec(message=message, fqid=f"ParameterBindingFailed,{name}", category=5)
        ],
        failed=True,
    )
