"""How to get a consistent copy of one VM, decided from the host, the VM and the policy.

Three ways (plus the trivial one for VMs that are not running):

1. **Production checkpoint** (Windows Server 2016+, guest VSS integration service enabled and
   answering, VM not set to standard checkpoints): the host asks the guest for a VSS snapshot;
   **application-consistent**, no interruption. Taken as ``ProductionOnly`` so that a guest
   that cannot do VSS fails loudly instead of Hyper-V silently falling back.
2. **Standard checkpoint** (2012 R2+; no usable integration services, production checkpoints
   turned off for the VM, or ``crash_ok``): **crash-consistent**, no interruption.
3. **Pause + host VSS** (hosts older than 2012 R2, or checkpoints disabled for the VM): pause
   the VM, shadow-copy the volumes holding its files, resume at once, read from the shadow;
   **crash-consistent** with a brief, measured pause.

A VM that is not running (Off, Saved) has no in-flight guest I/O: a standard checkpoint (or,
where checkpoints are unavailable, a shadow copy) freezes it; the copy is **offline**-consistent.
A replica (Hyper-V Replica) is never running and its files change as replication applies log
updates: it is read from a host shadow copy and is never application-consistent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hyperv_backup.models import CheckpointType, HostInfo, VMInfo, VMState
from hyperv_backup.policy import ConsistencyPolicy

__all__ = ["CaptureMethod", "ConsistencyDecision", "ConsistencyLevel", "decide_consistency"]


class ConsistencyLevel(str, enum.Enum):
    """The consistency a backup achieved."""

    APPLICATION = "application"
    """The guest flushed its applications through VSS (a production checkpoint)."""
    CRASH = "crash"
    """As if the power had been cut at that instant: file systems replay their journals."""
    OFFLINE = "offline"
    """The VM was not running: its disks were not changing."""


class CaptureMethod(str, enum.Enum):
    """How the VM's state is frozen for reading."""

    PRODUCTION_CHECKPOINT = "production_checkpoint"
    STANDARD_CHECKPOINT = "standard_checkpoint"
    PAUSE_AND_VSS = "pause_and_vss"
    VSS_SNAPSHOT = "vss_snapshot"
    """Host shadow copy without pausing: the VM is not running (replica, or off)."""

    @property
    def uses_checkpoint(self) -> bool:
        """True when a backup checkpoint is created (and removed, with its merge awaited)."""
        return self in (CaptureMethod.PRODUCTION_CHECKPOINT, CaptureMethod.STANDARD_CHECKPOINT)


@dataclass(frozen=True)
class ConsistencyDecision:
    """What will be done for a VM and the consistency it yields.

    ``fallback`` is set when ``method`` may fail for a reason the policy accepts (a
    production checkpoint the guest cannot serve): then ``fallback`` is tried and yields
    ``fallback_level``. ``refusal`` is set instead of a method when the policy cannot be met.
    """

    method: CaptureMethod | None
    level: ConsistencyLevel | None
    reason: str
    fallback: CaptureMethod | None = None
    fallback_level: ConsistencyLevel | None = None
    refusal: str | None = None


_RUNNING = frozenset(
    {
        VMState.RUNNING,
        VMState.PAUSED,
        VMState.RUNNING_CRITICAL,
        VMState.PAUSED_CRITICAL,
        VMState.STARTING,
        VMState.RESUMING,
        VMState.PAUSING,
        VMState.SAVING,
        VMState.STOPPING,
    }
)


def _production_capable(host: HostInfo) -> bool:
    # Production checkpoints (and Set-VM -CheckpointType) arrived with Windows Server 2016.
    return host.version_tuple[0] >= 10


def _standard_capable(host: HostInfo) -> bool:
    # Below 2012 R2, the mission's rule is pause + host VSS rather than checkpoints.
    return host.version_tuple[:2] >= (6, 3)


