"""The PSRP fallback reader: host files in bounded chunks through ``read-file-chunk``.

Through the real stack: pypsrp → the simulator's WinRM endpoint → the emulated host's files.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    CaptureMode,
    ConfigError,
    DirectorySink,
    HostFileNotFoundError,
    HyperVHost,
    JobStatus,
    PSRPReader,
    Selection,
)
from hyperv_backup.ps_scripts import ReadFileChunkParams
from hyperv_backup.simulator import Simulator

KiB = 2**10
MiB = 2**20
CHUNK = 256 * KiB
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 3 * MiB + 5]


def content(size: int) -> bytes:
    return random.Random(size).randbytes(size)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    disk = {"file": {"path": r"D:\VMs\app\app.vhdx", "size": "60 GiB", "file_size": 2 * MiB}}
    with Simulator({"vms": [{"name": "app", "disks": [disk]}]}) as simulator:
        folder = simulator.local_path("D:\\")
        (folder / "Files").mkdir()
        for size in SIZES:
            (folder / "Files" / f"f{size}.bin").write_bytes(content(size))
        yield simulator


@pytest.fixture(scope="module")
def host(sim: Simulator) -> Iterator[HyperVHost]:
    with HyperVHost(sim.connection_settings()) as connected:
        yield connected


@pytest.mark.parametrize("size", SIZES)
def test_reads_are_byte_exact_in_bounded_chunks(
    sim: Simulator, host: HyperVHost, size: int
) -> None:
    before = len(sim.emulator.calls_to("read-file-chunk"))
    reader = PSRPReader(host, chunk_size=CHUNK)
    with reader.open(rf"D:\Files\f{size}.bin") as stream:
        assert stream.read() == content(size)
    calls = sim.emulator.calls_to("read-file-chunk")[before:]
    # One call per chunk (one for an empty file), each asking for at most one chunk.
    assert len(calls) == max(1, math.ceil(size / CHUNK))
    for number, call in enumerate(calls):
        assert isinstance(call.params, ReadFileChunkParams)
        assert call.params.length == CHUNK
        assert call.params.offset == number * CHUNK


def test_partial_reads_and_seeks(host: HyperVHost) -> None:
    data = content(3 * CHUNK + 7)
    with PSRPReader(host, chunk_size=CHUNK).open(r"d:/files/F786439.BIN") as stream:
        assert stream.read(10) == data[:10]
        stream.seek(2 * CHUNK - 3)
        assert stream.read(6) == data[2 * CHUNK - 3 : 2 * CHUNK + 3]
        assert stream.tell() == 2 * CHUNK + 3
        stream.seek(-7, 2)
        assert stream.read() == data[-7:]


def test_missing_file_raises_on_open(host: HyperVHost) -> None:
    with pytest.raises(HostFileNotFoundError, match=r"gone\.vhdx") as caught:
        PSRPReader(host).open(r"D:\VMs\gone.vhdx")
    assert isinstance(caught.value, FileNotFoundError)


def test_warns_once_that_it_is_slow_and_smb_is_better(
    host: HyperVHost, caplog: pytest.LogCaptureFixture
) -> None:
    reader = PSRPReader(host, chunk_size=CHUNK)
    with caplog.at_level(logging.WARNING, logger="hyperv_backup.transfer.psrp"):
        for _ in range(2):
            with reader.open(r"D:\Files\f1.bin") as stream:
                stream.read()
    [warning] = [r for r in caplog.records if r.name == "hyperv_backup.transfer.psrp"]
    assert "20 MB/s" in warning.getMessage()
    assert "SMBReader" in warning.getMessage()


def test_reachable_and_limits(host: HyperVHost) -> None:
    reader = PSRPReader(host)
    assert reader.reachable(r"D:\anything\at\all.vhdx")
    assert reader.reachable("c:/x")
    assert not reader.reachable(r"relative\x.vhdx")
    with pytest.raises(ConfigError, match="16 MiB"):
        PSRPReader(host, chunk_size=17 * MiB)


def test_backup_job_reads_through_psrp(sim: Simulator, host: HyperVHost, tmp_path: Path) -> None:
    job = BackupJob(
        sim.connection_settings(),
        BackupPolicy(capture=CaptureMode.IN_PLACE),
        sink=DirectorySink(tmp_path / "backups"),
        reader=PSRPReader(host, chunk_size=MiB),
        state_dir=tmp_path / "state",
    )
    result = job.run(Selection(names=["app"]))
    assert result.status == JobStatus.SUCCESS, [(v.vm_name, v.error) for v in result.vms]
    [vm] = result.vms
    assert any(f.relative_path.endswith(".vhdx") for f in vm.files)
    for file in vm.files:
        stored = (Path(vm.location or "") / file.relative_path).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == file.sha256
