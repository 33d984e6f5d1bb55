"""The plain layout: each VM's Export-VM folder as ordinary objects, on a local folder and on
S3 (moto; rclone where memory is measured), and as the engine's sink end to end.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    JobStatus,
    LocalPathReader,
    RetryPolicy,
    Selection,
    VMStatus,
)
from hyperv_backup.errors import TargetError
from hyperv_backup.models import VMInfo
from hyperv_backup.plain import REPORT_NAME, PlainSink
from hyperv_backup.policy import ConsistencyPolicy
from hyperv_backup.ps_scripts import FileRole
from hyperv_backup.results import CapturedFile, VMBackupResult
from hyperv_backup.simulator import Simulator
from hyperv_backup.targets import LocalTarget, ObjectInfo, S3Target, Target, TargetCapabilities
from tests.repository_helpers import MiB, vm_info, vm_like
from tests.s3_servers import MotoS3, RcloneS3, new_bucket, open_uploads, raw_client, settings_for

PREFIX = "repo/one"  # the target's own prefix on S3
HOST = "hv01.contoso.local"
JOB = "job-20261126T020000Z"
BIG = "Virtual Hard Disks/web01.vhdx"
FILES = {
    "Virtual Machines/4A1C0E7B-1D2E-4F00-9C3B-6D5E4F3A2B1C.vmcx": b"<vmcx>" * 500,
    "Virtual Machines/4A1C0E7B-1D2E-4F00-9C3B-6D5E4F3A2B1C.vmgs": bytes(40_000),
    BIG: random.Random(5).randbytes(11 * MiB),  # multipart on S3: parts of 5 + 5 + 1 MiB
    "Virtual Hard Disks/web01_8F2A.avhdx": vm_like(MiB, seed=6),
    "Snapshots/0C3B6D5E-4F3A-2B1C-4A1C-0E7B1D2E4F00.vmrs": b"",
}

pytestmark = pytest.mark.timeout(120)


class RecordingTarget:
    """A target that records the order of writes and deletes, passing everything on."""

    def __init__(self, inner: Target) -> None:
        self.inner = inner
        self.writes: list[str] = []
        self.deletes: list[str] = []

    def __repr__(self) -> str:
        return repr(self.inner)

    @property
    def capabilities(self) -> TargetCapabilities:
        return self.inner.capabilities

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        self.writes.append(key)
        return self.inner.put(key, data, if_absent=if_absent, retain_until=retain_until)

    def put_stream(
        self, key: str, stream: BinaryIO, size: int, *, retain_until: datetime | None = None
    ) -> None:
        self.writes.append(key)
        self.inner.put_stream(key, stream, size, retain_until=retain_until)

    def replace(self, key: str, data: bytes, *, if_etag: str) -> bool:
        return self.inner.replace(key, data, if_etag=if_etag)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.inner.get_range(key, offset, length)

    def stat(self, key: str) -> ObjectInfo | None:
        return self.inner.stat(key)

    def retention(self, key: str) -> datetime | None:
        return self.inner.retention(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.deletes.append(key)
        self.inner.delete(key)

    def abort_incomplete_uploads(self, older_than: timedelta = timedelta(days=1)) -> int:
        return self.inner.abort_incomplete_uploads(older_than)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def make_s3() -> Iterator[Callable[..., S3Target]]:
    """Open S3 targets below ``PREFIX`` with 5 MiB parts; all closed at the end of the test."""
    opened: list[S3Target] = []

    def make(endpoint: str, bucket: str, **overrides: Any) -> S3Target:
        values = {"prefix": PREFIX, "part_size": 5 * MiB, "multipart_threshold": 5 * MiB}
        target = S3Target(settings_for(endpoint, bucket, **{**values, **overrides}))
        opened.append(target)
        return target

    yield make
    for target in opened:
        target.close()


@pytest.fixture(params=["local", "moto"])
def target(
    request: pytest.FixtureRequest, tmp_path: Path, make_s3: Callable[..., S3Target]
) -> RecordingTarget:
    """A recording target on a local folder, then on moto."""
    if request.param == "local":
        return RecordingTarget(LocalTarget(tmp_path / "backups"))
    moto: MotoS3 = request.getfixturevalue("moto_s3")
    return RecordingTarget(make_s3(moto.endpoint, new_bucket(moto.endpoint)))


def result_for(vm: VMInfo, files: dict[str, bytes], digests: dict[str, Any]) -> VMBackupResult:
    """The engine's result for a VM whose ``files`` were written with these digests."""
    result = VMBackupResult(
        vm_name=vm.name,
        vm_id=str(vm.id),
        status=VMStatus.SUCCESS,
        requested=ConsistencyPolicy.APP_PREFERRED,
        started_at=datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc),
    )
    for relative in files:
        role = FileRole.DISK if relative.startswith("Virtual Hard Disks/") else FileRole.OTHER
        digest = digests[relative]
        result.files.append(
            CapturedFile(
                relative_path=relative,
                host_path=f"D:\\VMs\\{vm.name}\\{relative}",
                role=role,
                size=digest.size,
                sha256=digest.sha256,
            )
        )
    return result


