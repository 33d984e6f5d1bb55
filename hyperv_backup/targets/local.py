"""A local (or mounted) directory as a target: the embedded default.

Writes are atomic — a temporary file in the same directory, fsync, rename — so a crash never
leaves a half-written object under its real name. ``if_absent`` uses ``os.link`` of the
finished temporary file, which fails if the name exists: create-exclusive without a window.
A killed writer leaves only its ``.tmp-*`` file, which :meth:`LocalTarget.abort_incomplete_uploads`
removes later. Retention is not supported: ``retain_until`` is accepted and ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

from hyperv_backup.errors import TargetError
from hyperv_backup.targets.base import DEFAULT_ABANDONED_AFTER, ObjectInfo, TargetCapabilities

__all__ = ["LocalTarget"]

_COPY_CHUNK = 4 * 1024 * 1024
_TEMP_PREFIX = ".tmp-"


def _etag(path: Path) -> str:
    # Content hash: cheap for the small objects that use etags (locks, config).
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LocalTarget:
    """Objects as files under ``root`` (created if missing)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TargetError(f"cannot create the repository folder {self.root}: {err}") from err
        self._replace_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalTarget({str(self.root)!r})"

    @property
    def capabilities(self) -> TargetCapabilities:
        """Create-exclusive and compare-and-swap are atomic on a local file system."""
        return TargetCapabilities(conditional_writes=True, object_lock=False)

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise TargetError(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def _write_temp(self, path: Path, write: Callable[[BinaryIO], object]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        return Path(name)

    def put(
        self,
        key: str,
        data: bytes | memoryview,
        *,
        if_absent: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        """Atomic write; ``if_absent`` creates exclusively. ``retain_until`` is ignored."""
        path = self._path(key)
        try:
            tmp = self._write_temp(path, lambda out: out.write(data))
            try:
                if if_absent:
                    try:
                        os.link(tmp, path)
                    except FileExistsError:
                        return False
                else:
                    os.replace(tmp, path)
            finally:
                # After os.link the temporary name is an extra link; after os.replace, gone.
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            self._sync_dir(path.parent)
        except OSError as err:
            raise TargetError(f"cannot write {path}: {err.strerror or err}") from err
        return True

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        size: int,
        *,
        retain_until: datetime | None = None,
    ) -> None:
        """Atomic write of exactly ``size`` bytes of a stream. ``retain_until`` is ignored.
        An error reading ``stream`` propagates as it is (it is not the target's)."""
        path = self._path(key)
        source_error: list[BaseException] = []

        def copy(out: BinaryIO) -> None:
            left = size
            while left > 0:
                try:
                    data = stream.read(min(_COPY_CHUNK, left))
                except BaseException as err:
                    source_error.append(err)
                    raise
                if not data:
                    raise TargetError(
                        f"the stream for {key!r} ended after {size - left} of the {size} bytes "
                        "announced; nothing was stored."
                    )
                out.write(data)
                left -= len(data)

        try:
            tmp = self._write_temp(path, copy)
            os.replace(tmp, path)
            self._sync_dir(path.parent)
        except OSError as err:
            if source_error and err is source_error[0]:
                raise
            raise TargetError(f"cannot write {path}: {err.strerror or err}") from err

    def replace(self, key: str, data: bytes, *, if_etag: str) -> bool:
        """Compare-and-swap, serialised within this process (lock files are tiny)."""
        path = self._path(key)
        with self._replace_lock:
            try:
                if _etag(path) != if_etag:
                    return False
            except FileNotFoundError:
                return False
            self.put(key, data)
        return True

    def get(self, key: str) -> bytes:
        """The whole object."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as err:
            raise TargetError(f"cannot read {path}: {err.strerror or err}") from err

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """A byte range."""
        path = self._path(key)
        try:
            with path.open("rb") as stream:
                stream.seek(offset)
                return stream.read(length)
        except FileNotFoundError:
            raise
        except OSError as err:
            raise TargetError(f"cannot read {path}: {err.strerror or err}") from err

    def stat(self, key: str) -> ObjectInfo | None:
        """Size, time and etag, or None."""
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        modified = datetime.fromtimestamp(st.st_mtime, timezone.utc)
        etag = _etag(path) if st.st_size <= 1024 * 1024 else None
        return ObjectInfo(key=key, size=st.st_size, modified=modified, etag=etag)

    def retention(self, key: str) -> datetime | None:
        """Always None: a local folder cannot retain objects."""
        return None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (temporary files excluded)."""
        base = self.root
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(_TEMP_PREFIX):
                    continue
                full = Path(dirpath, name)
                key = full.relative_to(base).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    yield ObjectInfo(
                        key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc)
                    )

    def delete(self, key: str) -> None:
        """Remove; absent is fine."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def abort_incomplete_uploads(self, older_than: timedelta = DEFAULT_ABANDONED_AFTER) -> int:
        """Remove the temporary files of writes interrupted more than ``older_than`` ago
        (a killed process leaves them); how many."""
        cutoff = datetime.now(timezone.utc).timestamp() - older_than.total_seconds()
        removed = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(_TEMP_PREFIX):
                    continue
                path = Path(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime <= cutoff:
                        path.unlink()
                        removed += 1
        return removed

    def close(self) -> None:
        """Nothing to release."""

    @staticmethod
    def _sync_dir(folder: Path) -> None:
        # The rename is durable only once the directory entry is.
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
