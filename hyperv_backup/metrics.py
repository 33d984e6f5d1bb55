"""Metrics of backup jobs for node_exporter's textfile collector (Prometheus).

One file may hold the series of several hosts and job names: each update rewrites only its
own (``host``, ``backup_job``) and keeps the others, under a lock beside the file, and replaces
the file atomically. Last success times survive failed runs: they are read back from the file.
``docs/monitoring.md`` lists every metric and its labels.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from hyperv_backup.exposition import Family, Sample, format_families, parse_samples
from hyperv_backup.job_report import MonitoringError, write_atomically
from hyperv_backup.results import JobResult, JobStatus, VMBackupResult, VMStatus

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

__all__ = ["METRIC_FAMILIES", "render_metrics", "write_metrics"]

logger = logging.getLogger(__name__)

_JOB = ("host", "backup_job")
_VM = ("host", "backup_job", "vm", "vm_id")
LAST_RUN = "hyperv_backup_last_run_timestamp_seconds"
LAST_SUCCESS = "hyperv_backup_last_success_timestamp_seconds"
VM_LAST_SUCCESS = "hyperv_backup_vm_last_success_timestamp_seconds"

METRIC_FAMILIES: tuple[Family, ...] = (
    Family(LAST_RUN, "When the last backup job finished (Unix time), whatever its outcome.", _JOB),
    Family(
        LAST_SUCCESS,
        "When the last fully successful backup job finished (Unix time); 0: never. "
        "Kept from earlier runs while jobs fail or only partly succeed.",
        _JOB,
    ),
    Family(
        "hyperv_backup_job_status",
        "Outcome of the last backup job: 0 success, 1 failed, 3 partial (the exit code).",
        _JOB,
    ),
    Family("hyperv_backup_job_duration_seconds", "How long the last backup job took.", _JOB),
    Family("hyperv_backup_job_bytes", "Bytes the last backup job captured, all VMs.", _JOB),
    Family("hyperv_backup_job_vms", "VMs of the last backup job by outcome.", (*_JOB, "status")),
    Family(
        "hyperv_backup_vm_status",
        "Outcome of the VM in the last job: 0 backed up, 1 failed, 3 backed up with warnings.",
        _VM,
    ),
    Family("hyperv_backup_vm_bytes", "Bytes of the VM captured by the last job.", _VM),
    Family("hyperv_backup_vm_duration_seconds", "How long the VM's backup took.", _VM),
    Family(
        "hyperv_backup_vm_retries",
        "Retries of the VM's backup after conflicting operations (e.g. Hyper-V Replica).",
        _VM,
    ),
    Family(
        VM_LAST_SUCCESS,
        "When the VM was last backed up (Unix time); 0: never. Kept while its backups fail.",
        _VM,
    ),
)
_KNOWN = frozenset(f.name for f in METRIC_FAMILIES)
_JOB_STATUS_VALUE = {JobStatus.SUCCESS: 0, JobStatus.FAILED: 1, JobStatus.PARTIAL: 3}


def _vm_status_value(vm: VMBackupResult) -> int:
    if vm.status != VMStatus.SUCCESS:
        return 1
    return 0 if vm.ok else 3


def _timestamp(moment: datetime | None, fallback: datetime) -> float:
    return (moment or fallback).timestamp()


def render_metrics(result: JobResult, *, job_name: str = "default", previous: str = "") -> str:
    """The metrics file's text after ``result``, given the file's ``previous`` text.

    Series of other hosts or job names in ``previous`` are kept as they were. For this host
    and job name everything is from ``result``, except the last success times of a job or VM
    that did not succeed this time: those are carried over from ``previous`` (0: never). When
    the job failed before any VM, every VM's last success time is carried over, so alerts on
    them keep working.
    """
    ours = {"host": result.host, "backup_job": job_name}
    earlier = [s for s in parse_samples(previous) if s.name in _KNOWN]
    mine = {(s.name, s.labels): s.value for s in earlier if _belongs(s, ours)}
    samples = [s for s in earlier if not _belongs(s, ours)]

    def carried(name: str, labels: dict[str, str]) -> float:
        return mine.get((name, Sample.of(name, labels, 0).labels), 0.0)

    finished = result.finished_at or datetime.now(timezone.utc)
    succeeded = result.status == JobStatus.SUCCESS
    samples += [
        Sample.of(LAST_RUN, ours, finished.timestamp()),
        Sample.of(
            LAST_SUCCESS,
            ours,
            finished.timestamp() if succeeded else carried(LAST_SUCCESS, ours),
        ),
        Sample.of("hyperv_backup_job_status", ours, _JOB_STATUS_VALUE[result.status]),
        Sample.of(
            "hyperv_backup_job_duration_seconds",
            ours,
            max(0.0, (finished - result.started_at).total_seconds()),
        ),
        Sample.of("hyperv_backup_job_bytes", ours, sum(v.bytes for v in result.vms)),
    ]
    for status in VMStatus:
        count = sum(1 for v in result.vms if v.status == status)
        samples.append(Sample.of("hyperv_backup_job_vms", {**ours, "status": status.value}, count))
    for vm in result.vms:
        labels = {**ours, "vm": vm.vm_name, "vm_id": vm.vm_id}
        last_success = (
            _timestamp(vm.finished_at, finished)
            if vm.status == VMStatus.SUCCESS
            else carried(VM_LAST_SUCCESS, labels)
        )
        samples += [
            Sample.of("hyperv_backup_vm_status", labels, _vm_status_value(vm)),
            Sample.of("hyperv_backup_vm_bytes", labels, vm.bytes),
            Sample.of("hyperv_backup_vm_duration_seconds", labels, vm.duration_seconds),
            Sample.of("hyperv_backup_vm_retries", labels, vm.retries),
            Sample.of(VM_LAST_SUCCESS, labels, last_success),
        ]
    if not result.vms:
        samples += [s for s in earlier if s.name == VM_LAST_SUCCESS and _belongs(s, ours)]
    return format_families(METRIC_FAMILIES, samples)


def _belongs(sample: Sample, ours: dict[str, str]) -> bool:
    return all(sample.label(name) == value for name, value in ours.items())


def write_metrics(result: JobResult, path: Path, *, job_name: str = "default") -> Path:
    """Update the metrics file at ``path`` with ``result``, atomically (see
    :func:`render_metrics` for what is kept from the file as it was).

    node_exporter reads only files named ``*.prom``. Jobs of other hosts or job names may
    share the file: a lock beside it (``.<name>.lock``) makes their updates take turns.
    Raises :class:`MonitoringError` when the file cannot be read or written.
    """
    path = Path(path)
    if path.suffix != ".prom":
        logger.warning("node_exporter's textfile collector reads only *.prom files, not %s", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(path.parent / f".{path.name}.lock"):
            try:
                previous = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                previous = ""
            text = render_metrics(result, job_name=job_name, previous=previous)
            write_atomically(path, text.encode("utf-8"))
    except OSError as err:
        raise MonitoringError(
            f"could not update {path}: {err.strerror or err}. Check that this account may "
            "create files in that folder."
        ) from err
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``, waited for (the holder keeps it for milliseconds)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if sys.platform == "win32":
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for 10 s, then OSError
        else:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock
