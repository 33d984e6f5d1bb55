"""The S3 target against real S3 servers on loopback: moto (enforces conditional writes) and
``rclone serve s3`` (ignores them), plus the local target where the contract is the same.

Fault injection puts a small HTTP proxy between boto3 and moto; it answers 500, 503 SlowDown,
stalls past the read timeout, or cuts a body short, for the first N matching requests.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, TypeAdapter, ValidationError

from hyperv_backup.errors import TargetError
from hyperv_backup.targets import (
    LocalTarget,
    S3Settings,
    S3Target,
    Target,
    TargetSettings,
    open_target,
)
from hyperv_backup.targets.s3_multipart import MAX_PARTS, part_size_for
from tests.s3_servers import (
    SECRET_KEY,
    Fault,
    FaultProxy,
    MotoS3,
    RcloneS3,
    free_port,
    new_bucket,
    open_uploads,
    raw_client,
    settings_for,
)

MIB = 1024 * 1024
PREFIX = "repo/one"
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(params=["moto", "rclone"])
def server(request: pytest.FixtureRequest) -> MotoS3 | RcloneS3:
    """Each real S3 server in turn."""
    fixture = {"moto": "moto_s3", "rclone": "rclone_s3"}[request.param]
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture
def bucket(server: MotoS3 | RcloneS3) -> str:
    """A fresh bucket on the server under test."""
    return new_bucket(server.endpoint)


@pytest.fixture
def make_s3() -> Iterator[Callable[..., S3Target]]:
    """Open S3 targets; all closed at the end of the test."""
    opened: list[S3Target] = []

    def make(endpoint: str, bucket: str, **overrides: Any) -> S3Target:
        target = S3Target(settings_for(endpoint, bucket, **{"prefix": PREFIX, **overrides}))
        opened.append(target)
        return target

    yield make
    for target in opened:
        target.close()


@pytest.fixture(params=["local", "moto", "rclone"])
def target(
    request: pytest.FixtureRequest, tmp_path: Path, make_s3: Callable[..., S3Target]
) -> Target:
    """Every kind of target, for the protocol's contract."""
    if request.param == "local":
        return LocalTarget(tmp_path / "repo")
    server: MotoS3 | RcloneS3 = request.getfixturevalue(f"{request.param}_s3")
    return make_s3(server.endpoint, new_bucket(server.endpoint))


_PERIOD = MIB + 7  # not a divisor of any part size, so misplaced parts change the bytes
_BLOCK = random.Random(7).randbytes(_PERIOD)


def pattern(offset: int, length: int) -> bytes:
    """The reproducible test content at ``offset``: independent of how it is read."""
    pieces = []
    while length > 0:
        start = offset % _PERIOD
        piece = _BLOCK[start : start + length]
        pieces.append(piece)
        offset += len(piece)
        length -= len(piece)
    return b"".join(pieces)


class PatternStream:
    """``size`` bytes of :func:`pattern`, made as they are read (never all in memory);
    ``sha256`` is the digest of everything handed out so far."""

    def __init__(self, size: int, *, fail_after: int | None = None) -> None:
        self._size = size
        self._fail_after = fail_after
        self.given = 0
        self.hasher = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self._fail_after is not None and self.given >= self._fail_after:
            raise OSError("injected: the source disk went away")
        left = self._size - self.given
        n = left if n < 0 else min(n, left)
        data = pattern(self.given, n)
        self.given += n
        self.hasher.update(data)
        return data


# --- the protocol's contract, on every target -----------------------------------------


def test_put_then_get_returns_the_bytes_and_stat_their_size(target: Target) -> None:
    assert target.put("data/ab/ab12", b"chunk bytes") is True
    assert target.get("data/ab/ab12") == b"chunk bytes"
    info = target.stat("data/ab/ab12")
    assert info is not None
    assert (info.key, info.size) == ("data/ab/ab12", 11)
    assert info.etag


def test_missing_object_is_file_not_found_for_get_and_none_for_stat(target: Target) -> None:
    with pytest.raises(FileNotFoundError):
        target.get("snapshots/none")
    with pytest.raises(FileNotFoundError):
        target.get_range("snapshots/none", 0, 10)
    assert target.stat("snapshots/none") is None
    target.delete("snapshots/none")  # absent is not an error


