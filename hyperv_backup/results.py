"""What a backup job reports: per VM, and for the whole job.

Every VM result says what was requested and achieved (consistency), how (method, capture
mode), what was captured and what was excluded and why, bytes, time, retries, the pause, hook
outcomes, and — when it failed — the error. ``JobResult.exit_code`` is what the CLI exits with.
"""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hyperv_backup.consistency import CaptureMethod, ConsistencyLevel
from hyperv_backup.policy import CaptureMode, ConsistencyPolicy
from hyperv_backup.ps_scripts import FileRole

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "CapturedFile",
    "CleanupReport",
    "Exclusion",
    "HookOutcome",
    "JobResult",
    "JobStatus",
    "VMBackupResult",
    "VMStatus",
]

EXIT_OK = 0
"""Every selected VM was backed up, and nothing was left behind."""
EXIT_FAILURE = 1
"""Nothing was backed up (every VM failed, or the job could not start)."""
EXIT_USAGE = 2
"""Bad command line, settings or configuration file."""
EXIT_PARTIAL = 3
"""Some VMs were backed up and some failed, or warnings need attention (cleanup, hooks)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VMStatus(str, enum.Enum):
    """Outcome of one VM."""

    SUCCESS = "success"
    FAILED = "failed"


class JobStatus(str, enum.Enum):
    """Outcome of a job."""

    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"


class CapturedFile(_Model):
    """One file that is part of the backup."""

    relative_path: str = Field(description="Inside the Export-VM layout, '/'-separated.")
    host_path: str = Field(description="Where it was read on the host.")
    role: FileRole
    size: int = Field(ge=0)
    sha256: str | None = Field(
        default=None, description="SHA-256 of the file (plain layouts: `sha256sum`)."
    )
    blake3: str | None = Field(
        default=None, description="BLAKE3 of the file (repositories: `b3sum`)."
    )


class Exclusion(_Model):
    """Something of the VM that is not in the backup, why, and what to do about it."""

    item: str
    reason: str
    workarounds: list[str] = Field(default_factory=list)


class HookOutcome(_Model):
    """What a before/after command did."""

    phase: str
    hook: str
    ok: bool
    output: list[str] = Field(default_factory=list)
    error: str | None = None


class VMBackupResult(_Model):
    """The backup of one VM."""

    vm_name: str
    vm_id: str
    status: VMStatus = VMStatus.FAILED
    requested: ConsistencyPolicy
    achieved: ConsistencyLevel | None = None
    method: CaptureMethod | None = None
    consistency_reason: str = ""
    capture_mode: CaptureMode | None = None
    replication_role: str = "None"
    replication_suspended: bool = False
    files: list[CapturedFile] = Field(default_factory=list)
    excluded: list[Exclusion] = Field(default_factory=list)
    bytes: int = 0
    duration_seconds: float = 0.0
    pause_seconds: float | None = None
    retries: int = 0
    retry_reasons: list[str] = Field(default_factory=list)
    hooks: list[HookOutcome] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    location: str | None = Field(default=None, description="Where the backup was stored.")
    error: str | None = None
    error_type: str | None = None
    started_at: datetime
    finished_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """Backed up, with no warnings."""
        return self.status == VMStatus.SUCCESS and not self.warnings


class CleanupReport(_Model):
    """What a cleanup found and undid, and what it could not."""

    undone: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class JobResult(_Model):
    """A whole backup job."""

    job_id: str
    host: str
    status: JobStatus = JobStatus.FAILED
    vms: list[VMBackupResult] = Field(default_factory=list)
    hooks: list[HookOutcome] = Field(default_factory=list)
    cleanup: CleanupReport = Field(default_factory=CleanupReport)
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None
    started_at: datetime
    finished_at: datetime | None = None

    def settle(self) -> None:
        """Derive ``status`` from the VMs, hooks and warnings."""
        succeeded = [v for v in self.vms if v.status == VMStatus.SUCCESS]
        troubled = (
            self.error is not None
            or bool(self.warnings)
            or any(not h.ok for h in self.hooks)
            or any(not v.ok for v in self.vms)
        )
        if (self.error is not None and not succeeded) or not self.vms or not succeeded:
            self.status = JobStatus.FAILED
        elif troubled:
            self.status = JobStatus.PARTIAL
        else:
            self.status = JobStatus.SUCCESS

    @property
    def exit_code(self) -> int:
        """0 success, 3 partial success, 1 failure."""
        return {JobStatus.SUCCESS: EXIT_OK, JobStatus.PARTIAL: EXIT_PARTIAL}.get(
            self.status, EXIT_FAILURE
        )
