"""The job report: a :class:`~hyperv_backup.results.JobResult` in a small envelope, as JSON.

The same document is the report file (``--report-file``) and the webhook's payload. Files are
written atomically — a temporary file in the same folder, fsync, rename — so a reader sees the
old report or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from hyperv_backup.backup import new_job_id
from hyperv_backup.consistency import ConsistencyLevel
from hyperv_backup.errors import HyperVBackupError
from hyperv_backup.results import JobResult, JobStatus, VMBackupResult, VMStatus

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "JobReport",
    "MonitoringError",
    "VMSummary",
    "failed_job_result",
    "tool_version",
    "write_atomically",
    "write_job_report",
]

REPORT_SCHEMA_VERSION = 1
"""Version of the :class:`JobReport` layout; raised when a field changes meaning or goes."""


class MonitoringError(HyperVBackupError):
    """A report or metrics file could not be written."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def tool_version() -> str:
    """This package's version."""
    import hyperv_backup  # noqa: PLC0415  (the package imports this module: resolve late)

    return hyperv_backup.__version__


def failed_job_result(
    host: str,
    error: BaseException | str,
    *,
    started_at: datetime | None = None,
    job_id: str | None = None,
) -> JobResult:
    """A failed :class:`JobResult` for a job that raised before it backed up any VM.

    Monitoring then records the failure (status failed, the error's message) like any other
    run, so an alert fires instead of the metrics silently going stale.
    """
    result = JobResult(
        job_id=job_id or new_job_id(),
        host=host,
        error=str(error),
        started_at=started_at or _now(),
        finished_at=_now(),
    )
    result.settle()
    return result


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VMSummary(_Model):
    """One VM of a report, at a glance; the details are in ``JobReport.result``."""

    name: str
    id: str
    status: VMStatus
    ok: bool = Field(description="Backed up with no warnings.")
    achieved: ConsistencyLevel | None
    location: str | None = Field(
        description="Where the backup is: '<repository id>:<snapshot id>' in a repository, "
        "a folder or an s3:// prefix for plain folders; None when the VM failed."
    )
    bytes: int
    duration_seconds: float
    retries: int
    error: str | None


class JobReport(_Model):
    """The report file and webhook payload: an envelope around the full job result."""

    schema_version: int = REPORT_SCHEMA_VERSION
    tool: str = "hyperv-backup"
    tool_version: str
    reported_by: str = Field(description="The machine that ran the job.")
    host: str = Field(description="The Hyper-V host backed up.")
    job_id: str
    status: JobStatus
    exit_code: int = Field(description="0 success, 3 partial, 1 failed: the command's exit code.")
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    error: str | None
    vms: list[VMSummary]
    result: JobResult

    @classmethod
    def of(cls, result: JobResult) -> JobReport:
        """The report of ``result`` (a job that has not set ``finished_at`` ends now)."""
        finished = result.finished_at or _now()
        return cls(
            tool_version=tool_version(),
            reported_by=socket.gethostname(),
            host=result.host,
            job_id=result.job_id,
            status=result.status,
            exit_code=result.exit_code,
            started_at=result.started_at,
            finished_at=finished,
            duration_seconds=max(0.0, (finished - result.started_at).total_seconds()),
            error=result.error,
            vms=[_summary(vm) for vm in result.vms],
            result=result,
        )

    def to_json(self) -> str:
        """The report as JSON text (indented, UTF-8 characters kept as they are)."""
        return self.model_dump_json(indent=2) + "\n"


def _summary(vm: VMBackupResult) -> VMSummary:
    return VMSummary(
        name=vm.vm_name,
        id=vm.vm_id,
        status=vm.status,
        ok=vm.ok,
        achieved=vm.achieved,
        location=vm.location,
        bytes=vm.bytes,
        duration_seconds=vm.duration_seconds,
        retries=vm.retries,
        error=vm.error,
    )


def write_job_report(result: JobResult, path: Path, *, report: JobReport | None = None) -> Path:
    """Write the :class:`JobReport` of ``result`` to ``path`` as JSON, atomically.

    Readers see the old file or the new one, never half of one. Raises
    :class:`MonitoringError` when the file cannot be written.
    """
    report = report or JobReport.of(result)
    write_atomically(Path(path), report.to_json().encode("utf-8"))
    return Path(path)


def _cannot_write(path: Path, err: OSError) -> str:
    return (
        f"could not write {path}: {err.strerror or err}. Check that this account may create "
        "files in that folder."
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temporary file in the same folder, fsync, rename, fsync
    the folder. Keeps the mode of the file replaced (a new one is 0644: node_exporter and
    other readers usually run as another user). Raises :class:`MonitoringError`."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = 0o644  # readable by node_exporter, which runs as another user
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as err:
        raise MonitoringError(_cannot_write(path, err)) from err
    if sys.platform != "win32":
        # The rename itself survives a crash only once the folder is synced.
        with contextlib.suppress(OSError):
            folder_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(folder_fd)
            finally:
                os.close(folder_fd)