def test_get_range_returns_the_slice_short_at_the_end_and_empty_past_it(target: Target) -> None:
    target.put("packs/p1", bytes(range(100)))
    assert target.get_range("packs/p1", 10, 5) == bytes(range(10, 15))
    assert target.get_range("packs/p1", 95, 10) == bytes(range(95, 100))
    assert target.get_range("packs/p1", 100, 10) == b""
    assert target.get_range("packs/p1", 3, 0) == b""


def test_list_finds_keys_by_prefix(target: Target) -> None:
    for key in ("data/aa/1", "data/ab/2", "snapshots/s1"):
        target.put(key, b"x")
    assert {i.key for i in target.list("data/")} == {"data/aa/1", "data/ab/2"}
    assert {i.key for i in target.list("data/a")} == {"data/aa/1", "data/ab/2"}
    assert {i.key for i in target.list()} == {"data/aa/1", "data/ab/2", "snapshots/s1"}
    assert all(i.size == 1 for i in target.list())


def test_delete_removes_the_object(target: Target) -> None:
    target.put("locks/l", b"x")
    target.delete("locks/l")
    assert target.stat("locks/l") is None
    assert list(target.list("locks/")) == []


def test_put_if_absent_writes_only_the_first_time(target: Target) -> None:
    assert target.put("locks/exclusive", b"first", if_absent=True) is True
    assert target.put("locks/exclusive", b"second", if_absent=True) is False
    assert target.get("locks/exclusive") == b"first"


def test_replace_swaps_only_while_the_etag_is_unchanged(target: Target) -> None:
    target.put("locks/shared", b"v1")
    first = target.stat("locks/shared")
    assert first is not None
    assert first.etag
    assert target.replace("locks/shared", b"nope", if_etag="0" * 32) is False
    assert target.get("locks/shared") == b"v1"
    assert target.replace("locks/shared", b"v2", if_etag=first.etag) is True
    assert target.get("locks/shared") == b"v2"
    assert target.replace("locks/shared", b"v3", if_etag=first.etag) is False  # stale etag
    assert target.get("locks/shared") == b"v2"
    assert target.replace("locks/missing", b"v1", if_etag=first.etag) is False


def test_small_stream_is_stored_whole(target: Target) -> None:
    stream = PatternStream(100_000)
    target.put_stream("packs/small", stream, 100_000)  # type: ignore[arg-type]
    assert hashlib.sha256(target.get("packs/small")).digest() == stream.hasher.digest()


# --- S3 specifics -----------------------------------------------------------------------