def plain_backup(
    sink: PlainSink, vm: VMInfo, files: dict[str, bytes], *, job: str = JOB
) -> tuple[str, VMBackupResult]:
    """Back up ``files`` as one VM the way the engine does; (location, result)."""
    capture = sink.open_vm(job, vm, host=HOST, tags=["nightly"])
    digests = {}
    try:
        for relative, content in files.items():
            digests[relative] = capture.write_file(relative, io.BytesIO(content))
        result = result_for(vm, files, digests)
        return capture.commit(result), result
    except BaseException:
        capture.abort()
        raise


# --- the layout, on a local folder and on S3 -----------------------------------------------


def test_each_file_is_a_plain_object_byte_exact_and_the_report_comes_last(
    target: RecordingTarget,
) -> None:
    sink = PlainSink(target, prefix="hyperv/nightly")
    vm = vm_info("web 01")
    capture = sink.open_vm(JOB, vm, host=HOST)
    digests: dict[str, Any] = {}
    progress: list[int] = []
    for relative, content in FILES.items():
        digests[relative] = capture.write_file(relative, io.BytesIO(content), progress.append)
    location = capture.commit(result_for(vm, FILES, digests))

    folder = f"hyperv/nightly/{HOST}/web 01/{JOB}"
    expected = {f"{folder}/{relative}" for relative in FILES} | {f"{folder}/{REPORT_NAME}"}
    assert {info.key for info in target.list("hyperv/")} == expected
    for relative, content in FILES.items():
        assert target.get(f"{folder}/{relative}") == content, relative
        assert digests[relative].size == len(content)
        assert digests[relative].sha256 == hashlib.sha256(content).hexdigest()
    assert sum(progress) == sum(len(c) for c in FILES.values())
    assert target.writes[-1] == f"{folder}/{REPORT_NAME}"  # the report is written last
    assert len(target.writes) == len(FILES) + 1  # each file once
    report = VMBackupResult.model_validate(json.loads(target.get(f"{folder}/{REPORT_NAME}")))
    assert report.location == location
    assert {f.relative_path: f.sha256 for f in report.files} == {
        relative: hashlib.sha256(content).hexdigest() for relative, content in FILES.items()
    }


def test_on_s3_they_are_ordinary_objects_any_tool_can_fetch(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target]
) -> None:
    bucket = new_bucket(moto_s3.endpoint)
    sink = PlainSink(make_s3(moto_s3.endpoint, bucket))
    location, _result = plain_backup(sink, vm_info("web01"), FILES)

    folder = f"{PREFIX}/{HOST}/web01/{JOB}/"
    assert location == f"s3://{bucket}/{folder}"
    raw = raw_client(moto_s3.endpoint)
    for relative, content in FILES.items():
        answer = raw.get_object(Bucket=bucket, Key=folder + relative)
        assert answer["Body"].read() == content, relative
    big = raw.head_object(Bucket=bucket, Key=folder + BIG)
    assert big["ETag"].strip('"').endswith("-3")  # uploaded in three parts
    assert open_uploads(moto_s3.endpoint, bucket) == []


