"""Hyper-V Replica (suspend/resume) and the user's before/after hook commands.

A hook is the user's own PowerShell, which the simulator cannot run; it understands just
enough to make hooks testable: ``Suspend-VMReplication`` / ``Resume-VMReplication`` act on
``$VMName``'s VM (on every replicated VM for a job-level hook, which has no ``$VMName``), and
``throw '<text>'`` fails the hook with that text. Everything else succeeds silently.
"""

from __future__ import annotations

import re

from hyperv_backup.ps_scripts import (
    HookResult,
    InvokeHookParams,
    ReplicationChange,
    ReplicationParams,
)
from hyperv_backup.simulator.hoststate import Call, HookRecord, HostState, ScriptFailedError
from hyperv_backup.simulator.vmstate import VMRuntime

__all__ = ["invoke_hook", "resume_vm_replication", "suspend_vm_replication"]

_HOOK_ACTIONS = re.compile(
    r"(?P<verb>Suspend|Resume)-VMReplication\b|\bthrow\s+(?P<q>['\"])(?P<text>.*?)(?P=q)",
    re.IGNORECASE | re.DOTALL,
)


def suspend_vm_replication(call: Call, params: ReplicationParams) -> ReplicationChange:
    """Suspend-VMReplication: Replicating (or any active state) → Suspended."""
    with call.host.lock:
        return _change(call.host, call.script, call.host.vm(params.vm_name), suspend=True)


def resume_vm_replication(call: Call, params: ReplicationParams) -> ReplicationChange:
    """Resume-VMReplication: Suspended → what the scenario says (Replicating by default)."""
    with call.host.lock:
        return _change(call.host, call.script, call.host.vm(params.vm_name), suspend=False)


def _change(host: HostState, script: str, vm: VMRuntime, *, suspend: bool) -> ReplicationChange:
    verb = "Suspend" if suspend else "Resume"
    if not vm.replicated:
        raise ScriptFailedError(
            "replication",
            f"Replication operation failed for '{vm.name}'. Replication is not enabled for "
            f"virtual machine '{vm.name}'.",
            vm.name,
            f"InvalidOperation,Microsoft.HyperV.PowerShell.Commands.{verb}VMReplication",
        )
    before = vm.reported_replication_state or "Replicating"
    if suspend:
        vm.replication_state = "Suspended"
    elif vm.replication_suspended:
        declared = vm.spec.replication.state
        vm.replication_state = declared if declared not in (None, "Suspended") else "Replicating"
    after = vm.reported_replication_state or "Replicating"
    if before != after:
        event = "replication_suspended" if suspend else "replication_resumed"
        host.emit(script, vm.name, event, before=before, after=after)
    return ReplicationChange(state_before=before, state_after=after)


def invoke_hook(call: Call, params: InvokeHookParams) -> HookResult:
    """Record the hook; emulate the few commands a test needs (see the module docstring)."""
    host = call.host
    with host.lock:
        host.hooks.append(
            HookRecord(
                phase=params.phase,
                command=params.command,
                vm_name=params.vm_name,
                vm_id=params.vm_id,
                job_id=params.job_id,
            )
        )
    host.emit(
        call.script, params.vm_name or None, "hook_run", phase=params.phase, command=params.command
    )
    for action in _HOOK_ACTIONS.finditer(params.command):
        if action.group("text") is not None:
            raise ScriptFailedError("hook", action.group("text"), params.vm_name)
        suspend = action.group("verb").lower() == "suspend"
        try:
            with host.lock:
                if params.vm_name:  # job phases pass an empty name
                    targets = [host.vm(params.vm_name)]
                else:
                    targets = [vm for vm in host.vms if vm.replicated]
                for vm in targets:
                    _change(host, call.script, vm, suspend=suspend)
        except ScriptFailedError as err:
            raise ScriptFailedError("hook", err.message, params.vm_name, err.fqid) from None
    return HookResult(output=[])