def test_s3_objects_live_below_the_prefix_and_outside_objects_are_not_listed(
    server: MotoS3 | RcloneS3, bucket: str, make_s3: Callable[..., S3Target]
) -> None:
    raw = raw_client(server.endpoint)
    raw.put_object(Bucket=bucket, Key="elsewhere/x", Body=b"not ours")
    target = make_s3(server.endpoint, bucket)
    target.put("config", b"c")
    keys = {o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {"elsewhere/x", f"{PREFIX}/config"}  # the probe cleaned up after itself
    assert [i.key for i in target.list()] == ["config"]


def test_invalid_keys_are_refused(target: Target) -> None:
    for key in ("", "/", "a/../b", "./a"):
        with pytest.raises(TargetError, match="invalid object key"):
            target.put(key, b"x")


def test_large_stream_round_trips_through_multipart_upload(
    server: MotoS3 | RcloneS3, bucket: str, make_s3: Callable[..., S3Target]
) -> None:
    target = make_s3(
        server.endpoint, bucket, part_size=5 * MIB, multipart_threshold=5 * MIB, max_concurrency=3
    )
    size = 40 * MIB + 123  # 9 parts, the last a short one
    stream = PatternStream(size)
    target.put_stream("packs/big", stream, size)  # type: ignore[arg-type]
    info = target.stat("packs/big")
    assert info is not None
    assert info.size == size
    if server.name == "moto":
        assert info.etag
        assert info.etag.endswith("-9")
    assert hashlib.sha256(target.get("packs/big")).digest() == stream.hasher.digest()
    assert target.get_range("packs/big", 5 * MIB - 2, 4) == pattern(5 * MIB - 2, 4)
    assert open_uploads(server.endpoint, bucket) == []
    target.delete("packs/big")  # moto keeps everything in memory


def test_multipart_upload_holds_only_a_few_parts_in_memory(
    rclone_s3: RcloneS3, make_s3: Callable[..., S3Target]
) -> None:
    # rclone runs in its own process, so tracemalloc sees only the client side.
    target = make_s3(
        rclone_s3.endpoint,
        new_bucket(rclone_s3.endpoint),
        part_size=5 * MIB,
        multipart_threshold=5 * MIB,
        max_concurrency=2,
    )
    size = 40 * MIB
    tracemalloc.start()
    try:
        target.put_stream("packs/big", PatternStream(size), size)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Two parts in flight plus the one being read, at most: 15 MiB, not 40 (seen: ~12 MiB).
    assert peak < 15 * MIB, f"peak {peak / MIB:.1f} MiB for a 40 MiB object"
    assert target.stat("packs/big") is not None


@pytest.mark.parametrize(
    ("size", "preferred", "expected"),
    [
        (40 * MIB, 8 * MIB, 8 * MIB),
        (MAX_PARTS * 8 * MIB, 8 * MIB, 8 * MIB),  # exactly 10,000 parts still fits
        (MAX_PARTS * 8 * MIB + 1, 8 * MIB, 16 * MIB),
        (1024**4, 8 * MIB, 128 * MIB),  # 1 TiB: 8,192 parts of 128 MiB
        (5 * 1024**4, 8 * MIB, 1024 * MIB),  # 5 TiB, S3's maximum: 5,120 parts of 1 GiB
        (10 * MIB, 1 * MIB, 5 * MIB),  # never below S3's 5 MiB minimum
    ],
)
def test_part_size_grows_to_keep_within_ten_thousand_parts(
    size: int, preferred: int, expected: int
) -> None:
    part = part_size_for(size, preferred)
    assert part == expected
    assert -(-size // part) <= MAX_PARTS


def test_objects_over_five_tebibytes_are_refused() -> None:
    with pytest.raises(TargetError, match="5 TiB"):
        part_size_for(5 * 1024**4 + 1, 8 * MIB)


def test_a_failing_stream_aborts_its_multipart_upload(
    server: MotoS3 | RcloneS3, bucket: str, make_s3: Callable[..., S3Target]
) -> None:
    target = make_s3(server.endpoint, bucket, part_size=5 * MIB, multipart_threshold=5 * MIB)
    stream = PatternStream(20 * MIB, fail_after=10 * MIB)
    with pytest.raises(OSError, match="source disk went away"):
        target.put_stream("packs/broken", stream, 20 * MIB)  # type: ignore[arg-type]
    assert open_uploads(server.endpoint, bucket) == []
    assert target.stat("packs/broken") is None


def test_a_stream_shorter_than_announced_stores_nothing(
    server: MotoS3 | RcloneS3, bucket: str, make_s3: Callable[..., S3Target]
) -> None:
    target = make_s3(server.endpoint, bucket, part_size=5 * MIB, multipart_threshold=5 * MIB)
    with pytest.raises(TargetError, match="ended after"):
        target.put_stream("packs/short", PatternStream(7 * MIB), 12 * MIB)  # type: ignore[arg-type]
    assert open_uploads(server.endpoint, bucket) == []
    assert target.stat("packs/short") is None


_KILLED_WRITER = """
import os, sys
from hyperv_backup.targets import S3Target
from tests.s3_servers import settings_for

class DiesAfterTwoParts:
    reads = 0
    def read(self, n):
        self.reads += 1
        if self.reads > 2:
            os._exit(9)  # like a killed process: no except, no finally, no abort
        return b"x" * n

settings = settings_for(sys.argv[1], sys.argv[2], prefix="repo/one", part_size=5 << 20,
                        multipart_threshold=5 << 20, max_concurrency=1)
S3Target(settings).put_stream("packs/orphan", DiesAfterTwoParts(), 20 << 20)
"""


def test_uploads_a_killed_process_left_are_found_and_aborted(
    server: MotoS3 | RcloneS3, bucket: str, make_s3: Callable[..., S3Target]
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, server.endpoint, bucket],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == 9, killed.stderr.decode()[-2000:]
    assert [u["Key"] for u in open_uploads(server.endpoint, bucket)] == [f"{PREFIX}/packs/orphan"]

    target = make_s3(server.endpoint, bucket)
    if server.name == "rclone":  # moto dates every upload 2010, so only rclone can show this
        assert target.abort_incomplete_uploads() == 0  # a fresh upload may still be running
    assert target.abort_incomplete_uploads(older_than=timedelta(0)) == 1
    assert open_uploads(server.endpoint, bucket) == []
    assert target.stat("packs/orphan") is None


def test_close_aborts_an_upload_still_in_progress(
    server: MotoS3 | RcloneS3, bucket: str, make_s3: Callable[..., S3Target]
) -> None:
    # moto answers 500 for a part of an aborted upload: retrying that would only waste time.
    target = make_s3(
        server.endpoint, bucket, part_size=5 * MIB, multipart_threshold=5 * MIB, max_attempts=1
    )
    release = threading.Event()

    class Stalls(PatternStream):
        def read(self, n: int = -1) -> bytes:
            if self.given:  # after the first part
                release.wait(30)
            return super().read(n)

    failure: list[BaseException] = []

    def write() -> None:
        try:
            target.put_stream("packs/slow", Stalls(20 * MIB), 20 * MIB)  # type: ignore[arg-type]
        except BaseException as err:
            failure.append(err)

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 10
    while not open_uploads(server.endpoint, bucket) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_uploads(server.endpoint, bucket), "the upload never started"
    target.close()
    assert open_uploads(server.endpoint, bucket) == []
    release.set()
    writer.join(30)
    assert failure, "the interrupted upload must not report success"
    assert raw_client(server.endpoint).list_objects_v2(Bucket=bucket).get("Contents", []) == []


# --- the conditional-write probe ---------------------------------------------------------


def test_probe_finds_moto_enforces_conditional_writes(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hyperv_backup"):
        target = make_s3(moto_s3.endpoint, new_bucket(moto_s3.endpoint))
    assert target.capabilities.conditional_writes is True
    assert "conditional writes" not in caplog.text


def test_probe_finds_rclone_ignores_conditional_writes_and_warns(
    rclone_s3: RcloneS3, make_s3: Callable[..., S3Target], caplog: pytest.LogCaptureFixture
) -> None:
    bucket = new_bucket(rclone_s3.endpoint)
    with caplog.at_level(logging.WARNING, logger="hyperv_backup"):
        target = make_s3(rclone_s3.endpoint, bucket)
    assert target.capabilities.conditional_writes is False
    assert "ignores conditional writes" in caplog.text
    assert "locks cannot be trusted" in caplog.text.lower()
    assert raw_client(rclone_s3.endpoint).list_objects_v2(Bucket=bucket).get("Contents", []) == []


# --- Object Lock -------------------------------------------------------------------------


def test_object_lock_retention_is_set_and_readable_on_moto(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target]
) -> None:
    bucket = new_bucket(moto_s3.endpoint, object_lock=True)
    target = make_s3(moto_s3.endpoint, bucket, object_lock_days=7)
    assert target.capabilities.object_lock is True
    until = (datetime.now(timezone.utc) + timedelta(days=7)).replace(microsecond=0)
    target.put("snapshots/s1", b"manifest", retain_until=until)
    head = raw_client(moto_s3.endpoint).head_object(Bucket=bucket, Key=f"{PREFIX}/snapshots/s1")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    assert target.retention("snapshots/s1") == until
    assert target.get("snapshots/s1") == b"manifest"


def test_object_lock_days_are_a_default_callers_apply_not_a_blanket_one(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target]
) -> None:
    # Locks and index objects are replaced and deleted: they must never be retained. So
    # object_lock_days is offered to callers (capabilities.default_retention), and only
    # writes that pass retain_until — multipart packs included — are retained.
    bucket = new_bucket(moto_s3.endpoint, object_lock=True)
    target = make_s3(
        moto_s3.endpoint,
        bucket,
        object_lock_days=3,
        object_lock_mode="COMPLIANCE",
        part_size=5 * MIB,
        multipart_threshold=5 * MIB,
    )
    assert target.capabilities.default_retention == timedelta(days=3)
    until = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0)
    target.put("locks/l1", b"lock")
    target.put("index/i1", b"index")
    for key, size in (("packs/small", 1000), ("packs/p1", 11 * MIB)):  # a PUT, a multipart
        target.put_stream(key, PatternStream(size), size, retain_until=until)  # type: ignore[arg-type]
    raw = raw_client(moto_s3.endpoint)
    for key in ("locks/l1", "index/i1"):
        assert "ObjectLockMode" not in raw.head_object(Bucket=bucket, Key=f"{PREFIX}/{key}")
        assert target.retention(key) is None
    for key in ("packs/small", "packs/p1"):
        head = raw.head_object(Bucket=bucket, Key=f"{PREFIX}/{key}")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert target.retention(key) == until
    lock = target.stat("locks/l1")
    assert lock is not None
    assert lock.etag
    assert target.replace("locks/l1", b"lock 2", if_etag=lock.etag)  # replaceable
    target.delete("locks/l1")
    assert target.stat("locks/l1") is None
    target.delete("packs/p1")  # a delete marker; the retained version stays
    assert target.stat("packs/p1") is None


