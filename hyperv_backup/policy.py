"""What a backup job should do: which VMs, how consistent, how to capture, how to retry.

All frozen pydantic models, built once at the edge (config file, CLI, script).
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BackupPolicy",
    "CaptureMode",
    "ConsistencyPolicy",
    "Hooks",
    "PassthroughPolicy",
    "PowerShellHook",
    "RetryPolicy",
    "Selection",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConsistencyPolicy(str, enum.Enum):
    """How consistent a VM's backup must be.

    - ``app_required``: application-consistent (or the VM is off) — otherwise the VM fails
      with a clear reason instead of silently falling back.
    - ``app_preferred`` (default): application-consistent where the guest can do it, else
      crash-consistent, and the result says which and why.
    - ``crash_ok``: crash-consistent is enough: standard checkpoints, the guest is never
      asked to flush (quicker, no VSS activity inside the guest).
    """

    APP_REQUIRED = "app_required"
    APP_PREFERRED = "app_preferred"
    CRASH_OK = "crash_ok"


class CaptureMode(str, enum.Enum):
    """How the frozen VM leaves the host.

    - ``in_place``: while the backup checkpoint (or shadow copy) exists the files below it do
      not change, so disks are read where they lie; only the configuration is exported.
      No staging space, half the host I/O.
    - ``export``: ``Export-VM`` copies the whole VM into a staging folder first.
    - ``auto`` (default): in place when the reader can reach the VM's files, else export.
    """

    AUTO = "auto"
    IN_PLACE = "in_place"
    EXPORT = "export"


class PassthroughPolicy(str, enum.Enum):
    """What to do with a VM that has pass-through disks (Hyper-V cannot back them up)."""

    SKIP_DISK = "skip_disk"
    FAIL_VM = "fail_vm"


class RetryPolicy(_Frozen):
    """Bounded retries of "conflicting operation" errors and busy replication states.

    Exponential backoff with full jitter: the n-th wait is random in
    ``[0, min(max_wait, initial_wait * 2**n)]``; give up after ``attempts`` tries or when
    ``deadline`` seconds have passed since the first, whichever comes first.
    """

    attempts: int = Field(default=6, ge=1, le=100)
    initial_wait: float = Field(default=15.0, ge=0)
    max_wait: float = Field(default=300.0, ge=0)
    deadline: float = Field(default=1800.0, gt=0)
    jitter: bool = True


class PowerShellHook(_Frozen):
    """A command run on the host. It sees ``$VMName``, ``$VMId``, ``$JobId`` and ``$Phase``
    as variables; their values are never spliced into the text."""

    command: str = Field(min_length=1)
    name: str | None = Field(default=None, description="Shown in results; default: the text.")

    @property
    def label(self) -> str:
        """How results refer to this hook."""
        return self.name or self.command.strip().splitlines()[0][:60]


HookContextCallable = Callable[[Any], None]
"""A Python hook: called with a :class:`hyperv_backup.backup.HookContext`."""


class Hooks(BaseModel):
    """Before/after commands, per job and per VM. After-hooks always run, also when the
    backup failed; their failures are reported, never hidden. A failing before-hook fails
    the job (``before_job``) or the VM (``before_vm``) before anything is touched."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    before_job: list[PowerShellHook | HookContextCallable] = Field(default_factory=list)
    after_job: list[PowerShellHook | HookContextCallable] = Field(default_factory=list)
    before_vm: list[PowerShellHook | HookContextCallable] = Field(default_factory=list)
    after_vm: list[PowerShellHook | HookContextCallable] = Field(default_factory=list)


class Selection(_Frozen):
    """Which VMs: names or wildcards (``*``, ``?``, ``[ab]``), or all; minus ``exclude``."""

    names: list[str] = Field(default_factory=list)
    all: bool = False
    exclude: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_or_all(self) -> Selection:
        if self.all and self.names:
            raise ValueError("give VM names or all=True, not both")
        if not self.all and not self.names:
            raise ValueError("no VMs selected: give VM names/wildcards, or all=True")
        return self

    def excludes(self, vm_name: str) -> bool:
        """True when ``vm_name`` matches an exclude pattern (case-insensitive)."""
        folded = vm_name.casefold()
        return any(fnmatch.fnmatchcase(folded, p.casefold()) for p in self.exclude)


class BackupPolicy(_Frozen):
    """How to back up each selected VM."""

    consistency: ConsistencyPolicy = ConsistencyPolicy.APP_PREFERRED
    capture: CaptureMode = CaptureMode.AUTO
    passthrough: PassthroughPolicy = PassthroughPolicy.SKIP_DISK
    suspend_replication: bool = Field(
        default=False,
        description="Suspend Hyper-V Replica for each replicated VM during its backup and "
        "resume it afterwards, always (also on failure; a killed run's next run resumes it).",
    )
    parallel_vms: int = Field(default=2, ge=1, le=16)
    staging_root: str = Field(
        default="C:\\ProgramData\\hyperv-backup\\staging",
        description="Folder on the host for exports and configuration exports.",
    )
    staging_headroom: float = Field(
        default=1.10, ge=1.0, description="Free space demanded = estimate x this."
    )
    merge_timeout: int = Field(
        default=3600, ge=1, le=86400, description="Seconds to wait for a checkpoint merge."
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    hooks: Hooks = Field(default_factory=Hooks)
    tags: list[str] = Field(default_factory=list, description="Labels stored with each backup.")
    name_prefix: Literal["hyperv-backup"] = "hyperv-backup"
    """Prefix of everything created on the host (checkpoints, staging folders)."""