def test_abort_removes_every_object_that_was_uploaded(target: RecordingTarget) -> None:
    sink = PlainSink(target)
    capture = sink.open_vm(JOB, vm_info("web01"), host=HOST)
    small = [k for k in FILES if k != BIG][:2]
    for relative in small:
        capture.write_file(relative, io.BytesIO(FILES[relative]))

    class SourceGoesAway(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            if self.tell() >= 7 * MiB:
                raise OSError("injected: the host went away")
            return super().read(n)

        readinto = None  # type: ignore[assignment]  # make the sink use read()

    with pytest.raises(OSError, match="host went away"):
        capture.write_file(BIG, SourceGoesAway(FILES[BIG]))
    assert len(list(target.list(f"{HOST}/"))) == 2  # the broken one was never stored
    capture.abort()

    assert list(target.list()) == []
    assert set(target.deletes) >= {f"{HOST}/web01/{JOB}/{relative}" for relative in small}
    if isinstance(target.inner, S3Target):
        assert (
            open_uploads(target.inner.settings.endpoint_url or "", target.inner.settings.bucket)
            == []
        )
    capture.abort()  # twice is fine
    with pytest.raises(TargetError, match="already aborted"):
        capture.write_file("x", io.BytesIO(b"x"))


# --- streams ---------------------------------------------------------------------------------


class Pipe:
    """A stream without a size (no seek, no fileno), like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(min(n, 64 * 1024) if n > 0 else 64 * 1024)


def test_a_stream_without_a_size_is_spooled_and_stored_exactly(tmp_path: Path) -> None:
    sink = PlainSink(LocalTarget(tmp_path / "backups"))
    capture = sink.open_vm(JOB, vm_info("web01"), host=HOST)
    digest = capture.write_file(BIG, Pipe(FILES[BIG]))  # type: ignore[arg-type]
    assert digest.size == len(FILES[BIG])
    assert digest.sha256 == hashlib.sha256(FILES[BIG]).hexdigest()
    stored = tmp_path / "backups" / HOST / "web01" / JOB / "Virtual Hard Disks" / "web01.vhdx"
    assert stored.read_bytes() == FILES[BIG]


def test_a_file_that_grows_while_it_is_read_fails_its_backup(tmp_path: Path) -> None:
    class Growing(io.BytesIO):
        def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
            if whence == io.SEEK_END:  # the size when the upload begins: 1 KiB less
                return super().seek(offset - 1024, whence)
            return super().seek(offset, whence)

    sink = PlainSink(LocalTarget(tmp_path / "backups"))
    capture = sink.open_vm(JOB, vm_info("web01"), host=HOST)
    with pytest.raises(TargetError, match="grew while it was read"):
        capture.write_file(BIG, Growing(FILES["Virtual Hard Disks/web01_8F2A.avhdx"]))
    capture.abort()
    assert not (tmp_path / "backups" / HOST).exists() or not any(
        p.is_file() for p in (tmp_path / "backups" / HOST).rglob("*")
    )


def test_file_names_and_duplicate_vm_names_make_distinct_safe_folders(tmp_path: Path) -> None:
    sink = PlainSink(LocalTarget(tmp_path / "backups"))
    odd = vm_info('O\'Brien: "db" / test?')
    plain_backup(sink, odd, {"Virtual Machines/c.vmcx": b"1"})
    assert (tmp_path / "backups" / HOST / "O'Brien_ _db_ _ test_" / JOB / REPORT_NAME).exists()

    # Hyper-V VM names are not unique: a second "web01" of the same job gets its id added.
    first, second = vm_info("web01"), vm_info("web01", vm_id=vm_info("other").id)
    one, _ = plain_backup(sink, first, {"Virtual Machines/c.vmcx": b"first"})
    two, _ = plain_backup(sink, second, {"Virtual Machines/c.vmcx": b"second"})
    assert one != two
    assert Path(two).parent.name == f"web01-{str(second.id)[:8]}"
    assert (Path(one) / "Virtual Machines" / "c.vmcx").read_bytes() == b"first"
    assert (Path(two) / "Virtual Machines" / "c.vmcx").read_bytes() == b"second"

    with pytest.raises(TargetError, match="refusing unsafe path"):
        sink.open_vm("job-2", first, host=HOST).write_file("../escape", io.BytesIO(b"x"))


def test_leftovers_of_an_unfinished_attempt_are_replaced(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "backups")
    folder = f"{HOST}/web01/{JOB}"
    target.put(f"{folder}/Virtual Hard Disks/old-disk.vhdx", b"from a killed run")
    location, _ = plain_backup(
        PlainSink(target), vm_info("web01"), {"Virtual Machines/c.vmcx": b"c"}
    )
    assert sorted(info.key for info in target.list(folder)) == [
        f"{folder}/Virtual Machines/c.vmcx",
        f"{folder}/{REPORT_NAME}",
    ]
    assert location == str(tmp_path / "backups" / HOST / "web01" / JOB)


# --- Object Lock and memory ------------------------------------------------------------------


def test_with_object_lock_every_object_is_retained(
    moto_s3: MotoS3, make_s3: Callable[..., S3Target]
) -> None:
    bucket = new_bucket(moto_s3.endpoint, object_lock=True)
    sink = PlainSink(make_s3(moto_s3.endpoint, bucket, object_lock_days=3))
    assert sink.retention == timedelta(days=3)
    before = datetime.now(timezone.utc) + timedelta(days=3)
    plain_backup(sink, vm_info("web01"), FILES)
    after = datetime.now(timezone.utc) + timedelta(days=3)

    raw = raw_client(moto_s3.endpoint)
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == len(FILES) + 1
    for key in keys:  # the multipart disk included
        until = raw.head_object(Bucket=bucket, Key=key)["ObjectLockRetainUntilDate"]
        assert before - timedelta(seconds=2) <= until <= after + timedelta(seconds=2), key
    with pytest.raises(TargetError, match="has no Object Lock"):
        PlainSink(make_s3(moto_s3.endpoint, new_bucket(moto_s3.endpoint)), retain_days=3)


def test_uploading_a_large_file_holds_only_a_few_parts_in_memory(
    rclone_s3: RcloneS3, make_s3: Callable[..., S3Target], tmp_path: Path
) -> None:
    # rclone runs in its own process, so tracemalloc sees only the client side.
    size = 40 * MiB
    disk = tmp_path / "big.vhdx"
    with disk.open("wb") as out:
        for index in range(size // MiB):
            out.write(random.Random(index).randbytes(MiB))
    sink = PlainSink(make_s3(rclone_s3.endpoint, new_bucket(rclone_s3.endpoint), max_concurrency=2))
    capture = sink.open_vm(JOB, vm_info("web01"), host=HOST)
    tracemalloc.start()
    try:
        with disk.open("rb") as stream:
            digest = capture.write_file(BIG, stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Two parts in flight plus the one being read (5 MiB each), not the 40 MiB file.
    assert peak < 17 * MiB, f"peak {peak / MiB:.1f} MiB for a {size // MiB} MiB file"
    assert digest.size == size
    assert digest.sha256 == hashlib.sha256(disk.read_bytes()).hexdigest()


# --- as the engine's sink ----------------------------------------------------------------------


def test_a_backup_job_writes_folders_import_vm_can_use(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    def vm(name: str, size: int, **fields: Any) -> dict[str, Any]:
        disk = {
            "file": {"path": rf"D:\VMs\{name}\{name}.vhdx", "size": "60 GiB", "file_size": size}
        }
        return {"name": name, "disks": [disk], **fields}

    sim = make_simulator({"vms": [vm("web01", 2 * MiB, state="Off"), vm("app01", MiB)]})
    target = LocalTarget(tmp_path / "backups")
    job = BackupJob(
        sim.connection_settings(),
        BackupPolicy(
            retry=RetryPolicy(attempts=5, initial_wait=0.01, max_wait=0.05, deadline=30),
            parallel_vms=2,
        ),
        sink=PlainSink(target, prefix="hyperv"),
        reader=LocalPathReader(sim.path_map()),
        state_dir=tmp_path / "state",
    )
    result = job.run(Selection(all=True))

    assert result.status == JobStatus.SUCCESS, [(v.vm_name, v.error) for v in result.vms]
    host = sim.connection_settings().host
    for backed_up in result.vms:
        folder = tmp_path / "backups" / "hyperv" / host / backed_up.vm_name / result.job_id
        assert backed_up.location == str(folder)
        files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
        assert set(files) == {f.relative_path for f in backed_up.files} | {REPORT_NAME}
        assert any(f.startswith("Virtual Hard Disks/") for f in files)  # the Export-VM layout
        assert any(f.startswith("Virtual Machines/") for f in files)
        for captured in backed_up.files:
            data = files[captured.relative_path].read_bytes()
            assert hashlib.sha256(data).hexdigest() == captured.sha256, captured.relative_path
        report = VMBackupResult.model_validate_json(files[REPORT_NAME].read_text())
        assert report.vm_id == backed_up.vm_id
        assert report.location == backed_up.location
