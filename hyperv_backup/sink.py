"""Where captured VM files go. The engine streams each file once into a sink.

:class:`DirectorySink` writes the Export-VM folder layout (``Virtual Machines/``,
``Virtual Hard Disks/``, ``Snapshots/``) under ``<root>/<job id>/<VM>/`` with a
``backup.json`` report written last — a folder without it is an incomplete backup — and
removes the folder of a VM whose backup failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from hyperv_backup.errors import TargetError
from hyperv_backup.models import VMInfo
from hyperv_backup.results import VMBackupResult

__all__ = ["CaptureSink", "DirectorySink", "FileDigest", "VMCapture", "safe_relative_path"]

logger = logging.getLogger(__name__)

_CHUNK = 4 * 1024 * 1024
REPORT_NAME = "backup.json"


@dataclass(frozen=True)
class FileDigest:
    """What was stored for one file: its size and a hash of all of it.

    A repository records BLAKE3 (what ``b3sum`` prints; a third of SHA-256's cost here);
    the plain layouts record SHA-256 (what ``sha256sum`` and ``Get-FileHash`` print).
    """

    size: int
    sha256: str | None = None
    blake3: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is None and self.blake3 is None:
            raise ValueError("a file digest needs its SHA-256 or its BLAKE3")


class VMCapture(Protocol):
    """One VM's backup being written."""

    def write_file(
        self,
        relative_path: str,
        stream: BinaryIO,
        progress: Callable[[int], None] | None = None,
    ) -> FileDigest:
        """Store ``stream`` (read to its end) at ``relative_path`` ('/'-separated)."""
        ...

    def commit(self, result: VMBackupResult) -> str:
        """Make the backup complete (report last); returns its location."""
        ...

    def abort(self) -> None:
        """Throw away what was written."""
        ...


class CaptureSink(Protocol):
    """A destination for VM backups."""

    def open_vm(self, job_id: str, vm: VMInfo, *, host: str, tags: Sequence[str] = ()) -> VMCapture:
        """Start storing one VM of job ``job_id`` taken on ``host``; ``tags`` label it."""
        ...


_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def safe_relative_path(relative_path: str) -> PurePosixPath:
    """A '/'-separated relative path with no '..', no root and no empty parts."""
    parts = [p for p in relative_path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise TargetError(f"refusing unsafe path {relative_path!r} in a backup")
    return PurePosixPath(*parts)


class _DirectoryCapture:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write_file(
        self,
        relative_path: str,
        stream: BinaryIO,
        progress: Callable[[int], None] | None = None,
    ) -> FileDigest:
        target = self.folder.joinpath(*safe_relative_path(relative_path).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        try:
            with target.open("wb") as out:
                while chunk := stream.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except OSError as err:
            raise TargetError(f"could not write {target}: {err.strerror or err}") from err
        return FileDigest(size=size, sha256=digest.hexdigest())

    def commit(self, result: VMBackupResult) -> str:
        report = self.folder / REPORT_NAME
        tmp = report.with_suffix(".tmp")
        tmp.write_text(result.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, report)
        return str(self.folder)

    def abort(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class DirectorySink:
    """Plain folders in Export-VM layout, one per VM and job, on a local or mounted disk."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DirectorySink({str(self.root)!r})"

    def open_vm(self, job_id: str, vm: VMInfo, *, host: str, tags: Sequence[str] = ()) -> VMCapture:
        """A fresh folder ``<root>/<job id>/<safe VM name>-<id prefix>``."""
        name = _FORBIDDEN.sub("_", vm.name).strip(" .") or "vm"
        folder = self.root / job_id / f"{name}-{str(vm.id)[:8]}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return _DirectoryCapture(folder)


def read_report(folder: Path) -> VMBackupResult:
    """The report of a completed backup folder (raises if it is incomplete)."""
    report = folder / REPORT_NAME
    if not report.exists():
        raise TargetError(f"{folder} holds no {REPORT_NAME}: the backup is incomplete")
    return VMBackupResult.model_validate(json.loads(report.read_text(encoding="utf-8")))
