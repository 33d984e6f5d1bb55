"""An S3 bucket (AWS or S3-compatible), below an optional key prefix, as a target.

Opening the target checks the bucket, **probes** whether the server enforces conditional
writes (some S3-compatible servers accept ``If-None-Match`` and silently ignore it, which would
make repository locks worthless), and checks Object Lock when it is configured. What it found
is in :attr:`S3Target.capabilities`.

Object Lock retention is applied only to writes that pass ``retain_until``: locks and index
objects must stay replaceable and deletable, so ``object_lock_days`` is not a blanket default
for every key. It is offered as ``capabilities.default_retention``, which the repository (for
packs and snapshots) and the plain layout (for every backup file) turn into ``retain_until``.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from hyperv_backup.errors import TargetError
from hyperv_backup.targets import s3_multipart
from hyperv_backup.targets.base import DEFAULT_ABANDONED_AFTER, ObjectInfo, TargetCapabilities
from hyperv_backup.targets.s3_client import BOTO_ERRORS, S3Connection, connect

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

    from hyperv_backup.targets.settings import S3Settings

__all__ = ["PROBE_FOLDER", "S3Target"]

logger = logging.getLogger(__name__)

PROBE_FOLDER = ".hyperv-backup-probe/"
"""Where the conditional-write probe writes (below the prefix); hidden from :meth:`list`."""

# botocore retries failed requests, but not a body that breaks off after the headers came.
_BODY_ATTEMPTS = 3


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


class _ViewBody(io.RawIOBase):
    """A request body read straight from a buffer (botocore takes no memoryview): seekable,
    so a retried request re-sends it from the start."""

    def __init__(self, view: memoryview) -> None:
        self._view = view.cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        out = memoryview(buffer).cast("B")
        count = max(0, min(len(out), len(self._view) - self._position))
        out[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count


class S3Target:
    """Objects in ``settings.bucket`` below ``settings.prefix``. Use as a context manager, or
    call :meth:`close`, so unfinished multipart uploads are aborted."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._prefix = settings.key_prefix
        self._conn: S3Connection = connect(settings)
        self._client = self._conn.client
        self._uploads = s3_multipart.UploadRegistry()
        self._closed = False
        try:
            self._check_bucket()
            conditional = self._probe_conditional_writes()
            lock = self._check_object_lock()
        except BaseException:
            self._client.close()
            raise
        days = settings.object_lock_days
        self._capabilities = TargetCapabilities(
            conditional_writes=conditional,
            object_lock=lock,
            default_retention=timedelta(days=days) if days is not None else None,
        )

    def __repr__(self) -> str:
        return f"S3Target({self.settings.location!r})"

    def __enter__(self) -> S3Target:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def capabilities(self) -> TargetCapabilities:
        """As probed when the target was opened."""
        return self._capabilities

    # --- opening -------------------------------------------------------------------------

    def _check_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.settings.bucket)
        except BOTO_ERRORS as exc:
            failure = self._conn.describe(exc)
            if failure.kind == "absent":  # HEAD has no body, so no NoSuchBucket code
                failure = dataclasses.replace(failure, kind="no_bucket", code="NoSuchBucket")
            raise TargetError(self._conn.message(failure, "check", "the bucket")) from exc

    def _probe_conditional_writes(self) -> bool:
        """Write a fresh key twice with If-None-Match: only a refused second write proves
        the server enforces conditional writes."""
        key = self._full(PROBE_FOLDER + uuid.uuid4().hex)
        what = f"the conditional-write probe {key!r}"
        try:
            try:
                first = self._put_raw(key, b"probe", if_none_match=True)
                second = self._put_raw(key, b"probe", if_none_match=True)
            except BOTO_ERRORS as exc:
                failure = self._conn.describe(exc)
                if failure.kind == "denied":
                    logger.warning(
                        "could not probe conditional writes on %s: writing %r was refused "
                        "(%s). Treating them as unsupported: locks cannot be trusted.",
                        self.settings.location,
                        key,
                        failure.code,
                    )
                    return False
                if failure.kind in ("not_implemented", "other"):
                    logger.warning(
                        "the S3 server at %s rejects conditional writes (%s %s): locks "
                        "cannot be trusted on this server.",
                        self._conn.endpoint,
                        failure.status,
                        failure.code,
                    )
                    return False
                raise self._conn.error(exc, "write", what) from exc
        finally:
            try:
                self._delete_raw(key)
            except TargetError as err:  # a leftover probe is harmless; list() hides it
                logger.warning("could not delete the probe object: %s", err)
        enforced = first and not second
        if not enforced:
            logger.warning(
                "the S3 server at %s ignores conditional writes: a second If-None-Match write "
                "of %r succeeded. Repository locks cannot be trusted on this server; never run "
                "prune while another backup may write to %s.",
                self._conn.endpoint,
                key,
                self.settings.location,
            )
        return enforced

    def _check_object_lock(self) -> bool:
        required = self.settings.object_lock_days is not None
        enabled = False
        try:
            answer = self._client.get_object_lock_configuration(Bucket=self.settings.bucket)
            enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == (
                "Enabled"
            )
        except BOTO_ERRORS as exc:
            failure = self._conn.describe(exc)
            # Not configured, not implemented by the server, or not allowed to ask: all mean
            # "cannot use it", which is only an error when the settings ask for it.
            if required and failure.kind in ("denied", "unreachable", "timeout", "server"):
                what = "the bucket's Object Lock configuration"
                raise self._conn.error(exc, "read", what) from exc
            logger.debug("no usable Object Lock on %s: %s", self.settings.location, failure.code)
        if required and not enabled:
            raise TargetError(
                f"object_lock_days is set for {self.settings.location}, but the bucket "
                f"{self.settings.bucket!r} does not have Object Lock enabled. Object Lock can "
                "only be enabled on a versioned bucket (usually when it is created): use such "
                "a bucket, or remove object_lock_days from the target settings."
            )
        return enabled

    # --- keys ----------------------------------------------------------------------------

    def _full(self, key: str) -> str:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise TargetError(f"invalid object key {key!r}")
        return self._prefix + "/".join(parts)

    # --- writing -------------------------------------------------------------------------

    def _put_raw(
        self,
        full_key: str,
        data: bytes | memoryview,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bool:
        """One PUT; False if the server refused a condition. botocore errors propagate."""
        args: dict[str, Any] = dict(extra or {})
        if if_none_match:
            args["IfNoneMatch"] = "*"
        if if_match is not None:
            args["IfMatch"] = f'"{if_match}"'
        try:
            self._client.put_object(
                Bucket=self.settings.bucket,
                Key=full_key,
                Body=data if isinstance(data, bytes) else cast("IO[bytes]", _ViewBody(data)),
                ContentMD5=s3_multipart.content_md5(data),
                **args,
            )
        except BOTO_ERRORS as exc:
            failure = self._conn.describe(exc)
            if failure.kind in ("precondition", "conflict"):
                return False
            if failure.kind == "absent" and if_match is not None:
                return False  # If-Match on a missing key: nothing to compare with
            raise
        return True

    def _lock_args(self, retain_until: datetime | None) -> dict[str, Any]:
        # Only what the caller asks for: locks and index objects are replaced and deleted,
        # so a blanket default would pile up undeletable versions (and break nothing less).
        if retain_until is None:
            return {}
        if not self._capabilities.object_lock:
            # As on the local target: retention is a promise only some buckets can keep.
            logger.debug("ignoring retain_until: no Object Lock on %s", self.settings.location)
            return {}
        if retain_until.tzinfo is None:
            raise TargetError("retain_until must be a timezone-aware datetime")
        return {
            "ObjectLockMode": self.settings.object_lock_mode,
            "ObjectLockRetainUntilDate": retain_until,
        }

    def put(
        self,
        key: str,
        data: bytes | memoryview,
        *,
        if_absent: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        """One PUT (atomic on S3). ``if_absent`` sends ``If-None-Match: *``; a 412 means the
        key exists and returns False. ``retain_until`` sets Object Lock retention when the
        bucket supports it, and is ignored otherwise (see :attr:`capabilities`); without it
        the object is not retained (``object_lock_days`` is the callers' default, offered as
        ``capabilities.default_retention``)."""
        full = self._full(key)
        if if_absent and not self._capabilities.conditional_writes and self.stat(key):
            # Best effort on servers that ignore the header; racy, as capabilities say.
            return False
        try:
            return self._put_raw(
                full, data, if_none_match=if_absent, extra=self._lock_args(retain_until)
            )
        except BOTO_ERRORS as exc:
            raise self._conn.error(exc, "write", repr(key)) from exc

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        size: int,
        *,
        retain_until: datetime | None = None,
    ) -> None:
        """Store ``size`` bytes of ``stream``: one PUT up to ``multipart_threshold``, else a
        multipart upload with the part size from :func:`~.s3_multipart.part_size_for`, at most
        ``max_concurrency`` parts in memory, aborted on any failure. ``retain_until`` as for
        :meth:`put`."""
        full = self._full(key)
        if size <= self.settings.multipart_threshold:
            data = s3_multipart.read_exactly(stream, size, key=key, offset=0, total=size)
            self.put(key, data, retain_until=retain_until)
            return
        part_size = s3_multipart.part_size_for(size, self.settings.part_size)
        logger.debug("uploading %r (%d bytes) in parts of %d bytes", key, size, part_size)
        lock = self._lock_args(retain_until)
        s3_multipart.upload(
            self._conn, self._uploads, full, stream, size, part_size=part_size, extra=lock
        )
        if lock:
            self._ensure_retention(key, lock)

    def _ensure_retention(self, key: str, lock: dict[str, Any]) -> None:
        # Some servers (moto among them) drop the Object Lock headers of a multipart upload;
        # retention is a promise to the user, so check it and set it explicitly if missing.
        if self.retention(key) is not None:
            return
        try:
            self._client.put_object_retention(
                Bucket=self.settings.bucket,
                Key=self._full(key),
                Retention={
                    "Mode": lock["ObjectLockMode"],
                    "RetainUntilDate": lock["ObjectLockRetainUntilDate"],
                },
            )
        except BOTO_ERRORS as exc:
            raise self._conn.error(exc, "setting Object Lock retention", repr(key)) from exc

    def replace(self, key: str, data: bytes, *, if_etag: str) -> bool:
        """Overwrite ``key`` only if its etag is still ``if_etag`` (``If-Match``); False if
        it changed or vanished."""
        full = self._full(key)
        if not self._capabilities.conditional_writes:
            current = self.stat(key)  # best effort, racy: the server ignores If-Match
            if current is None or current.etag != _unquote(if_etag):
                return False
        try:
            return self._put_raw(full, data, if_match=_unquote(if_etag))
        except BOTO_ERRORS as exc:
            raise self._conn.error(exc, "conditional replace", repr(key)) from exc

    # --- reading -------------------------------------------------------------------------

    def _read(self, key: str, byte_range: str | None = None) -> tuple[bytes, bool]:
        """The body, and whether it is the requested range (False: the whole object)."""
        full = self._full(key)
        args: dict[str, Any] = {"Range": byte_range} if byte_range else {}
        for attempt in range(1, _BODY_ATTEMPTS + 1):
            try:
                answer = self._client.get_object(Bucket=self.settings.bucket, Key=full, **args)
            except BOTO_ERRORS as exc:
                failure = self._conn.describe(exc)
                if failure.kind == "absent":
                    raise FileNotFoundError(
                        f"no object {key!r} in {self.settings.location}"
                    ) from exc
                if failure.kind == "invalid_range" and byte_range:
                    return b"", True  # starts at or past the end, like reading past EOF
                raise self._conn.error(exc, "read", repr(key)) from exc
            body = answer["Body"]
            try:
                # A server that ignores Range answers 200 with the whole object.
                return body.read(), "ContentRange" in answer
            except BOTO_ERRORS as exc:
                failure = self._conn.describe(exc)
                if attempt == _BODY_ATTEMPTS or failure.kind not in ("interrupted", "timeout"):
                    raise self._conn.error(exc, "read", repr(key)) from exc
                logger.warning("reading %r broke off (%s); retrying", key, failure.code)
            finally:
                body.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, key: str) -> bytes:
        """The whole object; :class:`FileNotFoundError` if absent."""
        return self._read(key)[0]

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the object, none past it)."""
        if offset < 0 or length < 0:
            raise TargetError(f"invalid range {offset}+{length} for {key!r}")
        if length == 0:
            return b""
        data, ranged = self._read(key, f"bytes={offset}-{offset + length - 1}")
        return data if ranged else data[offset : offset + length]

    def _head(self, key: str) -> HeadObjectOutputTypeDef | None:
        try:
            return self._client.head_object(Bucket=self.settings.bucket, Key=self._full(key))
        except BOTO_ERRORS as exc:
            if self._conn.describe(exc).kind == "absent":
                return None
            raise self._conn.error(exc, "stat", repr(key)) from exc

    def stat(self, key: str) -> ObjectInfo | None:
        """Size, modification time and etag (unquoted) from a HEAD, or None if absent."""
        head = self._head(key)
        if head is None:
            return None
        return ObjectInfo(
            key=key,
            size=head["ContentLength"],
            modified=head.get("LastModified"),
            etag=_unquote(head.get("ETag")),
        )

    def retention(self, key: str) -> datetime | None:
        """The Object Lock retain-until date of ``key`` (None: none, or absent)."""
        head = self._head(key)
        return None if head is None else head.get("ObjectLockRetainUntilDate")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (paginated ListObjectsV2)."""
        paginator = self._client.get_paginator("list_objects_v2")
        cut = len(self._prefix)
        try:
            for page in paginator.paginate(
                Bucket=self.settings.bucket, Prefix=self._prefix + prefix
            ):
                for item in page.get("Contents", []):
                    key = item["Key"][cut:]
                    if key.startswith(PROBE_FOLDER):
                        continue
                    yield ObjectInfo(
                        key=key,
                        size=item["Size"],
                        modified=item.get("LastModified"),
                        etag=_unquote(item.get("ETag")),
                    )
        except BOTO_ERRORS as exc:
            raise self._conn.error(exc, "listing", f"keys starting with {prefix!r}") from exc

    # --- removing ------------------------------------------------------------------------

    def _delete_raw(self, full_key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.settings.bucket, Key=full_key)
        except BOTO_ERRORS as exc:
            if self._conn.describe(exc).kind != "absent":
                raise self._conn.error(exc, "delete", repr(full_key)) from exc

    def delete(self, key: str) -> None:
        """Remove ``key``; absent is fine. (With Object Lock this adds a delete marker; the
        retained version stays until its date.)"""
        self._delete_raw(self._full(key))

    def abort_incomplete_uploads(self, older_than: timedelta = DEFAULT_ABANDONED_AFTER) -> int:
        """Abort multipart uploads below the prefix started more than ``older_than`` ago —
        what killed processes left — except this target's own; returns how many."""
        cutoff = datetime.now(timezone.utc) - older_than
        paginator = self._client.get_paginator("list_multipart_uploads")
        aborted = 0
        try:
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=self._prefix):
                for item in page.get("Uploads", []):
                    key, upload_id = item.get("Key", ""), item.get("UploadId", "")
                    started = item.get("Initiated")
                    if (key, upload_id) in self._uploads:
                        continue
                    if started is not None and started > cutoff:
                        continue
                    if s3_multipart.abort(self._conn, key, upload_id):
                        aborted += 1
        except BOTO_ERRORS as exc:
            # rclone (gofakes3) answers NoSuchUpload instead of an empty list.
            if self._conn.describe(exc).kind != "absent":
                raise self._conn.error(exc, "listing", "unfinished multipart uploads") from exc
        return aborted

    def close(self) -> None:
        """Abort this target's unfinished multipart uploads and release the connections."""
        if self._closed:
            return
        self._closed = True
        for key, upload_id in self._uploads.snapshot():
            s3_multipart.abort(self._conn, key, upload_id)
            self._uploads.discard(key, upload_id)
        self._client.close()
