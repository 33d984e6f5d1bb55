"""Helpers for the repository tests, and a worker the tests run as a separate process.

``python -m tests.repository_helpers backup REPO VM FILE...`` backs up FILEs (stored as
``Virtual Hard Disks/<name>``) as one VM into the repository at REPO, the way the engine
would. ``--ready``/``--go`` make it wait, holding its lock, until the test says go (two
writers at once); ``--stall-after N --marker M`` make its input stall forever after N bytes,
once it has written M (the test then kills it mid-upload).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import re
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from hyperv_backup.models import VMInfo
from hyperv_backup.policy import ConsistencyPolicy
from hyperv_backup.ps_scripts import FileRole
from hyperv_backup.repository import Repository
from hyperv_backup.results import CapturedFile, VMBackupResult, VMStatus
from hyperv_backup.targets import LocalTarget

KiB = 1024
MiB = 1024 * KiB
BLOCK = 64 * KiB
# Small chunks and packs, so a few MiB of test data spans many of each.
SMALL = {"chunk_size": 64 * KiB, "pack_size": 1 * MiB, "scrypt_n": 2**12}
_TEXT = bytes((b"etaoinshrdlucmfwypvbgkqjxz      ETAOIN\n.,0123456789" * 6)[:256])


def vm_info(name: str, vm_id: uuid.UUID | None = None) -> VMInfo:
    """A stopped Gen2 VM."""
    vm_id = vm_id or uuid.uuid5(uuid.NAMESPACE_DNS, name)
    return VMInfo.model_validate(
        {
            "id": str(vm_id),
            "name": name,
            "state": "Off",
            "generation": 2,
            "configuration_version": "9.0",
            "path": rf"D:\VMs\{name}",
            "checkpoint_type": "Production",
            "memory_startup": 2 * 1024**3,
            "memory_assigned": 0,
            "has_saved_state": False,
        }
    )


def vm_like(size: int, seed: int) -> bytes:
    """Extents of zeros, text-like and random data, like a disk image (deterministic)."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        extent = min(rng.randint(1, 16) * BLOCK, size - len(out))
        kind = rng.random()
        if kind < 0.3:
            out += bytes(extent)
        elif kind < 0.6:
            out += rng.randbytes(extent).translate(_TEXT)
        else:
            out += rng.randbytes(extent)
    return bytes(out)


def next_day(data: bytes, seed: int, *, share: float = 0.02) -> bytes:
    """``share`` of the 64 KiB blocks rewritten, and 256 KiB inserted at an odd offset."""
    rng = random.Random(seed)
    day = bytearray(data)
    blocks = len(day) // BLOCK
    for block in rng.sample(range(blocks), max(1, int(blocks * share))):
        day[block * BLOCK : (block + 1) * BLOCK] = rng.randbytes(BLOCK)
    at = len(day) // 2 + 4321
    day[at:at] = rng.randbytes(256 * KiB)
    return bytes(day)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def back_up(
    repo: Repository,
    vm: VMInfo,
    files: Mapping[str, bytes | Path | BinaryIO],
    *,
    started_at: datetime | None = None,
    status: VMStatus = VMStatus.SUCCESS,
    job_id: str = "job-1",
    host: str = "hv01",
    tags: tuple[str, ...] = (),
    parent: str | None = "latest",
) -> str:
    """Back up ``files`` (relative path → content) as one VM, like the engine; the location."""
    capture = repo.open_vm(job_id, vm, host=host, tags=tags, parent=parent)
    result = VMBackupResult(
        vm_name=vm.name,
        vm_id=str(vm.id),
        status=status,
        requested=ConsistencyPolicy.APP_PREFERRED,
        started_at=started_at or datetime.now(timezone.utc),
    )
    try:
        for relative, content in files.items():
            if isinstance(content, bytes):
                stream: BinaryIO = io.BytesIO(content)
            elif isinstance(content, Path):
                stream = content.open("rb")
            else:
                stream = content
            with stream:
                digest = capture.write_file(relative, stream)
            role = FileRole.DISK if relative.startswith("Virtual Hard Disks/") else FileRole.OTHER
            result.files.append(
                CapturedFile(
                    relative_path=relative,
                    host_path=relative,
                    role=role,
                    size=digest.size,
                    sha256=digest.sha256,
                    blake3=digest.blake3,
                )
            )
        return capture.commit(result)
    except BaseException:
        capture.abort()
        raise


