"""What a backup will do, VM by VM, before anything on the host is touched.

For each selected VM: the capture method and consistency it yields and why, the capture
mode, what is captured (configuration, each disk with its chain and size, memory/saved
state, the checkpoint tree), what is excluded and why (pass-through disks, with the
workarounds), the Hyper-V Replica role and what it implies, and the estimated bytes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hyperv_backup.consistency import (
    CaptureMethod,
    ConsistencyDecision,
    ConsistencyLevel,
    decide_consistency,
)
from hyperv_backup.models import DiskChainLink, HostInfo, VMInfo, VMState
from hyperv_backup.policy import BackupPolicy, CaptureMode, PassthroughPolicy, Selection
from hyperv_backup.results import Exclusion
from hyperv_backup.transfer import FileReader

__all__ = ["BackupPlan", "PlannedDisk", "VMPlan", "make_plan", "passthrough_exclusions"]

PASSTHROUGH_WORKAROUNDS = [
    "back the disk's data up from inside the guest (an agent or Windows Server Backup in the VM)",
    "convert the pass-through disk to a VHDX (e.g. with Hyper-V Manager's Edit Disk, or "
    "copy its data into a new VHDX) so Hyper-V can checkpoint and export it",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlannedDisk(_Model):
    """A virtual disk that will be captured."""

    location: str
    path: str
    virtual_size: int
    chain: list[DiskChainLink]
    file_bytes: int = Field(description="Bytes of all files of the chain.")


class VMPlan(_Model):
    """The plan for one VM."""

    vm_name: str
    vm_id: str
    state: str
    method: CaptureMethod | None
    expected: ConsistencyLevel | None
    reason: str
    fallback: CaptureMethod | None = None
    fallback_expected: ConsistencyLevel | None = None
    capture_mode: CaptureMode
    disks: list[PlannedDisk]
    memory: str = Field(description="What happens to memory / saved state.")
    checkpoint_tree: int = Field(description="Checkpoints in the tree, all captured.")
    excluded: list[Exclusion]
    replication_role: str
    replication_note: str | None = None
    estimated_bytes: int
    will_fail: str | None = Field(
        default=None, description="Why this VM cannot be backed up under the policy."
    )


class BackupPlan(_Model):
    """The plan for a job."""

    host: HostInfo
    vms: list[VMPlan]
    excluded_by_selection: list[str] = Field(default_factory=list)

    @property
    def estimated_bytes(self) -> int:
        """Sum of the VMs that will be backed up."""
        return sum(v.estimated_bytes for v in self.vms if v.will_fail is None)


def passthrough_exclusions(vm: VMInfo) -> list[Exclusion]:
    """One exclusion per pass-through disk, with the two workarounds."""
    return [
        Exclusion(
            item=f"pass-through disk {disk.disk_number} at {disk.location} ({disk.path})",
            reason="Hyper-V cannot checkpoint, export or replicate a physical disk attached "
            "directly to the VM",
            workarounds=list(PASSTHROUGH_WORKAROUNDS),
        )
        for disk in vm.passthrough_disks
    ]


def select_vms(vms: list[VMInfo], selection: Selection) -> tuple[list[VMInfo], list[str]]:
    """Apply ``selection.exclude``: (kept VMs, names excluded)."""
    kept = [vm for vm in vms if not selection.excludes(vm.name)]
    return kept, [vm.name for vm in vms if selection.excludes(vm.name)]


def capture_mode_for(
    vm: VMInfo, method: CaptureMethod | None, policy: BackupPolicy, reader: FileReader | None
) -> CaptureMode:
    """In place when asked, or (auto) when the reader reaches the VM's files; else export.

    Shadow-copy methods always read in place (from the shadow); there is nothing to export.
    """
    if method in (CaptureMethod.PAUSE_AND_VSS, CaptureMethod.VSS_SNAPSHOT):
        return CaptureMode.IN_PLACE
    if policy.capture != CaptureMode.AUTO:
        return policy.capture
    paths = [d.path for d in vm.virtual_disks if d.path] + [vm.path]
    if reader is not None and all(reader.reachable(p) for p in paths):
        return CaptureMode.IN_PLACE
    return CaptureMode.EXPORT


def _memory_note(vm: VMInfo, decision: ConsistencyDecision) -> str:
    if vm.has_saved_state:
        return "saved state (memory) captured with the configuration"
    if vm.state != VMState.RUNNING:
        return "not running: no memory to capture"
    if decision.method == CaptureMethod.PRODUCTION_CHECKPOINT:
        return (
            "not captured: a production checkpoint captures the guest's disks after a VSS "
            "flush, not its memory (a restore boots cleanly)"
        )
    if decision.method == CaptureMethod.STANDARD_CHECKPOINT:
        return (
            "captured: the standard checkpoint saves the running state "
            f"({vm.memory_assigned} bytes)"
        )
    return "not captured: a paused VM's memory is not part of a host shadow copy"


def _replication_note(vm: VMInfo, policy: BackupPolicy) -> str | None:
    mode = vm.replication.mode.value
    if mode == "None":
        return None
    if vm.replication.is_replica:
        note = "replica copy: backed up from a host shadow copy, never application-consistent"
    else:
        note = (
            "primary: replication cycles can make Hyper-V refuse the backup (conflicting "
            "operation); retried with backoff"
        )
    if policy.suspend_replication:
        note += "; replication is suspended for the backup and always resumed"
    return note


def _estimate(vm: VMInfo, disks: list[PlannedDisk], decision: ConsistencyDecision) -> int:
    total = sum(d.file_bytes for d in disks)
    if decision.method == CaptureMethod.STANDARD_CHECKPOINT and vm.state == VMState.RUNNING:
        total += vm.memory_assigned  # the checkpoint's saved running state
    if vm.has_saved_state:
        total += vm.memory_assigned
    return total + 1024 * 1024  # configuration files


def plan_vm(host: HostInfo, vm: VMInfo, policy: BackupPolicy, reader: FileReader | None) -> VMPlan:
    """The plan for one VM."""
    decision = decide_consistency(host, vm, policy.consistency)
    excluded = passthrough_exclusions(vm)
    will_fail = decision.refusal
    if excluded and policy.passthrough == PassthroughPolicy.FAIL_VM and will_fail is None:
        will_fail = (
            f"the VM has {len(excluded)} pass-through disk(s), which Hyper-V cannot back up, "
            "and the policy is passthrough=fail_vm"
        )
    disks = [
        PlannedDisk(
            location=d.location,
            path=d.path or "",
            virtual_size=d.chain[0].size if d.chain else 0,
            chain=d.chain,
            file_bytes=sum(link.file_size for link in d.chain),
        )
        for d in vm.virtual_disks
    ]
    return VMPlan(
        vm_name=vm.name,
        vm_id=str(vm.id),
        state=vm.state.value,
        method=decision.method,
        expected=decision.level,
        reason=decision.reason,
        fallback=decision.fallback,
        fallback_expected=decision.fallback_level,
        capture_mode=capture_mode_for(vm, decision.method, policy, reader),
        disks=disks,
        memory=_memory_note(vm, decision),
        checkpoint_tree=len(vm.checkpoints),
        excluded=excluded,
        replication_role=vm.replication.mode.value,
        replication_note=_replication_note(vm, policy),
        estimated_bytes=_estimate(vm, disks, decision),
        will_fail=will_fail,
    )


def make_plan(
    host: HostInfo,
    vms: list[VMInfo],
    selection: Selection,
    policy: BackupPolicy,
    reader: FileReader | None,
) -> BackupPlan:
    """The plan for the VMs of an inventory under a selection and policy."""
    kept, dropped = select_vms(vms, selection)
    return BackupPlan(
        host=host,
        vms=[plan_vm(host, vm, policy, reader) for vm in kept],
        excluded_by_selection=dropped,
    )
