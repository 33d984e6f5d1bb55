"""The plain layout: each VM's Export-VM folder as ordinary objects on a target.

For backups that any S3 tool (or a plain file copy) can fetch and ``Import-VM`` can use
directly, with no repository format in between — at the price of no dedup, compression or
client-side encryption (use the bucket's server-side encryption). Objects, on any
:class:`~hyperv_backup.targets.Target`::

    <prefix>/<host>/<VM name>/<job id>/Virtual Machines/<VM id>.vmcx
    <prefix>/<host>/<VM name>/<job id>/Virtual Hard Disks/<disk>.vhdx
    …
    <prefix>/<host>/<VM name>/<job id>/backup.json      the backup's report, written last

A folder without ``backup.json`` is an incomplete backup. Every file is streamed once
(``Target.put_stream``: S3 multipart for large files, at most a few parts in memory) and
hashed on the way; a VM whose backup fails has its objects removed. With a retention
(``retain_days``, or the S3 target's ``object_lock_days``) every object is written under
Object Lock, so nobody can delete the backup before it ends.

>>> sink = PlainSink(S3Target(settings), prefix="hyperv")                      # doctest: +SKIP
>>> BackupJob(connection, policy, sink=sink, reader=reader).run(selection)     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, BinaryIO

from hyperv_backup.errors import HyperVBackupError, TargetError
from hyperv_backup.models import VMInfo
from hyperv_backup.results import VMBackupResult
from hyperv_backup.sink import REPORT_NAME, FileDigest, VMCapture, safe_relative_path
from hyperv_backup.targets.base import Target, resolve_retention, retain_until_for
from hyperv_backup.targets.local import LocalTarget
from hyperv_backup.targets.s3 import S3Target

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["REPORT_NAME", "PlainSink"]

logger = logging.getLogger(__name__)

_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_COPY_CHUNK = 4 * 1024 * 1024


def _segment(name: str, fallback: str) -> str:
    """One key segment that is also a valid folder name on Windows and POSIX."""
    return _FORBIDDEN.sub("_", name).strip(" .") or fallback


def _remaining_size(stream: IO[bytes]) -> int | None:
    """How many bytes ``stream`` has left, when it can tell (a file, or seekable); else None."""
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        info = None
    try:
        if info is not None and stat.S_ISREG(info.st_mode):
            return max(0, info.st_size - stream.tell())
        if stream.seekable():
            here = stream.tell()
            end = stream.seek(0, io.SEEK_END)
            stream.seek(here)
            return max(0, end - here)
    except (AttributeError, OSError, ValueError):
        pass
    return None


class _DigestingReader(io.RawIOBase):
    """Hands out at most ``size`` bytes of ``source``, hashing and reporting them."""

    def __init__(
        self, source: IO[bytes], size: int, progress: Callable[[int], None] | None
    ) -> None:
        super().__init__()
        self._source = source
        self._left = size
        self._progress = progress
        self.hasher = hashlib.sha256()
        self.given = 0

    def readable(self) -> bool:
        """Always."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` from the source (straight into it when the source can)."""
        view = memoryview(buffer).cast("B")[: self._left]
        if not view:
            return 0
        readinto = getattr(self._source, "readinto", None)
        if readinto is not None:
            count = int(readinto(view) or 0)
        else:
            data = self._source.read(len(view))
            count = len(data)
            view[:count] = data
        if count:
            self.hasher.update(view[:count])
            self.given += count
            self._left -= count
            if self._progress is not None:
                self._progress(count)
        return count