def test_object_lock_settings_need_a_bucket_with_object_lock(
    server: MotoS3 | RcloneS3, bucket: str
) -> None:
    with pytest.raises(TargetError, match="does not have Object Lock enabled"):
        S3Target(settings_for(server.endpoint, bucket, object_lock_days=7))


def test_retention_is_ignored_where_the_bucket_cannot_keep_it(
    server: MotoS3 | RcloneS3, bucket: str, make_s3: Callable[..., S3Target]
) -> None:
    target = make_s3(server.endpoint, bucket)
    assert target.capabilities.object_lock is False
    until = datetime.now(timezone.utc) + timedelta(days=1)
    assert target.put("snapshots/s1", b"m", retain_until=until) is True
    assert target.retention("snapshots/s1") is None


# --- errors ------------------------------------------------------------------------------


def test_a_missing_bucket_is_named_in_the_error(server: MotoS3 | RcloneS3) -> None:
    with pytest.raises(TargetError, match=r"bucket 'no-such-bucket' does not exist"):
        S3Target(settings_for(server.endpoint, "no-such-bucket"))


def test_wrong_credentials_say_where_they_came_from_but_not_the_secret(
    rclone_s3: RcloneS3, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = new_bucket(rclone_s3.endpoint)
    wrong = "wrong-secret-must-never-be-shown"
    settings = settings_for(rclone_s3.endpoint, bucket, secret_access_key=SecretStr(wrong))
    with caplog.at_level(logging.DEBUG), pytest.raises(TargetError) as caught:
        S3Target(settings)
    message = str(caught.value)
    assert "access was refused" in message
    assert "the access key in the target settings" in message
    assert wrong not in message
    assert wrong not in caplog.text
    assert wrong not in repr(settings)
    assert SECRET_KEY not in message


def test_an_unreachable_endpoint_fails_after_bounded_attempts() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(endpoint, "bucket", max_attempts=2, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(TargetError, match=r"cannot connect to http://127\.0\.0\.1"):
        S3Target(settings)
    assert time.monotonic() - started < 10


# --- settings ----------------------------------------------------------------------------


def test_settings_demand_both_halves_of_an_access_key() -> None:
    with pytest.raises(ValidationError, match="both access_key_id and secret_access_key"):
        S3Settings(bucket="bkt", access_key_id=SecretStr("AKIA"))
    with pytest.raises(ValidationError, match="profile or access keys"):
        S3Settings(
            bucket="bkt",
            profile="p",
            access_key_id=SecretStr("a"),
            secret_access_key=SecretStr("b"),
        )


def test_settings_normalise_the_prefix_and_recognise_aws() -> None:
    assert S3Settings(bucket="bkt", prefix="/a//b/").key_prefix == "a/b/"
    assert S3Settings(bucket="bkt").key_prefix == ""
    assert S3Settings(bucket="bkt").is_aws
    assert S3Settings(bucket="bkt", endpoint_url="https://s3.eu-west-1.amazonaws.com").is_aws
    assert not S3Settings(bucket="bkt", endpoint_url="http://127.0.0.1:9000").is_aws


def test_open_target_follows_the_kind_in_a_config_file(tmp_path: Path, moto_s3: MotoS3) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(TargetSettings)
    local = open_target(adapter.validate_python({"kind": "local", "path": str(tmp_path)}))
    assert isinstance(local, LocalTarget)
    bucket = new_bucket(moto_s3.endpoint)
    config = {
        "kind": "s3",
        "bucket": bucket,
        "endpoint_url": moto_s3.endpoint,
        "access_key_id": "test",
        "secret_access_key": "test-secret",
    }
    s3 = open_target(adapter.validate_python(config))
    try:
        assert isinstance(s3, S3Target)
        assert s3.capabilities.conditional_writes is True
        assert "test-secret" not in repr(s3.settings)
    finally:
        s3.close()


# --- fault injection: a proxy between boto3 and moto ------------------------------------


@pytest.fixture
def proxied(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target]
) -> Iterator[tuple[FaultProxy, S3Target]]:
    """A target talking to moto through a :class:`FaultProxy` (read timeout 1 s, 4 attempts)."""
    with FaultProxy(moto_s3.endpoint, stall_seconds=2.5) as proxy:
        target = make_s3(
            proxy.endpoint,
            new_bucket(moto_s3.endpoint),
            read_timeout=1,
            connect_timeout=1,
            max_attempts=4,
            part_size=5 * MIB,
            multipart_threshold=5 * MIB,
        )
        yield proxy, target


def _is_put(method: str, path: str) -> bool:
    return method == "PUT"


def _is_get(method: str, path: str) -> bool:
    return method == "GET" and "?" not in path


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_errors_are_retried_until_the_write_succeeds(
    proxied: tuple[FaultProxy, S3Target], kind: str
) -> None:
    proxy, target = proxied
    proxy.script = [Fault(kind, 2, _is_put)]
    assert target.put("data/x", b"payload") is True
    assert proxy.requests(kind) == 2
    assert target.get("data/x") == b"payload"


def test_a_stall_past_the_read_timeout_is_retried(proxied: tuple[FaultProxy, S3Target]) -> None:
    proxy, target = proxied
    target.put("data/x", b"payload")
    proxy.script = [Fault("stall", 1, _is_get)]
    started = time.monotonic()
    assert target.get("data/x") == b"payload"
    assert proxy.requests("stall") == 1
    assert time.monotonic() - started >= 1  # it did wait for the read timeout


def test_a_body_cut_short_is_read_again(proxied: tuple[FaultProxy, S3Target]) -> None:
    proxy, target = proxied
    target.put("data/x", b"0123456789" * 1000)
    proxy.script = [Fault("truncate", 1, _is_get)]
    assert target.get("data/x") == b"0123456789" * 1000
    assert proxy.requests("truncate") == 1


def test_a_failing_part_is_retried_within_a_multipart_upload(
    proxied: tuple[FaultProxy, S3Target],
) -> None:
    proxy, target = proxied
    proxy.script = [Fault("503", 2, lambda method, path: "partNumber=2" in path)]
    stream = PatternStream(11 * MIB)
    target.put_stream("packs/p", stream, 11 * MIB)  # type: ignore[arg-type]
    assert proxy.requests("503") == 2
    assert hashlib.sha256(target.get("packs/p")).digest() == stream.hasher.digest()
    target.delete("packs/p")


def test_a_permanent_failure_ends_in_a_clear_error_after_bounded_attempts(
    proxied: tuple[FaultProxy, S3Target],
) -> None:
    proxy, target = proxied
    proxy.script = [Fault("500", 1000, _is_put)]
    with pytest.raises(TargetError) as caught:
        target.put("data/x", b"payload")
    assert proxy.requests("500") == 4
    message = str(caught.value)
    assert "'data/x'" in message
    assert "500 InternalError after 4 attempts" in message
    assert "Try again later" in message


def test_a_server_that_never_answers_ends_in_a_timeout_error(
    proxied: tuple[FaultProxy, S3Target],
) -> None:
    proxy, target = proxied
    target.put("data/x", b"payload")
    proxy.script = [Fault("stall", 1000, lambda method, path: method == "HEAD")]
    proxy.stall_seconds = 1.5
    with pytest.raises(TargetError, match="no answer within the timeouts"):
        target.stat("data/x")
    assert proxy.requests("stall") == 4


# --- the local target's side of the protocol ---------------------------------------------


def test_local_put_stream_stores_exactly_the_announced_size(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "repo")
    target.put_stream("packs/p", PatternStream(1000), 600)  # type: ignore[arg-type]
    assert target.get("packs/p") == pattern(0, 600)
    with pytest.raises(TargetError, match="ended after 1000 of the 2000 bytes"):
        target.put_stream("packs/short", PatternStream(1000), 2000)  # type: ignore[arg-type]
    assert target.stat("packs/short") is None
    assert target.retention("packs/p") is None
    assert target.abort_incomplete_uploads(timedelta(0)) == 0  # no temporary file was left


def test_local_abandoned_temporary_files_are_removed_once_old(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "repo")
    target.put("data/ab/ab12", b"kept")
    old = tmp_path / "repo" / "data" / "ab" / ".tmp-killed"
    old.write_bytes(b"half a pack")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    fresh = tmp_path / "repo" / "data" / ".tmp-running"
    fresh.write_bytes(b"a pack being written")

    assert target.abort_incomplete_uploads() == 1  # older than a day only
    assert not old.exists()
    assert fresh.exists()
    assert target.abort_incomplete_uploads(timedelta(0)) == 1
    assert not fresh.exists()
    assert target.get("data/ab/ab12") == b"kept"