class StallingReader(io.RawIOBase):
    """Reads a file, then stalls forever after ``stall_after`` bytes (touching ``marker``)."""

    def __init__(self, path: Path, stall_after: int, marker: Path) -> None:
        self._file = path.open("rb")
        self._left = stall_after
        self._marker = marker

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            self._marker.touch()
            while True:
                time.sleep(1)
        count = self._file.readinto(memoryview(buffer)[: min(len(buffer), self._left)])
        self._left -= count
        return count


class GeneratedDisk(io.RawIOBase):
    """``size`` bytes of VM-like data made as they are read (never all in memory)."""

    def __init__(self, size: int, seed: int) -> None:
        self._left = size
        self._rng = random.Random(seed)
        self._block = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._block:
            if self._left <= 0:
                return 0
            size = min(MiB, self._left)
            self._left -= size
            kind = self._rng.random()
            if kind < 0.3:
                self._block = bytes(size)
            elif kind < 0.6:
                self._block = self._rng.randbytes(size).translate(_TEXT)
            else:
                self._block = self._rng.randbytes(size)
        count = min(len(buffer), len(self._block))
        buffer[:count] = self._block[:count]
        self._block = self._block[count:]
        return count


def _peak_memory(repo_path: Path, size: int, vms: int) -> int:
    """Back up ``vms`` VMs of ``size`` generated bytes each at once into a new default
    repository, as the engine's parallel VMs do; the process's peak RSS in bytes.

    Read from ``VmHWM`` (this address space's high-water mark), not ``ru_maxrss``: Linux keeps
    ``ru_maxrss`` across exec, so it would report the parent's size at fork time (a test run
    whose in-process moto server holds a few hundred MiB)."""
    import threading

    repo = Repository.init(LocalTarget(repo_path))

    def one(index: int) -> None:
        disk = GeneratedDisk(size, seed=index)
        back_up(repo, vm_info(f"big{index}"), {"Virtual Hard Disks/big.vhdx": disk})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(vms)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    repo.close()
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    assert found is not None
    return int(found[1]) * 1024


def _worker(argv: list[str]) -> int:
    if argv[:1] == ["memory"]:
        print(_peak_memory(Path(argv[1]), int(argv[2]), int(argv[3])))
        return 0
    parser = argparse.ArgumentParser(prog="repository_helpers")
    parser.add_argument("command", choices=["backup"])
    parser.add_argument("repo", type=Path)
    parser.add_argument("vm")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--password")
    parser.add_argument("--ready", type=Path)
    parser.add_argument("--go", type=Path)
    parser.add_argument("--stall-after", type=int)
    parser.add_argument("--marker", type=Path)
    parser.add_argument("--index-every", type=int, default=4)
    args = parser.parse_args(argv)
    repo = Repository.open(
        LocalTarget(args.repo), args.password, index_every_packs=args.index_every
    )
    files: dict[str, bytes | Path | BinaryIO] = {}
    for path in args.files:
        if args.stall_after is not None:
            files[f"Virtual Hard Disks/{path.name}"] = StallingReader(  # type: ignore[assignment]
                path, args.stall_after, args.marker
            )
        else:
            files[f"Virtual Hard Disks/{path.name}"] = path
    vm = vm_info(args.vm)
    if args.ready is not None:
        # Hold the shared lock (open_vm takes it) while waiting for the go signal.
        capture = repo.open_vm("hold", vm, host="hv01")
        args.ready.touch()
        while args.go is not None and not args.go.exists():
            time.sleep(0.02)
        location = back_up(repo, vm, files)
        capture.abort()
    else:
        location = back_up(repo, vm, files)
    repo.close()
    print(location)
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