class _PlainCapture:
    """One VM's folder being uploaded (the :class:`~hyperv_backup.sink.VMCapture`)."""

    def __init__(self, sink: PlainSink, folder: str) -> None:
        self._sink = sink
        self.folder = folder
        self._keys: list[str] = []
        self._state = "open"

    def __repr__(self) -> str:
        return f"PlainCapture({self.folder!r}, {self._state})"

    def _ensure_open(self) -> None:
        if self._state != "open":
            raise TargetError(f"the backup in {self.folder!r} is already {self._state}")

    def write_file(
        self,
        relative_path: str,
        stream: BinaryIO,
        progress: Callable[[int], None] | None = None,
    ) -> FileDigest:
        """Upload ``stream`` (read to its end) as ``<folder>/<relative_path>``."""
        self._ensure_open()
        relative = safe_relative_path(relative_path).as_posix()
        if relative.casefold() == REPORT_NAME:
            raise TargetError(f"refusing to store a file named {REPORT_NAME}: it is the report")
        key = f"{self.folder}/{relative}"
        self._keys.append(key)  # before the upload: abort removes it whatever happens
        target = self._sink.target
        size = _remaining_size(stream)
        with contextlib.ExitStack() as stack:
            source: IO[bytes] = stream
            if size is None:
                # A pipe: the size S3 needs up front is only known at its end. Spooled to a
                # temporary file (memory stays bounded); the engine's readers never get here.
                logger.info("%s: the stream has no size; spooling it to a temporary file", key)
                spool = stack.enter_context(tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY))
                while chunk := stream.read(_COPY_CHUNK):
                    spool.write(chunk)
                size = spool.tell()
                spool.seek(0)
                source = spool
            reader = _DigestingReader(source, size, progress)
            target.put_stream(
                key,
                io.BufferedReader(reader, buffer_size=1024 * 1024),
                size,
                retain_until=self._sink.retain_until(),
            )
        if source is stream and stream.read(1):
            raise TargetError(
                f"{relative} grew while it was read (more than the {size} bytes it had when "
                "its upload began): it was not frozen, so this backup would be inconsistent"
            )
        return FileDigest(size=reader.given, sha256=reader.hasher.hexdigest())

    def commit(self, result: VMBackupResult) -> str:
        """Write ``backup.json`` (last): the folder is now a complete backup; its location."""
        self._ensure_open()
        self._state = "committing"
        try:
            location = self._sink.location(self.folder)
            report = result.model_copy(update={"location": location})
            key = f"{self.folder}/{REPORT_NAME}"
            self._keys.append(key)
            self._sink.target.put(
                key,
                report.model_dump_json(indent=2).encode("utf-8"),
                retain_until=self._sink.retain_until(),
            )
        except BaseException:
            self._state = "failed"
            raise
        self._state = "committed"
        logger.info("%s: plain backup complete at %s", result.vm_name, location)
        return location

    def abort(self) -> None:
        """Remove every object of this backup (what was uploaded, and any leftover)."""
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        target = self._sink.target
        try:
            keys = set(self._keys) | {info.key for info in target.list(self.folder + "/")}
            for key in sorted(keys):
                target.delete(key)
        except HyperVBackupError as err:
            logger.warning(
                "could not remove the incomplete backup %s: %s (it has no %s, so it is "
                "recognisably incomplete; delete it by hand)",
                self.folder,
                err,
                REPORT_NAME,
            )


class PlainSink:
    """A capture sink writing each VM's Export-VM folder as plain objects; see the module.

    ``prefix`` is prepended to every key. ``retain_days``: Object Lock retention of every
    object (0: none); by default the target's (S3: ``object_lock_days``). On creation it
    removes what killed writers left on the target more than a day ago (unfinished uploads).
    Thread-safe: the engine writes several VMs at once.
    """

    def __init__(self, target: Target, prefix: str = "", *, retain_days: int | None = None) -> None:
        self.target = target
        parts = [p for p in prefix.replace("\\", "/").split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise TargetError(f"invalid prefix {prefix!r}")
        self.prefix = "/".join(parts)
        self.retention = resolve_retention(target, retain_days)
        self._lock = threading.Lock()
        self._folders: dict[str, str] = {}  # folder → id of the VM it holds (this sink's)
        try:
            target.abort_incomplete_uploads()
        except TargetError as err:
            logger.warning("could not look for unfinished uploads on %r: %s", target, err)

    def __repr__(self) -> str:
        return f"PlainSink({self.target!r}, prefix={self.prefix!r})"

    def retain_until(self) -> datetime | None:
        """The retain-until date of an object written now (None: no retention)."""
        return retain_until_for(self.retention)

    def folder(self, job_id: str, vm_name: str, *, host: str) -> str:
        """``<prefix>/<host>/<VM name>/<job id>``, each part made safe as a folder name."""
        parts = [
            self.prefix,
            _segment(host, "host"),
            _segment(vm_name, "vm"),
            _segment(job_id, "job"),
        ]
        return "/".join(p for p in parts if p)

    def open_vm(self, job_id: str, vm: VMInfo, *, host: str, tags: Sequence[str] = ()) -> VMCapture:
        """Start uploading one VM's folder (a VM's name is not unique on a host: a second VM
        of the same name in the same job gets ``<name>-<id prefix>``). Objects left in the
        folder by an earlier, unfinished attempt are removed first."""
        vm_id = str(vm.id)
        with self._lock:
            folder = self.folder(job_id, vm.name, host=host)
            if self._folders.setdefault(folder, vm_id) != vm_id:
                folder = self.folder(job_id, f"{vm.name}-{vm_id[:8]}", host=host)
                self._folders[folder] = vm_id
        for info in list(self.target.list(folder + "/")):
            self.target.delete(info.key)
        return _PlainCapture(self, folder)

    def location(self, folder: str) -> str:
        """Where a folder is, as users name it: ``s3://bucket/key/`` or a local path."""
        if isinstance(self.target, S3Target):
            settings = self.target.settings
            return f"s3://{settings.bucket}/{settings.key_prefix}{folder}/"
        if isinstance(self.target, LocalTarget):
            return str(self.target.root.joinpath(*folder.split("/")))
        return f"{folder}/ on {self.target!r}"