def decide_consistency(
    host: HostInfo, vm: VMInfo, policy: ConsistencyPolicy
) -> ConsistencyDecision:
    """The capture method and expected consistency for ``vm`` on ``host`` under ``policy``."""
    if vm.replication.is_replica:
        return _replica(vm, policy)
    if vm.state not in _RUNNING:
        return _not_running(host, vm)
    checkpoints_allowed = vm.checkpoint_type != CheckpointType.DISABLED
    if not checkpoints_allowed or not _standard_capable(host):
        why = (
            "checkpoints are disabled for this VM"
            if not checkpoints_allowed
            else f"the host runs {host.os_caption} (older than Windows Server 2012 R2)"
        )
        return _crash_only(
            CaptureMethod.PAUSE_AND_VSS,
            policy,
            f"{why}: the VM is paused briefly while a host VSS shadow copy is taken",
            f"{why}, and without a checkpoint the guest cannot be asked to flush",
        )
    blocker = _app_blocker(host, vm)
    if policy == ConsistencyPolicy.CRASH_OK:
        return ConsistencyDecision(
            CaptureMethod.STANDARD_CHECKPOINT,
            ConsistencyLevel.CRASH,
            "policy crash_ok: a standard checkpoint, the guest is not involved",
        )
    if blocker is not None:
        return _crash_only(
            CaptureMethod.STANDARD_CHECKPOINT,
            policy,
            f"{blocker}: a standard (crash-consistent) checkpoint is used",
            blocker,
        )
    if policy == ConsistencyPolicy.APP_REQUIRED:
        return ConsistencyDecision(
            CaptureMethod.PRODUCTION_CHECKPOINT,
            ConsistencyLevel.APPLICATION,
            "guest VSS integration service is healthy: production checkpoint "
            "(no fallback: policy app_required)",
        )
    return ConsistencyDecision(
        CaptureMethod.PRODUCTION_CHECKPOINT,
        ConsistencyLevel.APPLICATION,
        "guest VSS integration service is healthy: production checkpoint",
        fallback=CaptureMethod.STANDARD_CHECKPOINT,
        fallback_level=ConsistencyLevel.CRASH,
    )


def _app_blocker(host: HostInfo, vm: VMInfo) -> str | None:
    """Why a production checkpoint cannot be app-consistent, or None if it can."""
    if not _production_capable(host):
        return f"production checkpoints need Windows Server 2016 or newer (host: {host.os_caption})"
    if vm.checkpoint_type == CheckpointType.STANDARD:
        return "the VM is set to standard checkpoints (production checkpoints turned off)"
    service = vm.backup_service
    if service is None:
        return "the guest has no VSS (backup) integration service"
    if not service.enabled:
        return "the guest's VSS integration service is disabled"
    if not service.is_healthy:
        return f"the guest's VSS integration service reports {service.primary_status!r}"
    return None


def _crash_only(
    method: CaptureMethod, policy: ConsistencyPolicy, reason: str, blocker: str
) -> ConsistencyDecision:
    if policy == ConsistencyPolicy.APP_REQUIRED:
        return ConsistencyDecision(
            None,
            None,
            reason,
            refusal=f"application consistency is required but {blocker}. Install/enable the "
            "Hyper-V integration services (VSS) in the guest, or allow crash-consistent "
            "backups (consistency app_preferred or crash_ok).",
        )
    return ConsistencyDecision(method, ConsistencyLevel.CRASH, reason)


def _not_running(host: HostInfo, vm: VMInfo) -> ConsistencyDecision:
    state = vm.state.value
    if vm.checkpoint_type != CheckpointType.DISABLED and _standard_capable(host):
        return ConsistencyDecision(
            CaptureMethod.STANDARD_CHECKPOINT,
            ConsistencyLevel.OFFLINE,
            f"the VM is {state}: a standard checkpoint freezes its files",
        )
    return ConsistencyDecision(
        CaptureMethod.VSS_SNAPSHOT,
        ConsistencyLevel.OFFLINE,
        f"the VM is {state} and checkpoints are unavailable: read from a host shadow copy",
    )


def _replica(vm: VMInfo, policy: ConsistencyPolicy) -> ConsistencyDecision:
    reason = (
        f"the VM is a Hyper-V Replica copy ({vm.replication.mode.value}, replicated from "
        f"{vm.replication.primary_server or 'the primary'}): it is not running and replication "
        "keeps changing its files, so it is read from a host shadow copy; crash-consistent"
    )
    if policy == ConsistencyPolicy.APP_REQUIRED:
        return ConsistencyDecision(
            None,
            None,
            reason,
            refusal="application consistency is required, but a replica is never "
            "application-consistent (it is not running). Back the VM up on its primary host "
            f"({vm.replication.primary_server or 'unknown'}), or allow crash-consistent backups.",
        )
    return ConsistencyDecision(CaptureMethod.VSS_SNAPSHOT, ConsistencyLevel.CRASH, reason)
