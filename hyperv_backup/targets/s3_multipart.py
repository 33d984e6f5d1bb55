"""Multipart upload of one stream: part size from the object size, bounded memory, abort on error.

Parts are read from the stream one at a time and uploaded by a small pool; at most
``max_concurrency`` parts are in memory at once, whatever the object's size. Any failure —
of S3, of the stream, or an interrupt — aborts the upload, so no invisible half-object keeps
costing storage. A process killed outright cannot abort; :meth:`S3Target.abort_incomplete_uploads`
cleans those up later.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, BinaryIO

from s3transfer.utils import ChunksizeAdjuster

from hyperv_backup.errors import TargetError
from hyperv_backup.targets.s3_client import BOTO_ERRORS

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from hyperv_backup.targets.s3_client import S3Connection

__all__ = [
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "UploadRegistry",
    "abort",
    "content_md5",
    "part_size_for",
    "read_exactly",
    "upload",
]

logger = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024**4

_ADJUSTER = ChunksizeAdjuster(max_size=MAX_PART_SIZE, min_size=MIN_PART_SIZE, max_parts=MAX_PARTS)


def part_size_for(size: int, preferred: int) -> int:
    """The part size for an object of ``size`` bytes: ``preferred``, doubled until the object
    fits in 10,000 parts, within S3's 5 MiB to 5 GiB part limits (s3transfer's rule)."""
    if size > MAX_OBJECT_SIZE:
        raise TargetError(f"an object of {size} bytes exceeds S3's 5 TiB limit")
    return int(_ADJUSTER.adjust_chunksize(preferred, size))


def content_md5(data: bytes | memoryview) -> str:
    """Base64 MD5 for the Content-MD5 header: every S3 server checks it, and Object Lock
    writes require it (we do not rely on boto3's CRC checksums for non-AWS servers)."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class UploadRegistry:
    """Multipart uploads this process has open, so ``close()`` can abort them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[tuple[str, str]] = set()

    def add(self, key: str, upload_id: str) -> None:
        """Remember an upload that has been created."""
        with self._lock:
            self._open.add((key, upload_id))

    def discard(self, key: str, upload_id: str) -> None:
        """Forget an upload that was completed or aborted."""
        with self._lock:
            self._open.discard((key, upload_id))

    def snapshot(self) -> list[tuple[str, str]]:
        """The uploads open right now."""
        with self._lock:
            return sorted(self._open)

    def __contains__(self, item: tuple[str, str]) -> bool:
        with self._lock:
            return item in self._open


def read_exactly(stream: BinaryIO, length: int, *, key: str, offset: int, total: int) -> bytes:
    """``length`` bytes from ``stream`` (the part at ``offset`` of ``total``), or a
    :class:`TargetError` if the stream ends first."""
    data = stream.read(length)
    if len(data) < length:
        # Pipes and sockets may return short reads; only EOF is a real end.
        buffer = bytearray(data)
        while len(buffer) < length:
            more = stream.read(length - len(buffer))
            if not more:
                raise TargetError(
                    f"the stream for {key!r} ended after {offset + len(buffer)} of the "
                    f"{total} bytes announced; nothing was stored."
                )
            buffer += more
        data = bytes(buffer)
    return data


def upload(
    conn: S3Connection,
    registry: UploadRegistry,
    key: str,
    stream: BinaryIO,
    size: int,
    *,
    part_size: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Upload ``size`` bytes of ``stream`` to the full object key ``key`` in parts."""
    client, bucket = conn.client, conn.settings.bucket
    try:
        created = client.create_multipart_upload(Bucket=bucket, Key=key, **(extra or {}))
    except BOTO_ERRORS as exc:
        raise conn.error(exc, "starting a multipart upload", repr(key)) from exc
    upload_id = created["UploadId"]
    registry.add(key, upload_id)
    try:
        parts = _send_parts(conn, key, upload_id, stream, size=size, part_size=part_size)
        try:
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BOTO_ERRORS as exc:
            raise conn.error(exc, "completing the multipart upload", repr(key)) from exc
    except BaseException:
        abort(conn, key, upload_id)
        raise
    finally:
        registry.discard(key, upload_id)


def abort(conn: S3Connection, key: str, upload_id: str) -> bool:
    """Abort one upload; False (logged) if that failed — the cleanup command retries later."""
    try:
        conn.client.abort_multipart_upload(Bucket=conn.settings.bucket, Key=key, UploadId=upload_id)
    except BOTO_ERRORS as exc:
        if conn.describe(exc).kind == "absent":
            return True  # already gone (completed, or aborted by close())
        logger.warning(
            "could not abort the multipart upload of %r in %s (%s); "
            "'abort_incomplete_uploads' will remove it later",
            key,
            conn.settings.location,
            conn.describe(exc).code,
        )
        return False
    logger.info("aborted the unfinished multipart upload of %r", key)
    return True


def _send_parts(
    conn: S3Connection, key: str, upload_id: str, stream: BinaryIO, *, size: int, part_size: int
) -> list[CompletedPartTypeDef]:
    client, bucket = conn.client, conn.settings.bucket
    workers = conn.settings.max_concurrency

    def send(number: int, data: bytes) -> CompletedPartTypeDef:
        try:
            answer = client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=content_md5(data),
            )
        except BOTO_ERRORS as exc:
            raise conn.error(exc, f"upload of part {number}", repr(key)) from exc
        return {"PartNumber": number, "ETag": answer["ETag"]}

    done: list[CompletedPartTypeDef] = []
    pending: set[Future[CompletedPartTypeDef]] = set()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-part")
    try:
        offset, number = 0, 1
        while offset < size:
            # Read the next part only when a worker is free: memory stays at
            # max_concurrency parts, not the object.
            while len(pending) >= workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                done.extend(f.result() for f in finished)
            length = min(part_size, size - offset)
            data = read_exactly(stream, length, key=key, offset=offset, total=size)
            pending.add(executor.submit(send, number, data))
            del data  # the future holds the only reference
            offset += length
            number += 1
        done.extend(f.result() for f in wait(pending).done)
    finally:
        # On failure: drop queued parts and let running ones finish before the caller
        # aborts, so no part lands after the abort.
        for future in pending:
            future.cancel()
        with contextlib.suppress(Exception):
            executor.shutdown(wait=True, cancel_futures=True)
    return sorted(done, key=lambda part: part["PartNumber"])
